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
		if !strings.HasPrefix(strings.ToUpper(line), "* CAPABILITY ") {
			t.Fatalf("accepted %q, want only untagged CAPABILITY", line)
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
		"\"SIEVE\" {8}\r\nfileinto\r\n\"VERSION\" \"1.0\"\r\nOK\r\nOK \"bye\"\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, typ := range []Type{TypeIMAP, TypePOP3, TypeSMTP, TypeHTTP, TypeManageSieve} {
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
				err = s.http("GET", "/", "h", 200, 200)
			case TypeManageSieve:
				_, err = s.managesieve()
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
