// Package haproxycfg reads an HAProxy configuration (haproxy.cfg) and
// translates it into an equivalent maildirector configuration (maildirector
// import-haproxy): mode tcp frontends for mail ports become frontends of the
// port's protocol, backends keep their balance, servers, health checks,
// PROXY headers, weights, backups and limits, and every line that has no
// equivalent is reported with its number, never dropped silently.
//
//	f, err := haproxycfg.Parse(file)
//	if err != nil { ... }
//	res := haproxycfg.Translate(f)
//	os.Stdout.Write(res.TOML)
//	for _, w := range res.Warnings { fmt.Fprintln(os.Stderr, w) }
//
// Parse follows HAProxy's own reading of the file (doc/configuration.txt,
// section 2): one statement per line, words split on spaces and tabs,
// double quotes (with backslash escapes) and single quotes (none) group
// words, a backslash escapes the next character, '#' starts a comment,
// and a section keyword (global, defaults, frontend, backend, listen, ...)
// starts a section that lasts until the next one. A line ending in a
// backslash continues on the next one, as the slides of the seed documents
// write long server lines.
package haproxycfg

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxLine bounds one physical line; MaxLines the whole file.
const (
	MaxLine  = 64 << 10
	MaxLines = 1 << 20
)

// sectionKeywords start a section (HAProxy 2.x/3.x).
var sectionKeywords = map[string]bool{
	"global": true, "defaults": true, "frontend": true, "backend": true, "listen": true,
	"userlist": true, "peers": true, "resolvers": true, "mailers": true, "program": true,
	"http-errors": true, "ring": true, "cache": true, "log-forward": true, "fcgi-app": true,
	"crt-store": true, "traces": true,
}

// File is a parsed haproxy.cfg.
type File struct {
	// Sections are in file order. Statements before the first section
	// keyword land in a section of Kind "" (HAProxy refuses them).
	Sections []*Section
}

// Section is one section: its keyword, name and statements.
type Section struct {
	Kind string // "global", "defaults", "frontend", ...
	Name string // "" for global and an unnamed defaults
	// Args are the words after the name (e.g. "from NAME" of defaults).
	Args  []string
	Line  int
	Text  string // the section line as written, trimmed
	Stmts []Stmt
}

// Stmt is one statement: its words after unquoting, and where it is.
type Stmt struct {
	Words []string
	Line  int
	Text  string // the line as written, trimmed (continuations joined)
}

// Parse reads an HAProxy configuration. It fails only on input it cannot
// read at all: a line over MaxLine, more than MaxLines lines, a read error,
// or an unterminated quote (which HAProxy refuses too).
func Parse(r io.Reader) (*File, error) {
	f := new(File)
	var cur *Section
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), MaxLine)
	n := 0
	for sc.Scan() {
		n++
		if n > MaxLines {
			return nil, fmt.Errorf("more than %d lines", MaxLines)
		}
		start, text := n, strings.TrimRight(sc.Text(), "\r")
		for continues(text) && sc.Scan() {
			n++
			text = text[:len(text)-1] + " " + strings.TrimRight(sc.Text(), "\r")
		}
		words, err := splitWords(text)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", start, err)
		}
		if len(words) == 0 {
			continue
		}
		trimmed := strings.TrimSpace(text)
		if sectionKeywords[words[0]] {
			cur = &Section{Kind: words[0], Line: start, Text: trimmed}
			if len(words) > 1 {
				cur.Name, cur.Args = words[1], words[2:]
			}
			f.Sections = append(f.Sections, cur)
			continue
		}
		if cur == nil {
			cur = &Section{Line: start}
			f.Sections = append(f.Sections, cur)
		}
		cur.Stmts = append(cur.Stmts, Stmt{Words: words, Line: start, Text: trimmed})
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than %d bytes", n+1, MaxLine)
		}
		return nil, err
	}
	return f, nil
}

// continues reports a line ending in an unescaped backslash outside a
// comment.
func continues(line string) bool {
	t := strings.TrimRight(line, " \t")
	if !strings.HasSuffix(t, "\\") || strings.HasSuffix(t, "\\\\") {
		return false
	}
	_, err := splitWords(t[:len(t)-1])
	return err == nil && !strings.Contains(stripQuoted(t), "#")
}

// stripQuoted removes quoted parts of s, for the comment test above.
func stripQuoted(s string) string {
	var b strings.Builder
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q != 0 && c == q:
			q = 0
		case q != 0:
		case c == '"' || c == '\'':
			q = c
		case c == '\\' && i+1 < len(s):
			i++
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// splitWords splits one line into words as HAProxy does.
func splitWords(line string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		case c == '#':
			if inWord {
				words = append(words, w.String())
			}
			return words, nil
		case c == '\\':
			inWord = true
			if i+1 < len(line) {
				i++
				w.WriteByte(line[i])
			}
		case c == '"' || c == '\'':
			inWord = true
			end := i + 1
			for ; end < len(line) && line[end] != c; end++ {
				if c == '"' && line[end] == '\\' && end+1 < len(line) {
					end++
					w.WriteByte(line[end])
					continue
				}
				w.WriteByte(line[end])
			}
			if end == len(line) {
				return nil, fmt.Errorf("unterminated %c quote", c)
			}
			i = end
		default:
			inWord = true
			w.WriteByte(c)
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}
