package submission

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/proxy/proxytest"
)

// fakeServer is a tiny submission server: 220 greeting, EHLO, XCLIENT, AUTH
// PLAIN against one password, then MAIL and QUIT. It records the lines it
// received.
type fakeServer struct {
	addr     string
	greeting string // default "220 fake ESMTP"
	password string // default "secret"
	authErr  string // reply to a wrong password; default "535 5.7.8 Authentication failed."

	mu    sync.Mutex
	lines []string
}

func startFake(t *testing.T, f *fakeServer) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f.addr = ln.Addr().String()
	go f.acceptLoop(ln)
	return f
}

// acceptLoop serves connections until the listener is closed.
func (f *fakeServer) acceptLoop(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go f.serve(c)
	}
}

func (f *fakeServer) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.lines)
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// serve runs one session; it returns on QUIT, EOF or after 20 commands.
func (f *fakeServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	greeting := cmpOr(f.greeting, "220 fake ESMTP")
	io.WriteString(c, greeting+"\r\n")
	if !strings.HasPrefix(greeting, "220") {
		return
	}
	br := bufio.NewReader(c)
	for range 20 {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.mu.Lock()
		f.lines = append(f.lines, line)
		f.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			io.WriteString(c, "250-fake\r\n250-XCLIENT ADDR PORT HELO LOGIN PROTO\r\n250-SIZE 1000\r\n250 AUTH PLAIN\r\n")
		case "XCLIENT":
			io.WriteString(c, "220-fake\r\n220 ESMTP again\r\n")
		case "AUTH":
			_, ir, _ := strings.Cut(arg, " ")
			msg, _ := base64.StdEncoding.DecodeString(ir)
			creds, err := sasl.ParsePlain(msg)
			if err != nil || creds.Password != cmpOr(f.password, "secret") {
				io.WriteString(c, cmpOr(f.authErr, "535 5.7.8 Authentication failed.")+"\r\n")
				continue
			}
			io.WriteString(c, "235 2.7.0 Logged in.\r\n")
		case "MAIL":
			io.WriteString(c, "250 2.1.0 Ok\r\n")
		case "QUIT":
			io.WriteString(c, "221 2.0.0 Bye\r\n")
			return
		default:
			io.WriteString(c, "502 5.5.2 Unknown command\r\n")
		}
	}
}

// startFrontend runs the frontend on a real proxy.Server on 127.0.0.1:0
// and returns its address.
func startFrontend(t *testing.T, opts Options, tlsCfg *tls.Config) string {
	t.Helper()
	return startFrontendRetries(t, opts, tlsCfg, 0)
}

// startFrontendRetries is startFrontend with the engine frontend's Retries.
func startFrontendRetries(t *testing.T, opts Options, tlsCfg *tls.Config, retries int) string {
	t.Helper()
	if opts.Hostname == "" {
		opts.Hostname = "proxy.example.org"
	}
	return proxytest.Serve(t, proxy.Frontend{Name: "submission", Protocol: "submission", Handler: New(opts), TLS: tlsCfg, Retries: retries})
}

// client is the test's SMTP client.
type client struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, conn: conn, br: bufio.NewReader(conn)}
}

// greeted is the first rung of the ladder: connected and greeted.
func greeted(t *testing.T, addr string) *client {
	t.Helper()
	c := dial(t, addr)
	if got := c.reply(); got[0] != "220 proxy.example.org ESMTP maildirector" {
		t.Fatalf("greeting: got %q", got)
	}
	return c
}

// ehloed is the second rung: EHLO answered; it returns the keywords.
func ehloed(t *testing.T, addr string) (*client, []string) {
	t.Helper()
	c := greeted(t, addr)
	return c, c.ehlo()
}

// authenticated is the top rung: logged in through the proxy.
func authenticated(t *testing.T, addr, user, pass string) *client {
	t.Helper()
	c, _ := ehloed(t, addr)
	c.expect("AUTH PLAIN "+sasl.EncodePlain("", user, pass), "235 2.7.0 Logged in.")
	return c
}

// reply reads one (multi-line) reply.
func (c *client) reply() []string {
	c.t.Helper()
	var lines []string
	for range 100 {
		line, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (got %q)", err, append(lines, line))
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return lines
		}
	}
	c.t.Fatal("reply without end")
	return nil
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatalf("write %q: %v", line, err)
	}
}

// expect sends line and checks the (last line of the) reply.
func (c *client) expect(line, want string) {
	c.t.Helper()
	c.send(line)
	got := c.reply()
	if got[len(got)-1] != want {
		c.t.Fatalf("%s: got %q, want %q", line, got, want)
	}
}

// ehlo sends EHLO and returns the keywords after the host name.
func (c *client) ehlo() []string {
	c.t.Helper()
	c.send("EHLO client.example")
	lines := c.reply()
	var kw []string
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "250") {
			c.t.Fatalf("EHLO: got %q", lines)
		}
		kw = append(kw, l[4:])
	}
	return kw
}

func (c *client) expectClosed() {
	c.t.Helper()
	line, err := c.br.ReadString('\n')
	var ne net.Error
	switch {
	case err == nil:
		c.t.Fatalf("got %q, want the connection closed", line)
	case errors.As(err, &ne) && ne.Timeout():
		c.t.Fatalf("the connection is still open (read timed out), want it closed")
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestLogin(t *testing.T) {
	tests := []struct {
		name  string
		login func(c *client)
	}{
		{"PLAIN initial response", func(c *client) {
			c.expect("AUTH PLAIN "+sasl.EncodePlain("", "alice", "secret"), "235 2.7.0 Logged in.")
		}},
		{"PLAIN continuation", func(c *client) {
			c.expect("auth plain", "334 ")
			c.expect(sasl.EncodePlain("", "alice", "secret"), "235 2.7.0 Logged in.")
		}},
		{"LOGIN", func(c *client) {
			c.expect("AUTH LOGIN", "334 VXNlcm5hbWU6")
			c.expect(b64("alice"), "334 UGFzc3dvcmQ6")
			c.expect(b64("secret"), "235 2.7.0 Logged in.")
		}},
		{"LOGIN with initial response", func(c *client) {
			c.expect("AUTH LOGIN "+b64("alice"), "334 UGFzc3dvcmQ6")
			c.expect(b64("secret"), "235 2.7.0 Logged in.")
		}},
		{"pipelined after AUTH", func(c *client) {
			c.send("AUTH PLAIN " + sasl.EncodePlain("", "alice", "secret") + "\r\nMAIL FROM:<a@example.org>")
			if got := c.reply(); got[0] != "235 2.7.0 Logged in." {
				t.Fatalf("got %q, want 235", got)
			}
			if got := c.reply(); got[0] != "250 2.1.0 Ok" {
				t.Fatalf("got %q, want 250 for the pipelined MAIL", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := startFake(t, &fakeServer{})
			addr := startFrontend(t, Options{
				Picker:         &proxytest.Picker{Targets: []proxy.Target{{Server: "s1", Address: fake.addr}}},
				PlaintextLogin: true,
			}, nil)
			c, _ := ehloed(t, addr)
			tt.login(c)
			c.expect("MAIL FROM:<alice@example.org>", "250 2.1.0 Ok")
			c.expect("QUIT", "221 2.0.0 Bye")
			c.expectClosed()
			got := fake.received()
			want := []string{"EHLO client.example", "AUTH PLAIN " + sasl.EncodePlain("", "alice", "secret")}
			if len(got) < 2 || !slices.Equal(got[:2], want) {
				t.Errorf("server got %q, want %q first", got, want)
			}
		})
	}
}

func TestXClient(t *testing.T) {
	fake := startFake(t, &fakeServer{})
	addr := startFrontend(t, Options{
		Picker: &proxytest.Picker{Targets: []proxy.Target{{Server: "s1", Address: fake.addr}}}, XClient: map[string]bool{"s1": true},
		PlaintextLogin: true,
	}, nil)
	c := authenticated(t, addr, "alice", "secret")
	port := c.conn.LocalAddr().(*net.TCPAddr).Port
	got := fake.received()
	want := []string{
		"EHLO client.example",
		"XCLIENT ADDR=127.0.0.1 PORT=" + strconv.Itoa(port) + " HELO=client.example LOGIN=alice PROTO=ESMTP",
		"EHLO client.example",
		"AUTH PLAIN " + sasl.EncodePlain("", "alice", "secret"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("server got %q, want %q", got, want)
	}
}

func TestXClientLine(t *testing.T) {
	tests := []struct {
		name   string
		client netip.AddrPort
		user   string
		want   string
	}{
		{"ipv4", netip.MustParseAddrPort("192.0.2.1:4000"), "bob", "XCLIENT ADDR=192.0.2.1 PORT=4000 HELO=h LOGIN=bob PROTO=ESMTP"},
		{"ipv6", netip.MustParseAddrPort("[2001:db8::1]:25"), "bob", "XCLIENT ADDR=IPV6:2001:db8::1 PORT=25 HELO=h LOGIN=bob PROTO=ESMTP"},
		{"xtext", netip.MustParseAddrPort("192.0.2.1:1"), "a+b=c d\xc3\xa9", "XCLIENT ADDR=192.0.2.1 PORT=1 HELO=h LOGIN=a+2Bb+3Dc+20d+C3+A9 PROTO=ESMTP"},
		{"no address", netip.AddrPort{}, "bob", "XCLIENT HELO=h LOGIN=bob PROTO=ESMTP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := &serverLogin{creds: sasl.Credentials{User: tt.user}, helo: "h", client: tt.client}
			if got := l.xclient(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWrongPasswordRelayedAndRetry(t *testing.T) {
	fake := startFake(t, &fakeServer{})
	addr := startFrontend(t, Options{
		Picker:         &proxytest.Picker{Targets: []proxy.Target{{Server: "s1", Address: fake.addr}}},
		PlaintextLogin: true,
	}, nil)
	c, _ := ehloed(t, addr)
	c.expect("AUTH PLAIN "+sasl.EncodePlain("", "alice", "wrong"), "535 5.7.8 Authentication failed.")
	c.expect("AUTH PLAIN "+sasl.EncodePlain("", "alice", "secret"), "235 2.7.0 Logged in.")
	c.expect("MAIL FROM:<alice@example.org>", "250 2.1.0 Ok")
}

func TestTooManyFailedLogins(t *testing.T) {
	fake := startFake(t, &fakeServer{})
	addr := startFrontend(t, Options{
		Picker:           &proxytest.Picker{Targets: []proxy.Target{{Server: "s1", Address: fake.addr}}},
		PlaintextLogin:   true,
		MaxLoginAttempts: 2,
	}, nil)
	c, _ := ehloed(t, addr)
	c.expect("AUTH PLAIN "+sasl.EncodePlain("", "alice", "x"), "535 5.7.8 Authentication failed.")
	c.send("AUTH PLAIN " + sasl.EncodePlain("", "alice", "y"))
	if got := c.reply(); got[0] != "535 5.7.8 Authentication failed." {
		t.Fatalf("got %q, want 535", got)
	}
	if got := c.reply(); got[0] != "421 4.7.0 Too many failed authentication attempts" {
		t.Fatalf("got %q, want 421", got)
	}
	c.expectClosed()
}

func TestFailover(t *testing.T) {
	tests := []struct {
		name       string
		first      func(t *testing.T) string
		wantFailed []string // servers reported to passive health
	}{
		{"connection refused", func(t *testing.T) string { return proxytest.DeadAddr(t) }, []string{"bad"}},
		{"busy greeting", func(t *testing.T) string {
			return startFake(t, &fakeServer{greeting: "421 4.3.2 Too busy"}).addr
		}, []string{"bad"}},
		// A temporary AUTH refusal tries the next server but is not the
		// server's failure: an auth backend outage must not mark the fleet down.
		{"temporary auth failure", func(t *testing.T) string {
			return startFake(t, &fakeServer{password: "other", authErr: "454 4.7.0 Temporary authentication failure"}).addr
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := startFake(t, &fakeServer{})
			picker := &proxytest.Picker{Targets: []proxy.Target{
				{Server: "bad", Address: tt.first(t)},
				{Server: "good", Address: good.addr},
			}}
			addr := startFrontendRetries(t, Options{Picker: picker, PlaintextLogin: true}, nil, 1)
			c := authenticated(t, addr, "alice", "secret")
			c.expect("MAIL FROM:<a@example.org>", "250 2.1.0 Ok")
			if got := picker.Failures(); !slices.Equal(got, tt.wantFailed) {
				t.Errorf("failed servers: got %q, want %q", got, tt.wantFailed)
			}
		})
	}
}

func TestNoServer(t *testing.T) {
	tests := []struct {
		name    string
		targets func(t *testing.T) []proxy.Target
	}{
		{"none configured", func(*testing.T) []proxy.Target { return nil }},
		{"all down", func(t *testing.T) []proxy.Target {
			return []proxy.Target{{Server: "a", Address: proxytest.DeadAddr(t)}, {Server: "b", Address: proxytest.DeadAddr(t)}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startFrontendRetries(t, Options{
				Picker: &proxytest.Picker{Targets: tt.targets(t)}, PlaintextLogin: true,
			}, nil, 3)
			c, _ := ehloed(t, addr)
			// RFC 4954 section 6: a temporary failure; the session goes on.
			c.expect("AUTH PLAIN "+sasl.EncodePlain("", "alice", "secret"), "454 4.7.0 Temporary authentication failure: service temporarily unavailable")
			c.expect("QUIT", "221 2.0.0 Bye")
		})
	}
}

func TestEhlo(t *testing.T) {
	tests := []struct {
		name      string
		size      int64
		plaintext bool
		tls       bool
		want      []string
	}{
		{"plaintext refused, tls offered", 1000, false, true,
			[]string{"PIPELINING", "SIZE 1000", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS"}},
		{"plaintext allowed, no tls", 0, true, false,
			[]string{"PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "AUTH PLAIN LOGIN"}},
		{"no size", -1, true, true,
			[]string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS", "AUTH PLAIN LOGIN"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cfg *tls.Config
			if tt.tls {
				cfg = proxytest.ServerTLS(t)
			}
			addr := startFrontend(t, Options{
				Picker: &proxytest.Picker{}, MaxMessageSize: tt.size, PlaintextLogin: tt.plaintext,
			}, cfg)
			_, got := ehloed(t, addr)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestPlaintextRefusedBeforeTLS(t *testing.T) {
	addr := startFrontend(t, Options{Picker: &proxytest.Picker{}}, proxytest.ServerTLS(t))
	c, _ := ehloed(t, addr)
	c.expect("AUTH PLAIN "+sasl.EncodePlain("", "alice", "secret"), "530 5.7.0 Must issue a STARTTLS command first")
	c.expect("AUTH LOGIN", "530 5.7.0 Must issue a STARTTLS command first")
}

func TestStartTLS(t *testing.T) {
	fake := startFake(t, &fakeServer{})
	addr := startFrontend(t, Options{
		Picker: &proxytest.Picker{Targets: []proxy.Target{{Server: "s1", Address: fake.addr}}},
	}, proxytest.ServerTLS(t))
	c, _ := ehloed(t, addr)
	// RFC 3207 section 4.2: the pipelined AUTH must be discarded.
	c.send("STARTTLS\r\nAUTH PLAIN " + sasl.EncodePlain("", "mallory", "x"))
	if got := c.reply(); got[0] != "220 2.0.0 Ready to start TLS" {
		t.Fatalf("STARTTLS: got %q", got)
	}
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	c.conn, c.br = tc, bufio.NewReader(tc)
	c.expect("NOOP", "250 2.0.0 OK")
	// The EHLO before TLS is forgotten.
	c.expect("AUTH PLAIN "+sasl.EncodePlain("", "alice", "secret"), "503 5.5.1 Send EHLO first")
	kw := c.ehlo()
	if slices.Contains(kw, "STARTTLS") || !slices.Contains(kw, "AUTH PLAIN LOGIN") {
		t.Errorf("EHLO after TLS: got %q, want AUTH and no STARTTLS", kw)
	}
	c.expect("STARTTLS", "503 5.5.1 TLS already active")
	c.expect("AUTH PLAIN "+sasl.EncodePlain("", "alice", "secret"), "235 2.7.0 Logged in.")
	c.expect("MAIL FROM:<alice@example.org>", "250 2.1.0 Ok")
	if got := fake.received(); slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, sasl.EncodePlain("", "mallory", "x")) }) {
		t.Errorf("server got the discarded AUTH: %q", got)
	}
}

func TestCommandErrors(t *testing.T) {
	fake := startFake(t, &fakeServer{})
	addr := startFrontend(t, Options{
		Picker:           &proxytest.Picker{Targets: []proxy.Target{{Server: "s1", Address: fake.addr}}},
		PlaintextLogin:   true,
		MaxLoginAttempts: 10,
	}, nil)
	tests := []struct {
		name  string
		ehlo  bool
		lines []string // all but the last get a 334
		want  string
	}{
		{"MAIL before AUTH", true, []string{"MAIL FROM:<a@example.org>"}, "530 5.7.0 Authentication required"},
		{"RCPT before AUTH", false, []string{"RCPT TO:<a@example.org>"}, "530 5.7.0 Authentication required"},
		{"DATA before AUTH", true, []string{"DATA"}, "530 5.7.0 Authentication required"},
		{"AUTH before EHLO", false, []string{"AUTH PLAIN " + sasl.EncodePlain("", "a", "b")}, "503 5.5.1 Send EHLO first"},
		{"invalid base64 initial response", true, []string{"AUTH PLAIN !!!"}, "501 5.5.2 Cannot decode base64 response"},
		{"invalid base64 continuation", true, []string{"AUTH LOGIN", "%%%"}, "501 5.5.2 Cannot decode base64 response"},
		{"canceled PLAIN", true, []string{"AUTH PLAIN", "*"}, "501 5.0.0 Authentication canceled"},
		{"canceled LOGIN password", true, []string{"AUTH LOGIN", b64("alice"), "*"}, "501 5.0.0 Authentication canceled"},
		{"malformed PLAIN", true, []string{"AUTH PLAIN " + b64("no nul")}, "535 5.7.8 Authentication credentials invalid"},
		{"empty initial response", true, []string{"AUTH PLAIN ="}, "535 5.7.8 Authentication credentials invalid"},
		{"unknown mechanism", true, []string{"AUTH CRAM-MD5"}, "504 5.5.4 Unrecognized authentication type"},
		{"AUTH without mechanism", true, []string{"AUTH"}, "501 5.5.4 Syntax error in parameters"},
		{"EHLO without name", false, []string{"EHLO"}, "501 5.5.4 Syntax error in parameters"},
		{"RSET", false, []string{"RSET"}, "250 2.0.0 OK"},
		{"NOOP", false, []string{"NOOP"}, "250 2.0.0 OK"},
		{"HELO", false, []string{"HELO client.example"}, "250 proxy.example.org"},
		{"HELP", false, []string{"HELP"}, "502 5.5.1 Command not implemented"},
		{"STARTTLS without certificates", false, []string{"STARTTLS"}, "502 5.5.1 STARTTLS not available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := greeted(t, addr)
			if tt.ehlo {
				c.ehlo()
			}
			for _, l := range tt.lines[:len(tt.lines)-1] {
				c.send(l)
				if got := c.reply(); !strings.HasPrefix(got[0], "334 ") {
					t.Fatalf("%s: got %q, want 334", l, got)
				}
			}
			c.expect(tt.lines[len(tt.lines)-1], tt.want)
			c.expect("QUIT", "221 2.0.0 Bye")
			c.expectClosed()
		})
	}
	if got := fake.received(); len(got) != 0 {
		t.Errorf("server got %q, want nothing", got)
	}
}

func TestClosesOnBadInput(t *testing.T) {
	tests := []struct {
		name string
		send string
		want string
	}{
		{"unknown command", "XCLIENT ADDR=1.2.3.4\r\n", "500 5.5.1 Unknown command"},
		{"http", "GET / HTTP/1.1\r\n", "500 5.5.1 Unknown command"},
		{"binary noise", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n", "500 5.5.1 Unknown command"},
		{"NUL in arguments", "EHLO a\x00b\r\n", "500 5.5.1 Unknown command"},
		{"overlong line", "EHLO " + strings.Repeat("a", 3000) + "\r\n", "500 5.5.2 Line too long"},
		{"overlong without newline", strings.Repeat("b", maxLine+10), "500 5.5.2 Line too long"},
		{"overlong AUTH continuation", "EHLO c\r\nAUTH PLAIN\r\n" + strings.Repeat("A", 3000) + "\r\n", "500 5.5.2 Line too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startFrontend(t, Options{Picker: &proxytest.Picker{}, PlaintextLogin: true}, nil)
			c := greeted(t, addr)
			io.WriteString(c.conn, tt.send)
			var got []string
			for range 3 {
				got = c.reply()
				if !strings.HasPrefix(got[0], "250") && !strings.HasPrefix(got[0], "334") {
					break
				}
			}
			if got[0] != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			c.expectClosed()
		})
	}
}

func TestTooManyErrors(t *testing.T) {
	addr := startFrontend(t, Options{Picker: &proxytest.Picker{}}, nil)
	c := greeted(t, addr)
	for range maxErrors - 1 {
		c.expect("MAIL FROM:<a@b>", "530 5.7.0 Authentication required")
	}
	c.expect("MAIL FROM:<a@b>", "530 5.7.0 Authentication required")
	if got := c.reply(); got[0] != "421 4.7.0 Too many errors" {
		t.Fatalf("got %q, want 421 too many errors", got)
	}
	c.expectClosed()
}

func TestShutdownGoodbye(t *testing.T) {
	srv := proxy.New(proxy.Options{})
	fe := proxy.Frontend{
		Name: "submission", Protocol: "submission", Addrs: []string{"127.0.0.1:0"},
		Handler: New(Options{Picker: &proxytest.Picker{}, Hostname: "proxy.example.org"}),
	}
	if err := srv.Configure([]proxy.Frontend{fe}); err != nil {
		t.Fatal(err)
	}
	c := greeted(t, srv.ListenerAddr("submission").String())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go srv.Shutdown(ctx)
	if got := c.reply(); got[0] != "421 4.3.2 Service shutting down" {
		t.Fatalf("goodbye: got %q", got)
	}
	c.expectClosed()
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		line string
		want command
		err  bool
	}{
		{line: "EHLO client.example\r\n", want: command{Verb: "EHLO", Args: "client.example"}},
		{line: "mail FROM:<a@b> SIZE=10\r\n", want: command{Verb: "MAIL", Args: "FROM:<a@b> SIZE=10"}},
		{line: "STARTTLS\n", want: command{Verb: "STARTTLS"}},
		{line: "", err: true},
		{line: "\r\n", err: true},
		{line: " EHLO x", err: true},
		{line: "EHLO \r\n", err: true},
		{line: "E1LO x", err: true},
		{line: "EHLO a\rb", err: true},
		{line: strings.Repeat("A", 17), err: true},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := parseCommand(tt.line)
			if (err != nil) != tt.err {
				t.Fatalf("err: got %v, want error %v", err, tt.err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
