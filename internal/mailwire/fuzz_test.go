package mailwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// FuzzReadLine checks ReadLine against its whole contract: every line ends
// in its only LF and fits the cap, the lines are the input's prefix with
// nothing lost, and the error says exactly what the rest of the input is.
func FuzzReadLine(f *testing.F) {
	f.Add([]byte("USER a\r\nPASS b\r\n"), 8)
	f.Add([]byte("a\r\nb\n"), 3)
	f.Add([]byte("no end"), 10)
	f.Add(bytes.Repeat([]byte("x"), 40), 32)
	f.Fuzz(func(t *testing.T, data []byte, max int) {
		if max <= 0 || max > 1<<16 {
			return
		}
		r := bufio.NewReaderSize(bytes.NewReader(data), 16) // small buffer: lines span refills
		consumed := 0
		for {
			line, err := ReadLine(r, max)
			if err != nil {
				rest := data[consumed:]
				i := bytes.IndexByte(rest, '\n')
				switch {
				case errors.Is(err, ErrLineTooLong):
					if (i >= 0 && i+1 <= max) || (i < 0 && len(rest) <= max) {
						t.Fatalf("got %v for %q with cap %d, want a line or EOF", err, rest, max)
					}
				case errors.Is(err, io.EOF):
					if i >= 0 || len(rest) > max {
						t.Fatalf("got EOF for %q with cap %d, want a line or %v", rest, max, ErrLineTooLong)
					}
				default:
					t.Fatalf("got %v, want %v or EOF", err, ErrLineTooLong)
				}
				return
			}
			if len(line) > max || strings.IndexByte(line, '\n') != len(line)-1 {
				t.Fatalf("got line %q with cap %d, want at most %d octets ending in its only LF", line, max, max)
			}
			if !bytes.HasPrefix(data[consumed:], []byte(line)) {
				t.Fatalf("got line %q, want the next line of %q", line, data[consumed:])
			}
			consumed += len(line)
		}
	})
}

// FuzzParseCommand: an accepted line has a clean upper-case keyword within
// the cap and clean arguments, and the command it gives, written out again,
// parses to itself.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"USER alice\r\n", "PASS a b c\r\n", "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "STLS\n",
		"EHLO client.example\r\n", "MAIL FROM:<a@b>\r\n", "\x16\x03\x01", "", " x", "QUIT",
	} {
		f.Add(s)
	}
	const maxVerb = 16
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := ParseCommand(line, maxVerb)
		if err != nil {
			if !errors.Is(err, ErrMalformedCommand) {
				t.Fatalf("got %v, want %v", err, ErrMalformedCommand)
			}
			return
		}
		if cmd.Verb == "" || strings.ToUpper(cmd.Verb) != cmd.Verb || len(cmd.Verb) > maxVerb || strings.Contains(cmd.Verb, " ") {
			t.Fatalf("got verb %q from %q, want 1..%d upper-case letters", cmd.Verb, line, maxVerb)
		}
		if strings.ContainsAny(cmd.Verb+cmd.Args, "\r\n\x00") {
			t.Fatalf("got %+v from %q, want no CR, LF or NUL", cmd, line)
		}
		again := cmd.Verb
		if cmd.Args != "" {
			again += " " + cmd.Args
		}
		if cmd2, err := ParseCommand(again+"\r\n", maxVerb); err != nil || cmd2 != cmd {
			t.Fatalf("reparse of %q: got %+v, %v; want %+v", again, cmd2, err, cmd)
		}
	})
}

// FuzzReadSMTPReply: a reply never has more lines than the cap; an accepted
// one has a code of 200 to 599 that every line carries, only its last line
// ends it, and its wire form reads back as the same reply; a malformed one
// quotes the offending line last.
func FuzzReadSMTPReply(f *testing.F) {
	for _, s := range []string{
		"220 mx ESMTP\r\n",
		"250-mx\r\n250-PIPELINING\r\n250 8BITMIME\r\n",
		"250\r\n",
		"250-a\r\n251 b\r\n",
		"421 4.3.2 Shutting down\n",
		"2500 x\r\n",
		"250-unterminated",
		"\r\n",
		"199 low\r\n",
		"550-x\r\n551 y\r\n",
		"250-1\r\n250-2\r\n250-3\r\n250-4\r\n250-5\r\n250 6\r\n",
	} {
		f.Add([]byte(s))
	}
	const maxLines, maxLine = 5, 64
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ReadSMTPReply(bufio.NewReader(bytes.NewReader(data)), maxLines, maxLine)
		if len(r.Lines) > maxLines {
			t.Fatalf("got %d lines, want at most %d", len(r.Lines), maxLines)
		}
		if errors.Is(err, ErrMalformedReply) {
			if len(r.Lines) == 0 {
				t.Fatalf("got %v with no line to quote", err)
			}
			bad := r.Lines[len(r.Lines)-1]
			if c, _, ok := parseSMTPLine(bad); ok && (len(r.Lines) == 1 || c == r.Code) {
				t.Fatalf("got %v, but %q is a good line of the reply", err, bad)
			}
		}
		if err != nil {
			return
		}
		if r.Code < 200 || r.Code > 599 || len(r.Lines) == 0 {
			t.Fatalf("got code %d with %d lines, want 200..599 and a line", r.Code, len(r.Lines))
		}
		for i, l := range r.Lines {
			c, last, ok := parseSMTPLine(l)
			if !ok || c != r.Code || last != (i == len(r.Lines)-1) {
				t.Fatalf("line %d %q: got code %d last %v ok %v in a reply with code %d", i, l, c, last, ok, r.Code)
			}
		}
		again, err := ReadSMTPReply(bufio.NewReader(strings.NewReader(r.Raw())), maxLines, maxLine+1)
		if err != nil || again.Code != r.Code || strings.Join(again.Lines, "\n") != strings.Join(r.Lines, "\n") {
			t.Fatalf("reread of %q: got %+v, %v; want %+v", r.Raw(), again, err, r)
		}
	})
}

// imapUnquote parses an IMAP quoted string (RFC 9051 section 4.3, 7-bit
// form): DQUOTE, TEXT-CHARs with "\" escaping only "\" and DQUOTE, DQUOTE.
func imapUnquote(q string) (string, bool) {
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(q)-1; i++ {
		c := q[i]
		switch {
		case c == '\\':
			i++
			if i == len(q)-1 || (q[i] != '"' && q[i] != '\\') {
				return "", false
			}
			c = q[i]
		case c == '"', c == 0, c == '\r', c == '\n', c >= 0x80:
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

// FuzzIMAPQuote: a string is refused exactly when it holds NUL, CR, LF or an
// 8-bit octet, and what is quoted parses back to the input.
func FuzzIMAPQuote(f *testing.F) {
	for _, s := range []string{"", "user", `a"b\c`, "pässwörd", "a\r\nb", "x\x00", `\`, `"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, ok := IMAPQuote(s)
		needsLiteral := strings.ContainsAny(s, "\x00\r\n") || strings.ContainsFunc(s, func(r rune) bool { return r >= 0x80 })
		if ok == needsLiteral {
			t.Fatalf("IMAPQuote(%q): got ok %v, want %v", s, ok, !needsLiteral)
		}
		if !ok {
			return
		}
		got, parsed := imapUnquote(q)
		if !parsed || got != s {
			t.Fatalf("quoted %q as %s, which parses to %q, %v; want %q, true", s, q, got, parsed, s)
		}
	})
}

// FuzzPOP3Status: no line is both positive and negative; a status is the
// indicator as a whole word in any case, line end or not.
func FuzzPOP3Status(f *testing.F) {
	for _, s := range []string{"+OK Dovecot ready.\r\n", "+ok\n", "-ERR [SYS/TEMP] x\r\n", "-err", "+OKAY", "+ \r\n", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		ok, bad := POP3OK(line), POP3Err(line)
		if ok && bad {
			t.Fatalf("%q: got both +OK and -ERR", line)
		}
		trimmed := TrimEOL(line)
		if strings.ContainsAny(trimmed, "\r\n") {
			return // not one line: ReadLine never returns such a thing
		}
		head, _, _ := strings.Cut(trimmed, " ")
		for _, c := range []struct {
			indicator string
			got       bool
		}{{"+OK", ok}, {"-ERR", bad}} {
			if want := asciiUpper(head) == c.indicator; c.got != want {
				t.Fatalf("%q: got %s %v, want %v", line, c.indicator, c.got, want)
			}
		}
		for _, end := range []string{"", "\r\n", "\n"} {
			if POP3OK(trimmed+end) != ok || POP3Err(trimmed+end) != bad {
				t.Fatalf("%q: the line end %q changes the verdict", line, end)
			}
		}
	})
}

// asciiUpper upper-cases ASCII letters only.
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// FuzzSieveLine: whatever ReadSieveLine returns fits the cap; the tokens
// ParseSieveLine finds in it, written out again (strings with SieveString,
// as a client sends them), read and parse back to the same tokens; a
// status response and a capability line are never both.
func FuzzSieveLine(f *testing.F) {
	for _, s := range []string{
		"AUTHENTICATE \"PLAIN\" \"AGEAYg==\"\r\n",
		"AUTHENTICATE \"PLAIN\" {8+}\r\nAGEAYg==\r\n",
		"{3}\r\nabc\r\n",
		"OK (TAG \"x\") \"Done\"\r\n",
		"NO (TRYLATER) {5}\r\nlater\r\n",
		"\"SIEVE\" \"fileinto\"\r\n",
		"PUTSCRIPT \"a\" {6+}\r\nkeep;\n\r\n",
		"NOOP \"a\\\"b\"\n",
		"A {99999+}\r\n",
		"\x16\x03\x01",
	} {
		f.Add([]byte(s))
	}
	const max = 256
	f.Fuzz(func(t *testing.T, data []byte) {
		line, err := ReadSieveLine(bufio.NewReaderSize(bytes.NewReader(data), 16), max)
		if err != nil {
			return
		}
		if len(line) > max {
			t.Fatalf("got %d octets with cap %d", len(line), max)
		}
		toks, err := ParseSieveLine(line)
		if err != nil {
			if !errors.Is(err, ErrMalformedSieve) {
				t.Fatalf("got %v, want %v", err, ErrMalformedSieve)
			}
			return
		}
		var parts []string
		for _, tok := range toks {
			switch tok.Kind {
			case SieveKindAtom:
				parts = append(parts, tok.Value)
			case SieveKindString:
				parts = append(parts, SieveString(tok.Value, true))
			case SieveKindOpen:
				parts = append(parts, "(")
			case SieveKindClose:
				parts = append(parts, ")")
			}
		}
		again := strings.Join(parts, " ")
		reread, err := ReadSieveLine(bufio.NewReader(strings.NewReader(again+"\r\n")), 1<<20)
		if err != nil || reread != again {
			t.Fatalf("reread of %q: got %q, %v", again, reread, err)
		}
		toks2, err := ParseSieveLine(again)
		if err != nil || !slices.Equal(toks2, toks) {
			t.Fatalf("reparse of %q (from %q): got %+v, %v; want %+v", again, line, toks2, err, toks)
		}
		_, isResp := ParseSieveResponse(toks)
		_, isCap := ParseSieveCapability(toks)
		if isResp && isCap {
			t.Fatalf("%q: both a response and a capability", line)
		}
	})
}
