package checks

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func FuzzParseIMAPCapability(f *testing.F) {
	for _, s := range []string{
		"* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN",
		"* capability IMAP4rev2",
		"* CAPABILITY",
		"* CAPABILITY  IMAP4rev1",
		"* CAPABILITY IMAP4rev1 ",
		"* CAPABILITY IMAP4rev1 X(",
		"a CAPABILITY IMAP4rev1",
		"* OK [CAPABILITY IMAP4rev1] ready",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		caps, ok := parseIMAPCapability(line)
		if !ok {
			if caps != nil {
				t.Fatalf("got %q with ok false, want nil", caps)
			}
			return
		}
		if len(caps) == 0 {
			t.Fatal("got ok with no capabilities")
		}
		for _, c := range caps {
			if !isIMAPAtom(c) {
				t.Fatalf("got %q, want only atoms", c)
			}
		}
		// The atoms, space-joined, are exactly what follows the keyword.
		if want := " " + strings.Join(caps, " "); !strings.HasSuffix(line, want) {
			t.Fatalf("got %q from %q: the line does not end with them", caps, line)
		}
		if !hasPrefixFold(line, "* CAPABILITY ") {
			t.Fatalf("accepted %q, want only untagged CAPABILITY", line)
		}
	})
}

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
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		code, lines, err := readSMTPReply(bufio.NewReader(bytes.NewReader(data)))
		if len(lines) > maxLines {
			t.Fatalf("got %d lines, want at most %d", len(lines), maxLines)
		}
		if err != nil {
			return
		}
		if code < 200 || code > 599 || len(lines) == 0 {
			t.Fatalf("got code %d with %d lines", code, len(lines))
		}
		for i, l := range lines {
			c, more, ok := parseSMTPLine(l)
			if !ok || c != code || more != (i < len(lines)-1) {
				t.Fatalf("line %d %q: got code %d more %v ok %v in a reply with code %d", i, l, c, more, ok, code)
			}
		}
	})
}

func FuzzReadPOP3MultiLine(f *testing.F) {
	for _, s := range []string{
		"CAPA\r\nTOP\r\nSASL PLAIN\r\n.\r\n",
		".\r\n",
		"..stuffed\r\n.\r\n",
		"no end\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, err := readPOP3MultiLine(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		if len(lines) > maxLines {
			t.Fatalf("got %d lines, want at most %d", len(lines), maxLines)
		}
		if !bytes.Contains(data, []byte(".\n")) && !bytes.Contains(data, []byte(".\r\n")) {
			t.Fatalf("got %q without a terminating dot line in %q", lines, data)
		}
	})
}

func FuzzReadLine(f *testing.F) {
	f.Add([]byte("a\r\nb\n"))
	f.Add([]byte("no end"))
	f.Add(bytes.Repeat([]byte("x"), maxLine+1))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(data), 16) // small buffer: exercise ErrBufferFull
		for range maxLines {
			line, err := readLine(r)
			if err != nil {
				return
			}
			if strings.ContainsRune(line, '\n') || len(line) > maxLine {
				t.Fatalf("got line %q (%d octets)", line, len(line))
			}
		}
	})
}

// imapUnquote reverses imapQuote for the fuzz target.
func imapUnquote(q string) (string, bool) {
	if len(q) < 2 || q[0] != '"' || q[len(q)-1] != '"' {
		return "", false
	}
	var b strings.Builder
	for i := 1; i < len(q)-1; i++ {
		c := q[i]
		switch c {
		case '\\':
			i++
			if i == len(q)-1 || (q[i] != '"' && q[i] != '\\') {
				return "", false
			}
			c = q[i]
		case '"':
			return "", false
		}
		b.WriteByte(c)
	}
	return b.String(), true
}

func FuzzIMAPQuote(f *testing.F) {
	for _, s := range []string{"", "user", `a"b\c`, "pässwörd", "a\r\nb", "x\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, ok := imapQuote(s)
		if !ok {
			if !strings.ContainsAny(s, "\x00\r\n") && !strings.ContainsFunc(s, func(r rune) bool { return r >= 0x80 }) {
				t.Fatalf("refused to quote %q", s)
			}
			return
		}
		got, ok := imapUnquote(q)
		if !ok || got != s {
			t.Fatalf("quoted %q as %s, which unquotes to %q, %v", s, q, got, ok)
		}
	})
}

// scriptedConn is a net.Conn that reads a fixed server script and discards
// writes, so whole probes can be fuzzed without goroutines.
type scriptedConn struct {
	r *bytes.Reader
}

func (c *scriptedConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c *scriptedConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c *scriptedConn) Close() error                       { return nil }
func (c *scriptedConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *scriptedConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *scriptedConn) SetDeadline(time.Time) error        { return nil }
func (c *scriptedConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *scriptedConn) SetWriteDeadline(t time.Time) error { return nil }

// FuzzProbes feeds arbitrary server output to every conversation: none may
// panic, and a failure must be a CheckError with a one-line reason.
func FuzzProbes(f *testing.F) {
	for _, s := range []string{
		"* OK ready\r\n* CAPABILITY IMAP4rev1\r\na OK\r\n* BYE\r\nz OK\r\n",
		"* OK ready\r\n* X {3}\r\nabc\r\na OK\r\n",
		"* OK ready\r\n* X {99999999}\r\n",
		"+OK\r\n+OK\r\nTOP\r\n.\r\n+OK\r\n",
		"220 x\r\n250-x\r\n250 y\r\n221 z\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range []Type{TypeIMAP, TypePOP3, TypeSMTP, TypeHTTP} {
			s := &session{typ: typ, timeout: time.Second, conn: &scriptedConn{r: bytes.NewReader(data)}}
			s.r = bufio.NewReader(s.conn)
			var err error
			switch typ {
			case TypeIMAP:
				_, err = s.imap(imapLogin{user: "u", password: "pässwörd", selectInbox: true})
			case TypePOP3:
				_, err = s.pop3()
			case TypeSMTP:
				_, err = s.smtp("EHLO", "x")
			case TypeHTTP:
				err = s.http("GET", "/", "h", 200)
			}
			if err == nil {
				continue
			}
			var ce *CheckError
			if !errors.As(err, &ce) {
				t.Fatalf("%v: got %T %v, want a *CheckError", typ, err, err)
			}
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("%v: reason %q spans lines", typ, msg)
			}
			if strings.Contains(err.Error(), "pässwörd") {
				t.Fatalf("%v: reason %q leaks the password", typ, err)
			}
		}
	})
}
