package lmtp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/maildirector/maildirector/internal/mailwire"
)

func TestNormalizeCRLF(t *testing.T) {
	tests := []struct {
		name, in, want string
		bare           bool
	}{
		{"empty", "", "", false},
		{"crlf only", "a\r\nb\r\n", "a\r\nb\r\n", false},
		{"bare lf", "a\nb\n", "a\r\nb\r\n", true},
		{"bare cr", "a\rb\r", "a\r\nb\r\n", true},
		{"cr cr lf", "a\r\r\n", "a\r\n\r\n", true},
		{"lf cr", "a\n\rb", "a\r\n\r\nb", true},
		{"smuggling dot", "x\n.\nMAIL", "x\r\n.\r\nMAIL", true},
		{"no newline", "abc", "abc", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, bare := normalizeAll([]byte(tt.in))
			if string(got) != tt.want || bare != tt.bare {
				t.Errorf("got %q (bare %v), want %q (bare %v)", got, bare, tt.want, tt.bare)
			}
		})
	}
}

// normalizeAll normalises in in one chunk and settles the end.
func normalizeAll(in []byte) ([]byte, bool) {
	out, cr, bare := normalizeCRLF(nil, in, false)
	out, bareEnd := normalizeEnd(out, cr)
	return out, bare || bareEnd
}

func FuzzNormalizeCRLF(f *testing.F) {
	for _, s := range []string{"", "a\r\nb", "a\nb", "a\rb", "\r", "\n", "\r\r\n\n", "x\n.\nMAIL FROM:<a>\n", "..\r\n.\r\n"} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		out, bare := normalizeAll(in)
		for i, c := range out {
			if c == '\r' && (i+1 >= len(out) || out[i+1] != '\n') {
				t.Fatalf("bare CR at %d in %q", i, out)
			}
			if c == '\n' && (i == 0 || out[i-1] != '\r') {
				t.Fatalf("bare LF at %d in %q", i, out)
			}
		}
		crlfOnly := bytes.Count(in, []byte("\r")) == bytes.Count(in, []byte("\r\n")) &&
			bytes.Count(in, []byte("\n")) == bytes.Count(in, []byte("\r\n"))
		if crlfOnly && (!bytes.Equal(out, in) || bare) {
			t.Fatalf("CRLF-only input %q: got %q (bare %v), want it unchanged", in, out, bare)
		}
		if !crlfOnly && !bare {
			t.Fatalf("input %q with a bare CR or LF: bare not reported", in)
		}
		// Split in two chunks, as reads may: the same output.
		k := int(split) % (len(in) + 1)
		part, cr, _ := normalizeCRLF(nil, in[:k], false)
		part, cr, _ = normalizeCRLF(part, in[k:], cr)
		part, _ = normalizeEnd(part, cr)
		if !bytes.Equal(part, out) {
			t.Fatalf("split at %d: got %q, want %q", k, part, out)
		}
	})
}

func TestSpoolBody(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		reject  bool
		want    string
		wantErr error
	}{
		{"normalize", "a\nb\r\n", false, "a\r\nb\r\n", nil},
		{"reject bare lf", "a\nb\r\n", true, "", ErrBareNewline},
		{"reject trailing cr", "a\r", true, "", ErrBareNewline},
		{"reject clean", "a\r\nb\r\n", true, "a\r\nb\r\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp := &spool{dir: t.TempDir(), limit: 1 << 20}
			defer sp.Close()
			// One byte per read: a CRLF split across reads must stay one CRLF.
			err := spoolBody(sp, &oneByteReader{s: tt.in}, tt.reject)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if err == nil {
				var got bytes.Buffer
				got.ReadFrom(sp.reader())
				if got.String() != tt.want {
					t.Errorf("got %q, want %q", got.String(), tt.want)
				}
			}
		})
	}
}

type oneByteReader struct{ s string }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	p[0] = r.s[0]
	r.s = r.s[1:]
	return 1, nil
}

func TestServerReply(t *testing.T) {
	tests := []struct {
		name     string
		lines    []string
		wantLine string
	}{
		{"enhanced", []string{"250 2.0.0 <u@x> abc Saved"}, "250 2.0.0 <u@x> abc Saved\r\n"},
		{"no enhanced code", []string{"250 Saved"}, "250 2.0.0 Saved\r\n"},
		{"enhanced of another class", []string{"250 5.1.1 odd"}, "250 2.0.0 5.1.1 odd\r\n"},
		{"code only", []string{"550"}, "550 5.0.0 Failed\r\n"},
		{"multi-line", []string{"452-4.2.2 Mailbox full", "452 4.2.2 try later"}, "452 4.2.2 Mailbox full try later\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := mailwire.Reply{Code: 0, Lines: tt.lines}
			fmt.Sscanf(tt.lines[0][:3], "%d", &rep.Code)
			if got := serverReply(rep).line(); got != tt.wantLine {
				t.Errorf("got %q, want %q", got, tt.wantLine)
			}
		})
	}
}

func FuzzServerReply(f *testing.F) {
	for _, s := range []string{"250 2.0.0 <u@x> Saved", "250 2.1.5", "550 9.9.9 x", "250 2..0 x", "451 4.0.0000 x", "250"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		rep, err := mailwire.ReadSMTPReply(bufio.NewReader(strings.NewReader(line+"\r\n")), 10, 1000)
		if err != nil {
			return
		}
		r := serverReply(rep)
		ec, ok := parseEnhanced(r.enh)
		if r.code != rep.Code || !ok || ec[0] != rep.Code/100 || r.text == "" {
			t.Fatalf("serverReply(%q): got %+v", line, r)
		}
		if strings.ContainsAny(r.line()[:len(r.line())-2], "\r\n") {
			t.Fatalf("serverReply(%q): line %q holds a line end", line, r.line())
		}
	})
}
