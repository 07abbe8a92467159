package mailwire

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestReadLine(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		max     int
		want    []string
		wantErr error
	}{
		{"two lines", "A\r\nB\n", 10, []string{"A\r\n", "B\n"}, io.EOF},
		{"exactly max", "ABC\r\n", 5, []string{"ABC\r\n"}, io.EOF},
		{"exactly max past one buffer", strings.Repeat("a", 30) + "\r\n", 32, []string{strings.Repeat("a", 30) + "\r\n"}, io.EOF},
		{"too long with an end", "ABCD\r\n", 5, nil, ErrLineTooLong},
		{"too long without an end", strings.Repeat("x", 100), 10, nil, ErrLineTooLong},
		{"cut off by EOF", "ABC", 10, nil, io.EOF},
		{"empty input", "", 10, nil, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
			var got []string
			var err error
			for {
				var l string
				if l, err = ReadLine(r, tt.max); err != nil {
					break
				}
				got = append(got, l)
			}
			if !errors.Is(err, tt.wantErr) || strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("got %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestReadLineEarly: an overlong line is refused once max octets have
// arrived, without waiting for a line end or a full buffer.
func TestReadLineEarly(t *testing.T) {
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	go func() { pw.Write([]byte(strings.Repeat("x", 20))) }() // then nothing
	_, err := ReadLine(bufio.NewReaderSize(pr, 4096), 10)
	if !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("got %v, want %v", err, ErrLineTooLong)
	}
}

func TestTrimEOL(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"CRLF", "a\r\n", "a"},
		{"LF", "a\n", "a"},
		{"none", "a", "a"},
		{"CR alone stays a CR", "a\r", "a"},
		{"only one line end", "a\r\n\r\n", "a\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TrimEOL(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    Command
		wantErr error
	}{
		{"verb only", "QUIT\r\n", Command{Verb: "QUIT"}, nil},
		{"lower case and args with spaces", "pass my secret\r\n", Command{Verb: "PASS", Args: "my secret"}, nil},
		{"bare LF", "NOOP\n", Command{Verb: "NOOP"}, nil},
		{"empty", "\r\n", Command{}, ErrMalformedCommand},
		{"digit in verb", "GET1 x\r\n", Command{}, ErrMalformedCommand},
		{"verb too long", strings.Repeat("A", 17) + "\r\n", Command{}, ErrMalformedCommand},
		{"space without args", "USER \r\n", Command{}, ErrMalformedCommand},
		{"NUL in args", "USER a\x00b\r\n", Command{}, ErrMalformedCommand},
		{"HTTP request line", "GET / HTTP/1.1\r\n", Command{Verb: "GET", Args: "/ HTTP/1.1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCommand(tt.line, 16)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("got %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestIMAPQuote(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{"plain", "user", `"user"`, true},
		{"empty", "", `""`, true},
		{"specials escaped", `a"b\c`, `"a\"b\\c"`, true},
		{"spaces and parentheses", "a b (c)", `"a b (c)"`, true},
		{"8-bit needs a literal", "pässwörd", "", false},
		{"CRLF needs a literal", "a\r\nb", "", false},
		{"NUL needs a literal", "x\x00", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := IMAPQuote(tt.in)
			if got != tt.want || ok != tt.ok {
				t.Errorf("got %q, %v; want %q, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestReadSMTPReply(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantCode  int
		wantLines []string
		wantErr   error
	}{
		{"single", "220 hi\r\n", 220, []string{"220 hi"}, nil},
		{"bare code", "250\r\n", 250, []string{"250"}, nil},
		{"bare LF", "421 4.3.2 bye\n", 421, []string{"421 4.3.2 bye"}, nil},
		{"multi", "250-a\r\n250-b\r\n250 c\r\n", 250, []string{"250-a", "250-b", "250 c"}, nil},
		{"mixed codes", "250-a\r\n251 b\r\n", 0, []string{"250-a", "251 b"}, ErrMalformedReply},
		{"bad separator", "250xa\r\n", 0, []string{"250xa"}, ErrMalformedReply},
		{"four digits", "2500 x\r\n", 0, []string{"2500 x"}, ErrMalformedReply},
		{"not a code", "hello\r\n", 0, []string{"hello"}, ErrMalformedReply},
		{"code below 200", "199 low\r\n", 0, []string{"199 low"}, ErrMalformedReply},
		{"truncated", "250-a\r\n", 0, []string{"250-a"}, io.EOF},
		{"too many lines", "250-a\r\n250-b\r\n250-c\r\n250 d\r\n", 0, []string{"250-a", "250-b", "250-c"}, ErrTooManyLines},
		{"line too long", "250 " + strings.Repeat("x", 100) + "\r\n", 0, nil, ErrLineTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ReadSMTPReply(bufio.NewReader(strings.NewReader(tt.in)), 3, 64)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if err == nil && r.Code != tt.wantCode {
				t.Errorf("got code %d, want %d", r.Code, tt.wantCode)
			}
			if strings.Join(r.Lines, "|") != strings.Join(tt.wantLines, "|") {
				t.Errorf("got lines %q, want %q", r.Lines, tt.wantLines)
			}
		})
	}
}

func TestReplyRawText(t *testing.T) {
	r := Reply{Code: 250, Lines: []string{"250-mx", "250", "250 8BITMIME"}}
	if got, want := r.Raw(), "250-mx\r\n250\r\n250 8BITMIME\r\n"; got != want {
		t.Errorf("Raw: got %q, want %q", got, want)
	}
	if got, want := r.Text(), "mx / 8BITMIME"; got != want {
		t.Errorf("Text: got %q, want %q", got, want)
	}
}

func TestPOP3Status(t *testing.T) {
	tests := []struct {
		name        string
		line        string
		wantOK      bool
		wantErrResp bool
	}{
		{"OK with text", "+OK Dovecot ready.\r\n", true, false},
		{"OK alone", "+OK\r\n", true, false},
		{"OK without line end", "+OK", true, false},
		// RFC 1939 section 3 has servers send upper case; we accept any case.
		{"lower-case ok", "+ok logged in\r\n", true, false},
		{"ERR with text", "-ERR [AUTH] Authentication failed.\r\n", false, true},
		{"ERR alone", "-ERR\n", false, true},
		{"lower-case err", "-err no\r\n", false, true},
		{"OK run on", "+OKAY\r\n", false, false},
		{"ERR run on", "-ERROR\r\n", false, false},
		{"tab is not a space", "+OK\tx\r\n", false, false},
		{"SASL continuation", "+ \r\n", false, false},
		{"empty", "", false, false},
		{"SMTP", "250 ok\r\n", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := POP3OK(tt.line); got != tt.wantOK {
				t.Errorf("POP3OK: got %v, want %v", got, tt.wantOK)
			}
			if got := POP3Err(tt.line); got != tt.wantErrResp {
				t.Errorf("POP3Err: got %v, want %v", got, tt.wantErrResp)
			}
		})
	}
}
