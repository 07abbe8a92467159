package mailwire

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ManageSieve (RFC 5804) lines, read and split once for both directions:
// the frontend reads client commands with them, its server leg and the
// health check read server responses.
//
// A line is a sequence of atoms (command names, OK/NO/BYE, response code
// names, numbers), strings and the parentheses around a response code. A
// string is quoted ("...", with \" and \\ escaped, RFC 5804 section 4
// quoted) or a literal: "{" number "+}" CRLF and that many octets from a
// client (literal-c2s), "{" number "}" CRLF from a server (literal-s2c),
// after which the line goes on. Dovecot reads a client's {n} like {n+},
// without a continuation, as the readers here do: ManageSieve has no
// continuation request for literals.

// ErrMalformedSieve: a ManageSieve line that does not follow RFC 5804
// section 4 (an unterminated quoted string, a bad escape, a literal cut
// short, a byte that starts no token).
var ErrMalformedSieve = errors.New("malformed managesieve line")

// maxSieveQuoted is the longest quoted string RFC 5804 section 4 allows
// (quoted = DQUOTE *1024QUOTED-CHAR DQUOTE); longer strings are literals.
const maxSieveQuoted = 1024

// SieveKind is the kind of a [SieveToken].
type SieveKind int

// Token kinds.
const (
	SieveKindAtom   SieveKind = iota // a bare word: command name, OK/NO/BYE, response code, number
	SieveKindString                  // a quoted string or a literal, its content unescaped
	SieveKindOpen                    // "(" before a response code (RFC 5804 section 4 resp-code)
	SieveKindClose                   // ")"
)

// SieveToken is one element of a ManageSieve line.
type SieveToken struct {
	Kind  SieveKind
	Value string // the atom, or the string's content; empty for SieveKindOpen and SieveKindClose
}

// ReadSieveLine reads one ManageSieve line with the literals it carries, at
// most max octets in all (line ends and literal data included), and returns
// it as received without its final line end (CRLF or a bare LF). A line
// that ends in "{n}" or "{n+}" is followed by n octets of literal data and
// then the rest of the line (RFC 5804 section 4). A line or literal past
// max is ErrLineTooLong, before its data is read; the rest stays unread and
// the caller should end the session.
func ReadSieveLine(r *bufio.Reader, max int) (string, error) {
	var b strings.Builder
	for {
		line, err := ReadLine(r, max-b.Len())
		if err != nil {
			return "", err
		}
		b.WriteString(line)
		n, ok := sieveLiteralAtEnd(TrimEOL(line))
		if !ok {
			return TrimEOL(b.String()), nil
		}
		if n > max-b.Len() {
			return "", ErrLineTooLong
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(r, data); err != nil {
			return "", err
		}
		b.Write(data)
	}
}

// sieveLiteralAtEnd reports whether line (without its line end) ends in a
// literal's announcement, "{n}" or "{n+}" at the start of the line or after
// a space or "(", and returns n.
func sieveLiteralAtEnd(line string) (int, bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false
	}
	open := strings.LastIndexByte(line, '{')
	if open < 0 || open > 0 && line[open-1] != ' ' && line[open-1] != '(' {
		return 0, false
	}
	n, _, ok := parseLiteralSize(line[open+1 : len(line)-1])
	return n, ok
}

// parseLiteralSize parses the inside of "{...}": a number of at most nine
// digits, then an optional "+" (non-synchronising).
func parseLiteralSize(s string) (n int, nonSync, ok bool) {
	s, nonSync = strings.CutSuffix(s, "+")
	if s == "" || len(s) > 9 {
		return 0, false, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, nonSync, err == nil
}

// ParseSieveLine splits a line from ReadSieveLine into tokens. Atoms and
// strings are separated by spaces (one or more); "(" and ")" need none
// inside them. Atoms are runs of printable ASCII other than space, DQUOTE,
// "(", ")", "{" and "}".
func ParseSieveLine(line string) ([]SieveToken, error) {
	var toks []SieveToken
	needSep := false // an atom, a string or ")" ended: a space must come before the next token
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == ' ':
			i++
			needSep = false
			continue
		case c == ')':
			toks = append(toks, SieveToken{Kind: SieveKindClose})
			i++
			needSep = true
			continue
		case needSep:
			return nil, ErrMalformedSieve
		}
		switch {
		case c == '(':
			toks = append(toks, SieveToken{Kind: SieveKindOpen})
			i++
			continue
		case c == '"':
			s, n, err := parseSieveQuoted(line[i:])
			if err != nil {
				return nil, err
			}
			toks = append(toks, SieveToken{Kind: SieveKindString, Value: s})
			i += n
		case c == '{':
			s, n, err := parseSieveLiteral(line[i:])
			if err != nil {
				return nil, err
			}
			toks = append(toks, SieveToken{Kind: SieveKindString, Value: s})
			i += n
		case isSieveAtomChar(c):
			j := i
			for j < len(line) && isSieveAtomChar(line[j]) {
				j++
			}
			toks = append(toks, SieveToken{Kind: SieveKindAtom, Value: line[i:j]})
			i = j
		default:
			return nil, ErrMalformedSieve
		}
		needSep = true
	}
	return toks, nil
}

func isSieveAtomChar(c byte) bool {
	return c > ' ' && c < 0x7f && c != '"' && c != '(' && c != ')' && c != '{' && c != '}'
}

// parseSieveQuoted parses the quoted string at the start of s and returns
// its content and the octets it took.
func parseSieveQuoted(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), i + 1, nil
		case '\\':
			// RFC 5804 section 4: QUOTED-SPECIALS = DQUOTE / "\".
			if i+1 >= len(s) || s[i+1] != '"' && s[i+1] != '\\' {
				return "", 0, ErrMalformedSieve
			}
			i++
			b.WriteByte(s[i])
		case '\r', '\n', 0:
			return "", 0, ErrMalformedSieve
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, ErrMalformedSieve
}

// parseSieveLiteral parses the literal at the start of s ("{n}" or "{n+}",
// a line end, n octets) and returns its data and the octets it took.
func parseSieveLiteral(s string) (string, int, error) {
	end := strings.IndexByte(s, '}')
	if end < 0 {
		return "", 0, ErrMalformedSieve
	}
	n, _, ok := parseLiteralSize(s[1:end])
	if !ok {
		return "", 0, ErrMalformedSieve
	}
	i := end + 1
	switch {
	case strings.HasPrefix(s[i:], "\r\n"):
		i += 2
	case strings.HasPrefix(s[i:], "\n"):
		i++
	default:
		return "", 0, ErrMalformedSieve
	}
	if len(s)-i < n {
		return "", 0, ErrMalformedSieve
	}
	return s[i : i+n], i + n, nil
}

// SieveQuote returns s as a ManageSieve quoted string (RFC 5804 section 4:
// at most 1024 octets of UTF-8 without NUL, CR or LF, with DQUOTE and "\"
// escaped), or ok false when s must be sent as a literal.
func SieveQuote(s string) (string, bool) {
	if len(s) > maxSieveQuoted || !utf8.ValidString(s) || strings.ContainsAny(s, "\x00\r\n") {
		return "", false
	}
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String(), true
}

// SieveString returns s as a ManageSieve string: quoted when it can be,
// else a literal, non-synchronising ("{n+}", literal-c2s) when a client
// sends it, "{n}" (literal-s2c) when a server does (RFC 5804 section 4).
func SieveString(s string, fromClient bool) string {
	if q, ok := SieveQuote(s); ok {
		return q
	}
	plus := ""
	if fromClient {
		plus = "+"
	}
	return "{" + strconv.Itoa(len(s)) + plus + "}\r\n" + s
}

// SieveResponse is a ManageSieve status response (RFC 5804 section 4
// response-oknobye): OK, NO or BYE, an optional response code in
// parentheses (section 1.3) and an optional human-readable string.
type SieveResponse struct {
	// Status is "OK", "NO" or "BYE".
	Status string
	// Code is the response code's name in upper case ("TRYLATER",
	// "QUOTA/MAXSIZE", "SASL", "TAG"); empty: none.
	Code string
	// Text is the human-readable string; empty: none.
	Text string
}

// ParseSieveResponse reads toks as a status response; ok is false when
// they are something else (a capability line, a SASL challenge).
func ParseSieveResponse(toks []SieveToken) (r SieveResponse, ok bool) {
	if len(toks) == 0 || toks[0].Kind != SieveKindAtom {
		return SieveResponse{}, false
	}
	r.Status = strings.ToUpper(toks[0].Value)
	if r.Status != "OK" && r.Status != "NO" && r.Status != "BYE" {
		return SieveResponse{}, false
	}
	rest := toks[1:]
	if len(rest) > 0 && rest[0].Kind == SieveKindOpen {
		end := 1
		for end < len(rest) && rest[end].Kind != SieveKindClose {
			end++
		}
		if end == len(rest) || end == 1 || rest[1].Kind != SieveKindAtom {
			return SieveResponse{}, false
		}
		r.Code = strings.ToUpper(rest[1].Value)
		rest = rest[end+1:]
	}
	switch {
	case len(rest) == 0:
	case len(rest) == 1 && rest[0].Kind == SieveKindString:
		r.Text = rest[0].Value
	default:
		return SieveResponse{}, false
	}
	return r, true
}

// ParseSieveCapability reads toks as one capability line of a greeting or
// a CAPABILITY response (RFC 5804 section 1.7: capability-name [SP
// string]) and returns it as "NAME" or "NAME value", the name upper-cased;
// ok is false for any other line.
func ParseSieveCapability(toks []SieveToken) (string, bool) {
	if len(toks) == 0 || len(toks) > 2 || toks[0].Kind != SieveKindString || toks[0].Value == "" {
		return "", false
	}
	for _, t := range toks {
		if t.Kind != SieveKindString {
			return "", false
		}
	}
	name := strings.ToUpper(toks[0].Value)
	if strings.ContainsAny(name, " \x00\r\n") {
		return "", false
	}
	if len(toks) == 1 {
		return name, true
	}
	return name + " " + toks[1].Value, true
}
