// Package doveconf reads the output of Dovecot's `doveconf -n` (or
// `doveconf -a`) and checks it against a maildirector configuration: the
// settings of the two sides that must agree for the pairing to work
// (maildirector check --dovecot). Parse knows the layout doveconf prints;
// Lint knows which settings meet which maildirector keys.
//
//	conf, err := doveconf.Parse(file)
//	findings, notes := doveconf.Lint(cfg, conf, doveconf.LintOptions{Source: src})
//	for _, f := range findings { fmt.Println(f) }
//
// The layout (src/config/doveconf.c): "key = value" lines, sections
// "type [name] {" ... "}" nested two spaces deeper, filters such as
// "protocol imap {", "local 10.0.0.1 {", "remote 10.0.0.0/8 {" printed
// the same way, and "#" comment lines (the version first). -n prints only
// what differs from the defaults; Lint supplies Dovecot 2.3.19's defaults
// for the settings it reads.
package doveconf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxLine bounds one line; MaxDepth the nesting of sections.
const (
	MaxLine  = 64 << 10
	MaxDepth = 16
)

// Conf is parsed doveconf output: the top-level section.
type Conf struct {
	// Version is the first comment's version ("2.3.19.1"), or "".
	Version string
	Root    *Section
}

// Section is the top level, or a "type [name] {" block.
type Section struct {
	Type, Name string
	Line       int
	Settings   map[string]Setting
	Children   []*Section
}

// Setting is one "key = value" with its line.
type Setting struct {
	Value string
	Line  int
}

// Parse reads doveconf output. It fails on lines it cannot place (a
// stray "}", a line that is neither a setting nor a section), on an
// unclosed section, and on input over MaxLine or MaxDepth.
func Parse(r io.Reader) (*Conf, error) {
	c := &Conf{Root: newSection("", "", 0)}
	stack := []*Section{c.Root}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), MaxLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(strings.TrimRight(sc.Text(), "\r"))
		cur := stack[len(stack)-1]
		switch {
		case line == "":
		case strings.HasPrefix(line, "#"):
			if n == 1 && c.Version == "" {
				if f := strings.Fields(line); len(f) > 1 {
					c.Version = f[1]
				}
			}
		case line == "}":
			if len(stack) == 1 {
				return nil, fmt.Errorf("line %d: \"}\" closes no section", n)
			}
			stack = stack[:len(stack)-1]
		case strings.HasSuffix(line, "{") && !strings.Contains(line, "="):
			f := strings.Fields(strings.TrimSuffix(line, "{"))
			if len(f) == 0 || len(f) > 2 {
				return nil, fmt.Errorf("line %d: %q: want \"type [name] {\"", n, line)
			}
			if len(stack) > MaxDepth {
				return nil, fmt.Errorf("line %d: sections nested deeper than %d", n, MaxDepth)
			}
			name := ""
			if len(f) == 2 {
				name = unquote(f[1])
			}
			s := newSection(f[0], name, n)
			cur.Children = append(cur.Children, s)
			stack = append(stack, s)
		default:
			key, value, ok := strings.Cut(line, "=")
			key = strings.TrimSpace(key)
			if !ok || key == "" || strings.ContainsAny(key, " \t{}") {
				return nil, fmt.Errorf("line %d: %q: neither \"key = value\" nor a section", n, line)
			}
			cur.Settings[key] = Setting{Value: unquote(strings.TrimSpace(value)), Line: n}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("line %d: longer than %d bytes", n+1, MaxLine)
		}
		return nil, err
	}
	if len(stack) > 1 {
		s := stack[len(stack)-1]
		return nil, fmt.Errorf("line %d: section %q is not closed", s.Line, strings.TrimSpace(s.Type+" "+s.Name))
	}
	return c, nil
}

func newSection(typ, name string, line int) *Section {
	return &Section{Type: typ, Name: name, Line: line, Settings: map[string]Setting{}}
}

// unquote removes the double quotes doveconf puts around a value with
// leading or trailing space.
func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return strings.ReplaceAll(s[1:len(s)-1], `\"`, `"`)
	}
	return s
}

// Child returns the first child section of type typ and name, or nil.
func (s *Section) Child(typ, name string) *Section {
	for _, c := range s.Children {
		if c.Type == typ && c.Name == name {
			return c
		}
	}
	return nil
}

// Get returns the value of key for protocol proto: from a "protocol PROTO
// { }" filter when it sets it, else from the top level; ok is false when
// neither does (the default applies).
func (c *Conf) Get(key, proto string) (Setting, bool) {
	if proto != "" {
		if p := c.Root.Child("protocol", proto); p != nil {
			if v, ok := p.Settings[key]; ok {
				return v, true
			}
		}
	}
	v, ok := c.Root.Settings[key]
	return v, ok
}
