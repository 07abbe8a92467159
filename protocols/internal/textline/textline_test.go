package textline

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

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
		{"empty", "\r\n", Command{}, ErrMalformed},
		{"digit in verb", "GET1 x\r\n", Command{}, ErrMalformed},
		{"verb too long", strings.Repeat("A", 17) + "\r\n", Command{}, ErrMalformed},
		{"space without args", "USER \r\n", Command{}, ErrMalformed},
		{"NUL in args", "USER a\x00b\r\n", Command{}, ErrMalformed},
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

func TestRead(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		max     int
		want    []string
		wantErr error
	}{
		{"two lines", "A\r\nB\n", 10, []string{"A\r\n", "B\n"}, io.EOF},
		{"exactly max", "ABC\r\n", 5, []string{"ABC\r\n"}, io.EOF},
		{"too long with an end", "ABCD\r\n", 5, nil, ErrTooLong},
		{"too long without an end", strings.Repeat("x", 100), 10, nil, ErrTooLong},
		{"unterminated", "ABC", 10, nil, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
			var got []string
			var err error
			for {
				var l string
				if l, err = Read(r, tt.max); err != nil {
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

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"USER alice\r\n", "AUTH PLAIN AGFsaWNlAHg=\r\n", "\x16\x03\x01", "QUIT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := ParseCommand(line, 16)
		if err != nil {
			return
		}
		if c.Verb == "" || len(c.Verb) > 16 || strings.ContainsAny(c.Args, "\r\n\x00") {
			t.Fatalf("accepted a malformed line %q as %+v", line, c)
		}
	})
}

func FuzzRead(f *testing.F) {
	f.Add("USER a\r\nPASS b\r\n", 8)
	f.Fuzz(func(t *testing.T, in string, max int) {
		if max <= 0 || max > 1<<16 {
			return
		}
		r := bufio.NewReaderSize(strings.NewReader(in), 16)
		for i := 0; i < len(in)+1; i++ {
			l, err := Read(r, max)
			if err != nil {
				return
			}
			if len(l) > max || !strings.HasSuffix(l, "\n") {
				t.Fatalf("line %q breaks the cap %d or has no end", l, max)
			}
		}
	})
}
