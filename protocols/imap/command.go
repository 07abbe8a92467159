package imap

import (
	"errors"
	"strings"
)

// The command-line tokenizer. It knows the pre-login subset of the RFC 9051
// section 9 grammar a proxy needs: a tag, a command name, and arguments that
// are atoms, quoted strings, literals and parenthesised lists (for ID). It
// never copies a literal's data unless it has to unescape, never recurses,
// and allocates at most in proportion to its input.

const (
	// maxCommandLen caps one command line, literals included. RFC 2683
	// section 3.2.1.5 asks servers to accept at least 8000 octets; a
	// pre-login command (LOGIN with two 255-octet fields, ID with a few
	// pairs) is far shorter.
	maxCommandLen = 8 << 10
	// maxLiteralLen caps one literal before login. SASL fields are at most
	// 255 octets (RFC 4616 section 2), so 4 KiB is generous.
	maxLiteralLen = 4 << 10
	// maxLiteralDigits bounds the digits of a literal's length so that it
	// cannot overflow; anything longer is over maxLiteralLen anyway.
	maxLiteralDigits = 10
)

// tokenKind says what an argument token is.
type tokenKind uint8

const (
	tokenAtom      tokenKind = iota + 1 // atom or astring atom (RFC 9051 section 4.1)
	tokenQuoted                         // quoted string, unescaped (section 4.3)
	tokenLiteral                        // literal data, {n} or {n+} (section 4.3, RFC 7888)
	tokenListStart                      // "("
	tokenListEnd                        // ")"
)

// token is one argument. val aliases the parsed input unless a quoted string
// had escapes.
type token struct {
	kind tokenKind
	val  []byte
}

// isString reports whether t is an astring: atom, quoted or literal.
func (t token) isString() bool {
	return t.kind == tokenAtom || t.kind == tokenQuoted || t.kind == tokenLiteral
}

// command is one parsed client command.
type command struct {
	tag  string
	verb string // upper case
	args []token
}

// errSyntax wraps every tokenizer error; the text says which rule broke and
// never quotes the input (it may hold a password).
var errSyntax = errors.New("syntax error")

// syntaxError is a client command that breaks the grammar: rendered as a
// tagged BAD with msg as its text.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return "syntax error: " + e.msg }
func (e *syntaxError) Unwrap() error { return errSyntax }

func syntax(msg string) error { return &syntaxError{msg: msg} }

// parseCommand parses one complete command as it came over the wire, literal
// data included (each literal header followed by CRLF and its data), without
// the final CRLF.
func parseCommand(raw []byte) (command, error) {
	tag, verb, rest, ok := parseTagVerb(raw)
	if !ok {
		return command{}, syntax("not an IMAP command")
	}
	args, err := parseArgs(rest)
	if err != nil {
		return command{tag: tag, verb: verb}, err
	}
	return command{tag: tag, verb: verb, args: args}, nil
}

// parseTagVerb splits the start of a command line into its tag and command
// name (RFC 9051 section 9: tag SP command-name) and returns the rest after
// the separating SP. ok is false when the line does not start that way: the
// caller treats it as a stranger to IMAP.
func parseTagVerb(line []byte) (tag, verb string, rest []byte, ok bool) {
	i := 0
	for i < len(line) && isTagChar(line[i]) {
		i++
	}
	if i == 0 || i == len(line) || line[i] != ' ' {
		return "", "", nil, false
	}
	tag = string(line[:i])
	j := i + 1
	for j < len(line) && isAlnum(line[j]) {
		j++
	}
	if j == i+1 {
		return "", "", nil, false
	}
	verb = strings.ToUpper(string(line[i+1 : j]))
	switch {
	case j == len(line):
		return tag, verb, nil, true
	case line[j] == ' ':
		return tag, verb, line[j+1:], true
	}
	return "", "", nil, false
}

// parseArgs tokenizes the arguments after "tag SP verb SP". Tokens are
// separated by exactly one SP; lists nest without limit but need balance.
func parseArgs(b []byte) ([]token, error) {
	var toks []token
	depth := 0
	// needSep is set after a token: only SP, ")" or the end may follow.
	// afterSP is set after a SP: a token (not ")" or the end) must follow.
	needSep, afterSP := false, false
	for pos := 0; pos < len(b); {
		c := b[pos]
		if needSep {
			switch c {
			case ' ':
				pos++
				needSep, afterSP = false, true
				continue
			case ')':
			default:
				return nil, syntax("missing space between arguments")
			}
		}
		switch {
		case c == '(':
			toks = append(toks, token{kind: tokenListStart})
			depth++
			pos++
			needSep, afterSP = false, false
		case c == ')':
			if depth == 0 || afterSP {
				return nil, syntax("unexpected )")
			}
			toks = append(toks, token{kind: tokenListEnd})
			depth--
			pos++
			needSep = true
		case c == '"':
			val, n, err := parseQuoted(b[pos:])
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: tokenQuoted, val: val})
			pos += n
			needSep, afterSP = true, false
		case c == '{':
			val, n, err := parseLiteral(b[pos:])
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: tokenLiteral, val: val})
			pos += n
			needSep, afterSP = true, false
		case isAstringChar(c):
			start := pos
			for pos < len(b) && isAstringChar(b[pos]) {
				pos++
			}
			toks = append(toks, token{kind: tokenAtom, val: b[start:pos]})
			needSep, afterSP = true, false
		default:
			return nil, syntax("invalid character in arguments")
		}
	}
	switch {
	case afterSP:
		return nil, syntax("trailing space")
	case depth != 0:
		return nil, syntax("unclosed (")
	}
	return toks, nil
}

// parseQuoted parses a quoted string at the start of b (RFC 9051 section
// 4.3: DQUOTE *QUOTED-CHAR DQUOTE, with \" and \\ the only escapes) and
// returns its value and the number of bytes used. 8-bit bytes are allowed
// (RFC 9051 permits UTF-8; older clients send other charsets in passwords).
func parseQuoted(b []byte) (val []byte, n int, err error) {
	escaped := false
	for i := 1; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			val = b[1:i]
			if escaped {
				val = unescape(val)
			}
			return val, i + 1, nil
		case '\\':
			i++
			if i == len(b) || b[i] != '"' && b[i] != '\\' {
				return nil, 0, syntax("invalid escape in quoted string")
			}
			escaped = true
		case 0, '\r', '\n':
			return nil, 0, syntax("invalid character in quoted string")
		}
	}
	return nil, 0, syntax("unterminated quoted string")
}

// unescape removes the backslashes of a quoted string already checked by
// parseQuoted.
func unescape(s []byte) []byte {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
		}
		out = append(out, s[i])
	}
	return out
}

// parseLiteral parses a literal at the start of b: "{" number ["+"] "}"
// CRLF and then number bytes of data (RFC 9051 section 4.3, RFC 7888).
func parseLiteral(b []byte) (val []byte, n int, err error) {
	end := 0
	for end < len(b) && b[end] != '}' {
		end++
	}
	if end == len(b) {
		return nil, 0, syntax("unterminated literal header")
	}
	size, _, ok := parseLiteralLen(b[1:end])
	if !ok {
		return nil, 0, syntax("invalid literal header")
	}
	rest := b[end+1:]
	if len(rest) < 2 || rest[0] != '\r' || rest[1] != '\n' {
		return nil, 0, syntax("literal header not followed by CRLF")
	}
	rest = rest[2:]
	if size > len(rest) {
		return nil, 0, syntax("literal shorter than announced")
	}
	return rest[:size], end + 3 + size, nil
}

// parseLiteralLen parses the inside of a literal header: 1*DIGIT ["+"].
func parseLiteralLen(b []byte) (size int, nonSync, ok bool) {
	if len(b) > 0 && b[len(b)-1] == '+' {
		nonSync = true
		b = b[:len(b)-1]
	}
	if len(b) == 0 || len(b) > maxLiteralDigits {
		return 0, false, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false, false
		}
		size = size*10 + int(c-'0')
	}
	return size, nonSync, true
}

// literalAtEnd reports whether a line segment (without its CRLF) ends with a
// literal header outside any quoted string, and its length and kind. The
// segment must start between tokens: at the start of a command or right
// after a literal's data.
func literalAtEnd(seg []byte) (size int, nonSync, ok bool) {
	inQuote := false
	for i := 0; i < len(seg); i++ {
		switch seg[i] {
		case '"':
			inQuote = !inQuote
		case '\\':
			if inQuote {
				i++
			}
		}
	}
	if inQuote || len(seg) == 0 || seg[len(seg)-1] != '}' {
		return 0, false, false
	}
	open := len(seg) - 2
	for open >= 0 && seg[open] != '{' && len(seg)-open <= maxLiteralDigits+3 {
		open--
	}
	if open < 0 || seg[open] != '{' {
		return 0, false, false
	}
	return parseLiteralLen(seg[open+1 : len(seg)-1])
}

// brokenNonSyncLiteralAtEnd reports whether a line segment, like one
// literalAtEnd takes, ends with a non-synchronising literal header ("{",
// outside a quoted string, up to a final "+}") whose length literalAtEnd
// could not parse. The client sends the data without waiting (RFC 7888),
// so it cannot be told apart from the next command: the stream is out of
// sync.
func brokenNonSyncLiteralAtEnd(seg []byte) bool {
	inQuote, open := false, -1
	for i := 0; i < len(seg); i++ {
		switch seg[i] {
		case '"':
			inQuote = !inQuote
		case '\\':
			if inQuote {
				i++
			}
		case '{':
			if !inQuote {
				open = i
			}
		}
	}
	return !inQuote && open >= 0 && len(seg)-open >= 2 && string(seg[len(seg)-2:]) == "+}"
}

// looksLikeGarbage reports whether the start of a command line, as far as it
// has arrived, can no longer become "tag SP command-name": a TLS
// ClientHello, a binary protocol, noise. It lets the session hang up at once
// instead of waiting for a line end that may never come.
func looksLikeGarbage(b []byte) bool {
	i := 0
	for i < len(b) && isTagChar(b[i]) {
		i++
	}
	switch {
	case i == len(b):
		return false
	case i == 0:
		return b[0] != '\r' && b[0] != '\n' // an empty line is not garbage yet
	case b[i] != ' ':
		return b[i] != '\r' && b[i] != '\n'
	}
	j := i + 1
	for j < len(b) && isAlnum(b[j]) {
		j++
	}
	switch {
	case j == len(b):
		return false
	case j == i+1:
		return true
	}
	return b[j] != ' ' && b[j] != '\r' && b[j] != '\n'
}

// isAtomChar reports whether c is an ATOM-CHAR: any 7-bit CHAR except
// atom-specials (RFC 9051 section 9).
func isAtomChar(c byte) bool {
	if c <= ' ' || c >= 0x7f {
		return false
	}
	switch c {
	case '(', ')', '{', '%', '*', '"', '\\', ']':
		return false
	}
	return true
}

// isAstringChar reports whether c is an ASTRING-CHAR (ATOM-CHAR or "]").
func isAstringChar(c byte) bool { return c == ']' || isAtomChar(c) }

// isTagChar reports whether c may appear in a tag: any ASTRING-CHAR but "+".
func isTagChar(c byte) bool { return c != '+' && isAstringChar(c) }

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}
