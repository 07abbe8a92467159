package integration

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// rawIMAP is a line-level IMAP client for tests that need to see exact
// replies or send exact bytes.
type rawIMAP struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

func newRawIMAP(t testing.TB, c net.Conn) *rawIMAP {
	return &rawIMAP{t: t, c: c, r: bufio.NewReader(c)}
}

// greeted connects to a plaintext (or STARTTLS) frontend and reads the greeting.
func greeted(t testing.TB, addr string) *rawIMAP {
	t.Helper()
	r := newRawIMAP(t, dial(t, addr))
	if g := r.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting: got %q, want * OK", g)
	}
	return r
}

// greetedTLS connects to an implicit-TLS frontend and reads the greeting.
func greetedTLS(t testing.TB, addr string) *rawIMAP {
	t.Helper()
	r := newRawIMAP(t, dialTLS(t, addr))
	if g := r.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting: got %q, want * OK", g)
	}
	return r
}

func (r *rawIMAP) send(s string) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("send %q: %v", s, err)
	}
}

// line reads one line without its CRLF.
func (r *rawIMAP) line() string {
	r.t.Helper()
	l, err := r.readLine()
	if err != nil {
		r.t.Fatalf("read: %v", err)
	}
	return l
}

func (r *rawIMAP) readLine() (string, error) {
	r.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	l, err := r.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// cmd sends "tag command" and returns the untagged lines and the tagged reply.
func (r *rawIMAP) cmd(tag, command string) (untagged []string, tagged string) {
	r.t.Helper()
	r.send(tag + " " + command + "\r\n")
	return r.until(tag)
}

// until reads lines up to the reply tagged tag.
func (r *rawIMAP) until(tag string) (untagged []string, tagged string) {
	r.t.Helper()
	for {
		l := r.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, l
		}
		untagged = append(untagged, l)
	}
}

// login logs in and fails the test unless the server says OK.
func (r *rawIMAP) login(user string) {
	r.t.Helper()
	if _, tagged := r.cmd("L1", "LOGIN "+user+" pass"); !strings.HasPrefix(tagged, "L1 OK") {
		r.t.Fatalf("LOGIN %s: got %q, want OK", user, tagged)
	}
}

// logout ends the session politely.
func (r *rawIMAP) logout() {
	r.t.Helper()
	if _, tagged := r.cmd("Z", "LOGOUT"); !strings.HasPrefix(tagged, "Z OK") {
		r.t.Fatalf("LOGOUT: got %q, want OK", tagged)
	}
	r.c.Close()
}

// starttls upgrades the connection.
func (r *rawIMAP) starttls() {
	r.t.Helper()
	if _, tagged := r.cmd("S", "STARTTLS"); !strings.HasPrefix(tagged, "S OK") {
		r.t.Fatalf("STARTTLS: got %q, want OK", tagged)
	}
	tc := tls.Client(r.c, clientTLS())
	if err := tc.Handshake(); err != nil {
		r.t.Fatalf("STARTTLS handshake: %v", err)
	}
	r.c = tc
	r.r = bufio.NewReader(tc)
}

// closedOrBye reads until EOF and reports whether the connection ended,
// returning the lines seen on the way.
func (r *rawIMAP) drain() ([]string, error) {
	var lines []string
	for {
		l, err := r.readLine()
		if l != "" {
			lines = append(lines, l)
		}
		if err != nil {
			if err == io.EOF {
				return lines, nil
			}
			return lines, err
		}
	}
}
