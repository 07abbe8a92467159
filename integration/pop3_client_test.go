package integration

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

// rawPOP3 is a line-level POP3 client (RFC 1939) for tests that need to see
// exact replies or send exact bytes.
type rawPOP3 struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

// pop3Greeted connects to a plaintext (or STLS) frontend and reads the greeting.
func pop3Greeted(t testing.TB, addr string) *rawPOP3 {
	t.Helper()
	return pop3Greet(t, dial(t, addr))
}

// pop3GreetedTLS connects to an implicit-TLS frontend and reads the greeting.
func pop3GreetedTLS(t testing.TB, addr string) *rawPOP3 {
	t.Helper()
	return pop3Greet(t, dialTLS(t, addr))
}

func pop3Greet(t testing.TB, c net.Conn) *rawPOP3 {
	t.Helper()
	p := &rawPOP3{t: t, c: c, r: bufio.NewReader(c)}
	if g := p.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting: got %q, want +OK", g)
	}
	return p
}

func (p *rawPOP3) send(s string) {
	p.t.Helper()
	p.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(p.c, s); err != nil {
		p.t.Fatalf("send %q: %v", s, err)
	}
}

// line reads one line without its CRLF.
func (p *rawPOP3) line() string {
	p.t.Helper()
	l, err := p.readLine()
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	return l
}

func (p *rawPOP3) readLine() (string, error) {
	p.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	l, err := p.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// cmd sends one command and returns its status line.
func (p *rawPOP3) cmd(command string) string {
	p.t.Helper()
	p.send(command + "\r\n")
	return p.line()
}

// multiline reads the body of a multi-line reply (RFC 1939 section 3) up to
// the terminating ".", undoing the dot-stuffing; lines keep their CRLF.
func (p *rawPOP3) multiline() []byte {
	p.t.Helper()
	var b bytes.Buffer
	for range 1 << 20 {
		p.c.SetReadDeadline(time.Now().Add(15 * time.Second))
		l, err := p.r.ReadString('\n')
		if err != nil {
			p.t.Fatalf("read multi-line reply: %v (so far %q)", err, b.String())
		}
		if l == ".\r\n" {
			return b.Bytes()
		}
		b.WriteString(strings.TrimPrefix(l, "."))
	}
	p.t.Fatalf("multi-line reply without end")
	return nil
}

// capa returns the CAPA list.
func (p *rawPOP3) capa() []string {
	p.t.Helper()
	if st := p.cmd("CAPA"); !strings.HasPrefix(st, "+OK") {
		p.t.Fatalf("CAPA: got %q, want +OK", st)
	}
	return strings.Split(strings.TrimRight(string(p.multiline()), "\r\n"), "\r\n")
}

// stls upgrades the connection (RFC 2595 section 4).
func (p *rawPOP3) stls() {
	p.t.Helper()
	if st := p.cmd("STLS"); !strings.HasPrefix(st, "+OK") {
		p.t.Fatalf("STLS: got %q, want +OK", st)
	}
	p.handshake()
}

func (p *rawPOP3) handshake() {
	p.t.Helper()
	tc := tls.Client(p.c, clientTLS())
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		p.t.Fatalf("STLS handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	p.c = tc
	p.r = bufio.NewReader(tc)
}

// userPass logs in with USER and PASS and returns PASS's status line.
func (p *rawPOP3) userPass(user, pass string) string {
	p.t.Helper()
	if st := p.cmd("USER " + user); !strings.HasPrefix(st, "+OK") {
		p.t.Fatalf("USER %s: got %q, want +OK", user, st)
	}
	return p.cmd("PASS " + pass)
}

// authPlain logs in with AUTH PLAIN and an initial response (RFC 5034) and
// returns the status line.
func (p *rawPOP3) authPlain(user, pass string) string {
	p.t.Helper()
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	return p.cmd("AUTH PLAIN " + ir)
}

// login logs in with USER/PASS and fails the test unless the server says +OK.
func (p *rawPOP3) login(user string) {
	p.t.Helper()
	if st := p.userPass(user, "pass"); !strings.HasPrefix(st, "+OK") {
		p.t.Fatalf("login %s: got %q, want +OK", user, st)
	}
}

// retr fetches message n and returns it as the server sent it, dot-stuffing undone.
func (p *rawPOP3) retr(n int) []byte {
	p.t.Helper()
	if st := p.cmd("RETR " + strconv.Itoa(n)); !strings.HasPrefix(st, "+OK") {
		p.t.Fatalf("RETR %d: got %q, want +OK", n, st)
	}
	return p.multiline()
}

// quit ends the session politely.
func (p *rawPOP3) quit() {
	p.t.Helper()
	if st := p.cmd("QUIT"); !strings.HasPrefix(st, "+OK") {
		p.t.Fatalf("QUIT: got %q, want +OK", st)
	}
	p.c.Close()
}

// drain reads until EOF and returns the lines seen on the way.
func (p *rawPOP3) drain() ([]string, error) {
	var lines []string
	for range 1 << 16 {
		l, err := p.readLine()
		if l != "" {
			lines = append(lines, l)
		}
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return lines, err
		}
	}
	return lines, nil
}

// frontDoorLogins returns user's logins through Dovecot's service (imap-login,
// pop3-login, submission-login), by server name.
func frontDoorLogins(e *env, service, user string) map[string][]dovecotlab.Login {
	e.t.Helper()
	out := make(map[string][]dovecotlab.Login)
	for i, in := range e.lab.Instances {
		logins, err := in.Logins()
		if err != nil {
			e.t.Fatal(err)
		}
		for _, l := range logins {
			if l.User == user && l.Service == service {
				out[serverName(i)] = append(out[serverName(i)], l)
			}
		}
	}
	return out
}

// checkFrontDoorLogin fails t unless Dovecot logged exactly n logins of user
// through service, all on the server the director's hash names, from the
// real client address, with the TLS state the client had toward maildirector.
func checkFrontDoorLogin(t *testing.T, e *env, service, user string, n int, secured bool) {
	t.Helper()
	want := e.hashServer(user)
	var got map[string][]dovecotlab.Login
	// Dovecot writes the login line asynchronously to the client's reply.
	eventually(t, service+" login line of "+user, func() bool {
		got = frontDoorLogins(e, service, user)
		return len(got[want]) >= n
	})
	for server, logins := range got {
		if server != want {
			t.Errorf("%s: %d %s logins on %s, want all on %s", user, len(logins), service, server, want)
		}
	}
	if len(got[want]) != n {
		t.Errorf("%s: got %d %s logins on %s, want %d", user, len(got[want]), service, want, n)
	}
	for _, l := range got[want] {
		if l.RemoteIP != clientIP.String() {
			t.Errorf("%s logged rip=%s for %s, want the client's %s", want, l.RemoteIP, user, clientIP)
		}
		if l.Secured != secured {
			t.Errorf("%s logged secured=%v for %s, want %v: %+v", want, l.Secured, user, secured, l)
		}
	}
}
