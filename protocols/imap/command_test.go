package imap

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// show renders tokens compactly for comparisons: atom a, "quoted", {literal}, ( and ).
func show(toks []token) string {
	var parts []string
	for _, t := range toks {
		switch t.kind {
		case tokenAtom:
			parts = append(parts, string(t.val))
		case tokenQuoted:
			parts = append(parts, fmt.Sprintf("%q", t.val))
		case tokenLiteral:
			parts = append(parts, "{"+string(t.val)+"}")
		case tokenListStart:
			parts = append(parts, "(")
		case tokenListEnd:
			parts = append(parts, ")")
		}
	}
	return strings.Join(parts, " ")
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name, raw string
		tag, verb string
		args      string // as show renders them
		wantErr   bool
	}{
		{name: "no args", raw: "a1 CAPABILITY", tag: "a1", verb: "CAPABILITY"},
		{name: "lower-case verb", raw: "x noop", tag: "x", verb: "NOOP"},
		{name: "login atoms", raw: "a LOGIN alice s3cret", tag: "a", verb: "LOGIN", args: "alice s3cret"},
		{name: "astring with ]", raw: "a LOGIN al]ice pw", tag: "a", verb: "LOGIN", args: "al]ice pw"},
		{name: "quoted", raw: `a LOGIN "alice" "pa ss"`, tag: "a", verb: "LOGIN", args: `"alice" "pa ss"`},
		{name: "quoted escapes", raw: `a LOGIN "a\"b" "c\\d"`, tag: "a", verb: "LOGIN", args: `"a\"b" "c\\d"`},
		{name: "quoted 8-bit", raw: "a LOGIN \"j\xc3\xbcrgen\" x", tag: "a", verb: "LOGIN", args: `"jürgen" x`},
		{name: "empty quoted", raw: `a LOGIN "" x`, tag: "a", verb: "LOGIN", args: `"" x`},
		{name: "literal", raw: "a LOGIN {5}\r\nalice {3}\r\np w", tag: "a", verb: "LOGIN", args: "{alice} {p w}"},
		{name: "literal plus", raw: "a LOGIN {5+}\r\nalice pw", tag: "a", verb: "LOGIN", args: "{alice} pw"},
		{name: "empty literal", raw: "a LOGIN {0}\r\n x", tag: "a", verb: "LOGIN", args: "{} x"},
		{name: "literal with CRLF inside", raw: "a LOGIN u {4}\r\n\r\n\r\n", tag: "a", verb: "LOGIN", args: "u {\r\n\r\n}"},
		{name: "id list", raw: `a ID ("name" "x" "version" NIL)`, tag: "a", verb: "ID", args: `( "name" "x" "version" NIL )`},
		{name: "empty list", raw: "a ID ()", tag: "a", verb: "ID", args: "( )"},
		{name: "nested list", raw: "a ID ((a) b)", tag: "a", verb: "ID", args: "( ( a ) b )"},
		{name: "authenticate ir", raw: "a AUTHENTICATE PLAIN AGFsaWNlAHB3", tag: "a", verb: "AUTHENTICATE", args: "PLAIN AGFsaWNlAHB3"},
		{name: "authenticate empty ir", raw: "a AUTHENTICATE PLAIN =", tag: "a", verb: "AUTHENTICATE", args: "PLAIN ="},

		{name: "empty", raw: "", wantErr: true},
		{name: "tag only", raw: "a1", wantErr: true},
		{name: "tag with +", raw: "+ NOOP", wantErr: true},
		{name: "tag with *", raw: "* NOOP", wantErr: true},
		{name: "verb not atom", raw: "a ( x", wantErr: true},
		{name: "double space before verb", raw: "a  NOOP", wantErr: true},
		{name: "http", raw: "GET / HTTP/1.1", wantErr: true},
		{name: "trailing space", raw: "a LOGIN x y ", tag: "a", verb: "LOGIN", wantErr: true},
		{name: "double space", raw: "a LOGIN x  y", tag: "a", verb: "LOGIN", wantErr: true},
		{name: "unterminated quote", raw: `a LOGIN "x y`, tag: "a", verb: "LOGIN", wantErr: true},
		{name: "bad escape", raw: `a LOGIN "\x" y`, tag: "a", verb: "LOGIN", wantErr: true},
		{name: "escape at end", raw: `a LOGIN "\`, tag: "a", verb: "LOGIN", wantErr: true},
		{name: "NUL in quoted", raw: "a LOGIN \"x\x00\" y", tag: "a", verb: "LOGIN", wantErr: true},
		{name: "short literal", raw: "a LOGIN {9}\r\nab", tag: "a", verb: "LOGIN", wantErr: true},
		{name: "literal without CRLF", raw: "a LOGIN {2}ab", tag: "a", verb: "LOGIN", wantErr: true},
		{name: "literal bad digits", raw: "a LOGIN {2x}\r\nab", tag: "a", verb: "LOGIN", wantErr: true},
		{name: "literal huge", raw: "a LOGIN {99999999999999999999}\r\nab", tag: "a", verb: "LOGIN", wantErr: true},
		{name: "literal8", raw: "a LOGIN ~{2}\r\nab", tag: "a", verb: "LOGIN", wantErr: true},
		{name: "unclosed list", raw: "a ID (x", tag: "a", verb: "ID", wantErr: true},
		{name: "stray )", raw: "a ID x)", tag: "a", verb: "ID", wantErr: true},
		{name: "space before )", raw: "a ID (x )", tag: "a", verb: "ID", wantErr: true},
		{name: "no space after )", raw: "a ID (x)y", tag: "a", verb: "ID", wantErr: true},
		{name: "wildcard", raw: "a LIST x *", tag: "a", verb: "LIST", wantErr: true},
		{name: "control char", raw: "a LOGIN x\x01 y", tag: "a", verb: "LOGIN", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := parseCommand([]byte(tt.raw))
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseCommand(%q): got err %v, want error %v", tt.raw, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, errSyntax) {
				t.Errorf("got err %v, want one wrapping errSyntax", err)
			}
			if cmd.tag != tt.tag || cmd.verb != tt.verb {
				t.Errorf("got tag %q verb %q, want %q %q", cmd.tag, cmd.verb, tt.tag, tt.verb)
			}
			if got := show(cmd.args); got != tt.args {
				t.Errorf("got args %s, want %s", got, tt.args)
			}
		})
	}
}

func TestSyntaxErrorHidesInput(t *testing.T) {
	for _, raw := range []string{`a LOGIN "secret`, "a LOGIN {9}\r\nsecret", `a LOGIN "sec\ret" x`, "a LOGIN secret\x01 x"} {
		_, err := parseCommand([]byte(raw))
		if err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("parseCommand(%q): got %v, want an error that does not quote the input", raw, err)
		}
	}
}

func TestLiteralAtEnd(t *testing.T) {
	tests := []struct {
		seg         string
		size        int
		nonSync, ok bool
	}{
		{seg: "a LOGIN {5}", size: 5, ok: true},
		{seg: "a LOGIN {12+}", size: 12, nonSync: true, ok: true},
		{seg: "a LOGIN x {0}", size: 0, ok: true},
		{seg: "}", ok: false},
		{seg: "{}", ok: false},
		{seg: "{+}", ok: false},
		{seg: "a LOGIN x", ok: false},
		{seg: `a LOGIN "{5}`, ok: false},                   // inside an unterminated quote
		{seg: `a LOGIN "x\"{5}`, ok: false},                // still inside the quote
		{seg: `a LOGIN "x\\" {5}`, size: 5, ok: true},      // the quote ended
		{seg: "a LOGIN {99999999999}", ok: false},          // too many digits
		{seg: "a LOGIN {12345678901234567890}", ok: false}, // would overflow
		{seg: "a LOGIN {5x}", ok: false},
		{seg: "", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.seg, func(t *testing.T) {
			size, nonSync, ok := literalAtEnd([]byte(tt.seg))
			if size != tt.size || nonSync != tt.nonSync || ok != tt.ok {
				t.Errorf("got (%d, %v, %v), want (%d, %v, %v)", size, nonSync, ok, tt.size, tt.nonSync, tt.ok)
			}
		})
	}
}

func TestBrokenNonSyncLiteralAtEnd(t *testing.T) {
	tests := []struct {
		seg  string
		want bool
	}{
		{seg: "a LOGIN {1x+}", want: true},
		{seg: "a LOGIN {+}", want: true},
		{seg: "a LOGIN {-1+}", want: true},
		{seg: "a LOGIN {123456789012+}", want: true}, // too many digits
		{seg: "a LOGIN x {5 y+}", want: true},        // "{" starts nothing else
		{seg: "a LOGIN {5x}", want: false},           // synchronising: no data follows unasked
		{seg: "a LOGIN x+}", want: false},            // an atom
		{seg: `a LOGIN "{1x+}`, want: false},         // inside a quote
		{seg: `a LOGIN "{" x+}`, want: false},        // the brace was quoted
		{seg: "+}", want: false},
		{seg: "", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.seg, func(t *testing.T) {
			if got := brokenNonSyncLiteralAtEnd([]byte(tt.seg)); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLooksLikeGarbage(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"", false},
		{"a", false},
		{"a1 ", false},
		{"a1 LOG", false},
		{"a1 LOGIN ", false},
		{"a1 NOOP\r\n", false},
		{"\r\n", false},
		{"\n", false},
		{"a1\r\n", false}, // a tag alone is a syntax matter for the line parser
		{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", true}, // TLS ClientHello
		{"\x00\x00", true},
		{"a1\x00", true},
		{"a1  NOOP", true},
		{"a1 /", true},
		{"a1 NO\x00", true},
		{"GET / HTTP/1.1\r\n", true},
		{"EHLO x\r\n", false}, // a verb the line parser will not know
		{"* OK", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.in), func(t *testing.T) {
			if got := looksLikeGarbage([]byte(tt.in)); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// FuzzParseCommand checks that the tokenizer never panics, that every
// token lies within the input and that the framing helpers agree with the
// parser: a command the parser accepts is framed (line by line, literal by
// literal, as readCommand does) into exactly the same bytes, a line the sniff
// calls garbage is never the start of a command.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"a1 CAPABILITY", `a LOGIN "al\"ice" {3+}` + "\r\npw!", "a LOGIN {5}\r\nalice {3}\r\npwd",
		`a ID ("name" "x" ("y"))`, "a AUTHENTICATE PLAIN =", "GET / HTTP/1.1", "\x16\x03\x01",
		"a LOGIN {99999999999}\r\n", "a ID (((", "a LOGIN \"\\", "{0}\r\n",
		`a.1 LOGIN "x\"{3}" {2}` + "\r\npw", "x-1 ID ({1}\r\n\n {0}\r\n)", "a LOGIN {2+}\r\n{}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		cmd, err := parseCommand(raw)
		if err != nil {
			if !errors.Is(err, errSyntax) {
				t.Fatalf("got err %v, want one wrapping errSyntax", err)
			}
		} else {
			if len(cmd.args) > len(raw) {
				t.Fatalf("got %d tokens from %d bytes", len(cmd.args), len(raw))
			}
			for _, tok := range cmd.args {
				if len(tok.val) > len(raw) {
					t.Fatalf("token of %d bytes from %d bytes of input", len(tok.val), len(raw))
				}
			}
			if got, ok := frameCommand(append(slices.Clip(raw), "\r\n"...)); !ok || !bytes.Equal(got, raw) {
				t.Fatalf("the parser accepts %q, the framing reads %q (ok %v)", raw, got, ok)
			}
		}
		size, _, ok := literalAtEnd(raw)
		if ok && (size < 0 || size > 9999999999) {
			t.Fatalf("literal size %d out of range", size)
		}
		if _, _, _, ok := parseTagVerb(raw); ok {
			for k := range len(raw) + 1 {
				if looksLikeGarbage(raw[:k]) {
					t.Fatalf("%q starts a command, yet its first %d bytes look like garbage", raw, k)
				}
			}
		}
	})
}

// frameCommand splits one command off stream as readCommand does: a line
// (its CRLF or LF dropped), and while the line ends with a literal header,
// CRLF, that many bytes and the next line. It returns the command as
// parseCommand takes it; ok is false if the stream ends first.
func frameCommand(stream []byte) (cmd []byte, ok bool) {
	line := func() ([]byte, bool) {
		i := bytes.IndexByte(stream, '\n')
		if i < 0 {
			return nil, false
		}
		l := bytes.TrimSuffix(stream[:i], []byte("\r"))
		stream = stream[i+1:]
		return l, true
	}
	l, ok := line()
	if !ok {
		return nil, false
	}
	cmd = append(cmd, l...)
	for range len(stream) + 1 {
		size, _, lit := literalAtEnd(l)
		if !lit {
			return cmd, true
		}
		if size > len(stream) {
			return nil, false
		}
		cmd = append(append(cmd, "\r\n"...), stream[:size]...)
		stream = stream[size:]
		if l, ok = line(); !ok {
			return nil, false
		}
		cmd = append(cmd, l...)
	}
	return nil, false
}
