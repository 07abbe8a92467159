package mailwire

import (
	"bufio"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestReadSieveLine(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		max     int
		want    string
		wantErr error
	}{
		{"plain line", "NOOP\r\nX", 100, "NOOP", nil},
		{"bare LF", "NOOP\n", 100, "NOOP", nil},
		{"non-synchronising literal", "PUTSCRIPT \"a\" {6+}\r\nkeep;\n\r\nX", 100, "PUTSCRIPT \"a\" {6+}\r\nkeep;\n", nil},
		{"synchronising literal, read without a continuation", "AUTHENTICATE \"PLAIN\" {4}\r\nAAAA\r\n", 100, "AUTHENTICATE \"PLAIN\" {4}\r\nAAAA", nil},
		{"two literals", "A {1+}\r\nx {2+}\r\nyz \"q\"\r\n", 100, "A {1+}\r\nx {2+}\r\nyz \"q\"", nil},
		{"a literal alone (a SASL response)", "{3+}\r\nabc\r\n", 100, "{3+}\r\nabc", nil},
		{"literal data holding a line end and a marker", "A {8+}\r\n{1+}\r\n\r\n\r\n", 100, "A {8+}\r\n{1+}\r\n\r\n", nil},
		{"a response code before a literal", "NO (TAG {1}\r\nx) \"t\"\r\n", 100, "NO (TAG {1}\r\nx) \"t\"", nil},
		{"braces in a quoted string are no literal", "NOOP \"{5}\"\r\n", 100, "NOOP \"{5}\"", nil},
		{"braces glued to a word are no literal", "NOOP x{5}\r\n", 100, "NOOP x{5}", nil},
		{"not a number", "NOOP {x}\r\n", 100, "NOOP {x}", nil},
		{"line over the cap", "NOOP " + strings.Repeat("a", 20) + "\r\n", 16, "", ErrLineTooLong},
		{"literal over the cap, refused before its data", "A {100+}\r\n", 50, "", ErrLineTooLong},
		{"lines and literals add up", "A {10+}\r\n0123456789 {10+}\r\n0123456789\r\n", 38, "", ErrLineTooLong},
		{"literal cut off", "A {10+}\r\nabc", 100, "", io.ErrUnexpectedEOF},
		{"line cut off", "NOOP", 100, "", io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadSieveLine(bufio.NewReaderSize(strings.NewReader(tt.in), 16), tt.max)
			if got != tt.want || !errors.Is(err, tt.wantErr) {
				t.Errorf("got %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func atom(s string) SieveToken { return SieveToken{Kind: SieveKindAtom, Value: s} }
func str(s string) SieveToken  { return SieveToken{Kind: SieveKindString, Value: s} }

var (
	openTok  = SieveToken{Kind: SieveKindOpen}
	closeTok = SieveToken{Kind: SieveKindClose}
)

func TestParseSieveLine(t *testing.T) {
	tests := []struct {
		line string
		want []SieveToken
		err  bool
	}{
		{line: "CAPABILITY", want: []SieveToken{atom("CAPABILITY")}},
		{line: `Authenticate "PLAIN" "AGEAYg=="`, want: []SieveToken{atom("Authenticate"), str("PLAIN"), str("AGEAYg==")}},
		{line: `NOOP  "a\"b\\c"`, want: []SieveToken{atom("NOOP"), str(`a"b\c`)}},
		{line: `NOOP ""`, want: []SieveToken{atom("NOOP"), str("")}},
		{line: "AUTHENTICATE \"PLAIN\" {4+}\r\nA\r\nB", want: []SieveToken{atom("AUTHENTICATE"), str("PLAIN"), str("A\r\nB")}},
		{line: "{3}\nabc", want: []SieveToken{str("abc")}},
		{line: `OK (TAG "x") "Done"`, want: []SieveToken{atom("OK"), openTok, atom("TAG"), str("x"), closeTok, str("Done")}},
		{line: `NO (QUOTA/MAXSIZE) "Too big"`, want: []SieveToken{atom("NO"), openTok, atom("QUOTA/MAXSIZE"), closeTok, str("Too big")}},
		{line: `"SIEVE" "fileinto reject"`, want: []SieveToken{str("SIEVE"), str("fileinto reject")}},
		{line: `"STARTTLS"`, want: []SieveToken{str("STARTTLS")}},
		{line: "HAVESPACE \"s\" 1024", want: []SieveToken{atom("HAVESPACE"), str("s"), atom("1024")}},
		{line: "", want: nil},
		{line: `"unterminated`, err: true},
		{line: `"bad \x escape"`, err: true},
		{line: `"a""b"`, err: true},
		{line: `OK"x"`, err: true},
		{line: `NOOP "x"y`, err: true},
		{line: "NOOP {5+}\r\nab", err: true},
		{line: "NOOP {5+}x", err: true},
		{line: "NOOP {+}\r\n", err: true},
		{line: "NOOP {5", err: true},
		{line: "NOOP \x16\x03", err: true},
		{line: "NOOP \"a\rb\"", err: true},
		{line: "NOOP \"a\x00\"", err: true},
		{line: "NOOP }", err: true},
		{line: "NOOP \xff", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := ParseSieveLine(tt.line)
			if (err != nil) != tt.err {
				t.Fatalf("err: got %v, want error %v", err, tt.err)
			}
			if err != nil && !errors.Is(err, ErrMalformedSieve) {
				t.Errorf("got %v, want %v", err, ErrMalformedSieve)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestSieveString(t *testing.T) {
	tests := []struct {
		name, in             string
		fromClient           bool
		want                 string
		quotable             bool
		wantQuoted, wantFrom string
	}{
		{name: "plain", in: "Dovecot ready.", want: `"Dovecot ready."`, quotable: true},
		{name: "escapes", in: `a"b\c`, want: `"a\"b\\c"`, quotable: true},
		{name: "UTF-8", in: "Grüße", want: `"Grüße"`, quotable: true},
		{name: "empty", in: "", want: `""`, quotable: true},
		{name: "line break, from a client", in: "a\r\nb", fromClient: true, want: "{4+}\r\na\r\nb"},
		{name: "line break, from a server", in: "a\nb", want: "{3}\r\na\nb"},
		{name: "NUL", in: "a\x00", fromClient: true, want: "{2+}\r\na\x00"},
		{name: "not UTF-8", in: "\xff", want: "{1}\r\n\xff"},
		{name: "1024 octets", in: strings.Repeat("A", 1024), want: `"` + strings.Repeat("A", 1024) + `"`, quotable: true},
		{name: "1025 octets", in: strings.Repeat("A", 1025), fromClient: true, want: "{1025+}\r\n" + strings.Repeat("A", 1025)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SieveString(tt.in, tt.fromClient); got != tt.want {
				t.Errorf("SieveString: got %q, want %q", got, tt.want)
			}
			if _, ok := SieveQuote(tt.in); ok != tt.quotable {
				t.Errorf("SieveQuote: got ok %v, want %v", ok, tt.quotable)
			}
			toks, err := ParseSieveLine(tt.want)
			if err != nil || !slices.Equal(toks, []SieveToken{str(tt.in)}) {
				t.Errorf("parse back: got %+v, %v; want the string", toks, err)
			}
		})
	}
}

func TestParseSieveResponse(t *testing.T) {
	tests := []struct {
		line string
		want SieveResponse
		ok   bool
	}{
		{`OK "Dovecot ready."`, SieveResponse{Status: "OK", Text: "Dovecot ready."}, true},
		{`ok`, SieveResponse{Status: "OK"}, true},
		{`NO (TRYLATER) "Try again"`, SieveResponse{Status: "NO", Code: "TRYLATER", Text: "Try again"}, true},
		{`OK (tag "x") "Done"`, SieveResponse{Status: "OK", Code: "TAG", Text: "Done"}, true},
		{`BYE (REFERRAL "sieve://b")`, SieveResponse{Status: "BYE", Code: "REFERRAL"}, true},
		{"NO {3}\r\nbad", SieveResponse{Status: "NO", Text: "bad"}, true},
		{`"SASL" "PLAIN"`, SieveResponse{}, false},
		{`""`, SieveResponse{}, false},
		{`OKAY`, SieveResponse{}, false},
		{`OK "a" "b"`, SieveResponse{}, false},
		{`OK () "a"`, SieveResponse{}, false},
		{`OK (TRYLATER "a"`, SieveResponse{}, false},
		{`OK x`, SieveResponse{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			toks, err := ParseSieveLine(tt.line)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := ParseSieveResponse(toks)
			if got != tt.want || ok != tt.ok {
				t.Errorf("got %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseSieveCapability(t *testing.T) {
	tests := []struct {
		line, want string
		ok         bool
	}{
		{`"IMPLEMENTATION" "Dovecot Pigeonhole"`, "IMPLEMENTATION Dovecot Pigeonhole", true},
		{`"sasl" "PLAIN LOGIN"`, "SASL PLAIN LOGIN", true},
		{`"STARTTLS"`, "STARTTLS", true},
		{`"SASL" ""`, "SASL ", true},
		{"{6}\r\nNOTIFY {6}\r\nmailto", "NOTIFY mailto", true},
		{`OK "ready"`, "", false},
		{`"A" "b" "c"`, "", false},
		{`""`, "", false},
		{`"A B" "c"`, "", false},
		{`"A" x`, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			toks, err := ParseSieveLine(tt.line)
			if err != nil {
				t.Fatal(err)
			}
			got, ok := ParseSieveCapability(toks)
			if got != tt.want || ok != tt.ok {
				t.Errorf("got %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}
