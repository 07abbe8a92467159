package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/proxy/proxytest"
)

// fakeServer is a tiny POP3 server: greeting, AUTH PLAIN against one
// password, then STAT and QUIT. It records the lines it received.
type fakeServer struct {
	addr     string
	greeting string // default "+OK fake ready."
	password string // default "secret"
	authErr  string // reply to a wrong password; default "-ERR [AUTH] Authentication failed."

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

// serve runs one session; it returns on QUIT, EOF or after 20 commands.
func (f *fakeServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	greeting := cmpOr(f.greeting, "+OK fake ready.")
	io.WriteString(c, greeting+"\r\n")
	if !strings.HasPrefix(strings.ToUpper(greeting), "+OK") {
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
		case "AUTH":
			_, ir, _ := strings.Cut(arg, " ")
			msg, _ := base64.StdEncoding.DecodeString(ir)
			creds, err := sasl.ParsePlain(msg)
			if err != nil || creds.Password != cmpOr(f.password, "secret") {
				io.WriteString(c, cmpOr(f.authErr, "-ERR [AUTH] Authentication failed.")+"\r\n")
				continue
			}
			io.WriteString(c, "+OK Logged in as "+creds.User+".\r\n")
		case "STAT":
			io.WriteString(c, "+OK 1 100\r\n")
		case "QUIT":
			io.WriteString(c, "+OK Bye.\r\n")
			return
		default:
			io.WriteString(c, "-ERR Unknown command.\r\n")
		}
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
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
	return proxytest.Serve(t, proxy.Frontend{Name: "pop3", Protocol: "pop3", Handler: New(opts), TLS: tlsCfg, Retries: retries})
}

// client is the test's POP3 client.
type client struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

// dial connects without reading the greeting.
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
	if got := c.readLine(); !strings.HasPrefix(got, "+OK ") {
		t.Fatalf("greeting: got %q, want +OK", got)
	}
	return c
}

// authenticated is the top rung: logged in through the proxy with
// USER/PASS, the server's +OK read.
func authenticated(t *testing.T, addr, user, pass string) *client {
	t.Helper()
	c := greeted(t, addr)
	c.expect("USER "+user, "+OK")
	c.expect("PASS "+pass, "+OK Logged in as "+user+".")
	return c
}

func (c *client) readLine() string {
	c.t.Helper()
	line, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, line)
	}
	return strings.TrimRight(line, "\r\n")
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatalf("write %q: %v", line, err)
	}
}

// expect sends line and checks the reply line.
func (c *client) expect(line, want string) {
	c.t.Helper()
	c.send(line)
	if got := c.readLine(); got != want {
		c.t.Fatalf("%s: got %q, want %q", line, got, want)
	}
}

// multiline reads a dot-terminated response after its status line.
func (c *client) multiline() []string {
	c.t.Helper()
	var lines []string
	for range 100 {
		l := c.readLine()
		if l == "." {
			return lines
		}
		lines = append(lines, l)
	}
	c.t.Fatal("multi-line response without end")
	return nil
}

func (c *client) capabilities() []string {
	c.t.Helper()
	c.send("CAPA")
	if got := c.readLine(); !strings.HasPrefix(got, "+OK") {
		c.t.Fatalf("CAPA: got %q, want +OK", got)
	}
	return c.multiline()
}

// expectClosed checks that the proxy closes the connection.
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

func plainIR(user, pass string) string {
	return sasl.EncodePlain("", user, pass)
}

func TestLogin(t *testing.T) {
	tests := []struct {
		name  string
		login func(c *client)
	}{
		{"USER PASS", func(c *client) {
			c.expect("USER alice", "+OK")
			c.expect("PASS secret", "+OK Logged in as alice.")
		}},
		{"AUTH PLAIN initial response", func(c *client) {
			c.expect("AUTH PLAIN "+plainIR("alice", "secret"), "+OK Logged in as alice.")
		}},
		{"AUTH PLAIN continuation", func(c *client) {
			c.expect("auth plain", "+ ")
			c.expect(plainIR("alice", "secret"), "+OK Logged in as alice.")
		}},
		{"pipelined", func(c *client) {
			c.send("USER alice\r\nPASS secret\r\nSTAT")
			for _, want := range []string{"+OK", "+OK Logged in as alice.", "+OK 1 100"} {
				if got := c.readLine(); got != want {
					t.Fatalf("got %q, want %q", got, want)
				}
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
			c := greeted(t, addr)
			tt.login(c)
			c.expect("STAT", "+OK 1 100")
			c.expect("QUIT", "+OK Bye.")
			c.expectClosed()
			if got := fake.received(); len(got) == 0 || got[0] != "AUTH PLAIN "+plainIR("alice", "secret") {
				t.Errorf("server got %q, want AUTH PLAIN with initial response first", got)
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
	c := greeted(t, addr)
	c.expect("USER alice", "+OK")
	c.expect("PASS wrong", "-ERR [AUTH] Authentication failed.")
	c.expect("AUTH PLAIN "+plainIR("alice", "wrong too"), "-ERR [AUTH] Authentication failed.")
	c.expect("USER alice", "+OK")
	c.expect("PASS secret", "+OK Logged in as alice.")
	c.expect("STAT", "+OK 1 100")
}

func TestTooManyFailedLogins(t *testing.T) {
	fake := startFake(t, &fakeServer{})
	addr := startFrontend(t, Options{
		Picker:           &proxytest.Picker{Targets: []proxy.Target{{Server: "s1", Address: fake.addr}}},
		PlaintextLogin:   true,
		MaxLoginAttempts: 2,
	}, nil)
	c := greeted(t, addr)
	c.expect("AUTH PLAIN "+plainIR("alice", "x"), "-ERR [AUTH] Authentication failed.")
	c.expect("AUTH PLAIN "+plainIR("alice", "y"), "-ERR [AUTH] Authentication failed.")
	c.expectClosed()
}

func TestServerFailover(t *testing.T) {
	tests := []struct {
		name       string
		first      func(t *testing.T) string // address of a failing server
		wantFailed []string                  // servers reported to passive health
	}{
		{"connection refused", func(t *testing.T) string { return proxytest.DeadAddr(t) }, []string{"bad"}},
		{"negative greeting", func(t *testing.T) string {
			return startFake(t, &fakeServer{greeting: "-ERR [SYS/TEMP] Overloaded."}).addr
		}, []string{"bad"}},
		// [SYS/TEMP] to AUTH tries the next server but is not the server's
		// failure: an auth backend outage must not mark the fleet down.
		{"temporary auth failure", func(t *testing.T) string {
			return startFake(t, &fakeServer{password: "other", authErr: "-ERR [SYS/TEMP] Auth service down."}).addr
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
			c.expect("STAT", "+OK 1 100")
			if got := picker.Failures(); !slices.Equal(got, tt.wantFailed) {
				t.Errorf("failed servers: got %q, want %q", got, tt.wantFailed)
			}
		})
	}
}

// TestLowerCaseStatus: RFC 1939 section 3 has servers send "+OK" in upper
// case, but the login, like the health check, takes "+ok" for success.
func TestLowerCaseStatus(t *testing.T) {
	fake := startFake(t, &fakeServer{greeting: "+ok fake ready."})
	addr := startFrontend(t, Options{
		Picker:         &proxytest.Picker{Targets: []proxy.Target{{Server: "s1", Address: fake.addr}}},
		PlaintextLogin: true,
	}, nil)
	c := authenticated(t, addr, "alice", "secret")
	c.expect("STAT", "+OK 1 100")
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
			c := greeted(t, addr)
			c.expect("USER alice", "+OK")
			c.expect("PASS secret", "-ERR [SYS/TEMP] Service temporarily unavailable.")
			c.expect("QUIT", "+OK Logging out.")
		})
	}
}

func TestPlaintextRefusedBeforeTLS(t *testing.T) {
	addr := startFrontend(t, Options{Picker: &proxytest.Picker{}}, proxytest.ServerTLS(t))
	c := greeted(t, addr)
	caps := c.capabilities()
	for _, want := range []string{"STLS", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "TOP", "UIDL"} {
		if !slices.Contains(caps, want) {
			t.Errorf("CAPA before TLS: got %q, want %s in it", caps, want)
		}
	}
	for _, no := range []string{"USER", "SASL PLAIN"} {
		if slices.Contains(caps, no) {
			t.Errorf("CAPA before TLS: got %q, want no %s", caps, no)
		}
	}
	const refused = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
	c.expect("USER alice", refused)
	c.expect("AUTH PLAIN "+plainIR("alice", "secret"), refused)
	c.expect("AUTH", "+OK")
	if got := c.multiline(); len(got) != 0 {
		t.Errorf("AUTH mechanisms before TLS: got %q, want none", got)
	}
}

func TestSTLS(t *testing.T) {
	fake := startFake(t, &fakeServer{})
	addr := startFrontend(t, Options{
		Picker: &proxytest.Picker{Targets: []proxy.Target{{Server: "s1", Address: fake.addr}}},
		ServerCapabilities: func() []string {
			return []string{"TOP", "UIDL", "SASL PLAIN LOGIN", "STLS", "IMPLEMENTATION Dovecot", "EXPIRE NEVER"}
		},
	}, proxytest.ServerTLS(t))
	c := greeted(t, addr)
	// The pipelined USER must be discarded (RFC 2595 section 4 via RFC 3207 4.2).
	c.send("STLS\r\nUSER mallory")
	if got := c.readLine(); got != "+OK Begin TLS negotiation now." {
		t.Fatalf("STLS: got %q", got)
	}
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	c.conn, c.br = tc, bufio.NewReader(tc)
	c.expect("PASS secret", "-ERR No username given.")
	caps := c.capabilities()
	want := []string{"TOP", "UIDL", "EXPIRE NEVER", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER", "SASL PLAIN"}
	if !slices.Equal(caps, want) {
		t.Errorf("CAPA after TLS: got %q, want %q", caps, want)
	}
	c.expect("STLS", "-ERR TLS is already active.")
	c.expect("USER alice", "+OK")
	c.expect("PASS secret", "+OK Logged in as alice.")
	c.expect("STAT", "+OK 1 100")
}

func TestSTLSUnavailable(t *testing.T) {
	addr := startFrontend(t, Options{Picker: &proxytest.Picker{}}, nil)
	c := greeted(t, addr)
	if caps := c.capabilities(); slices.Contains(caps, "STLS") {
		t.Errorf("CAPA without certificates: got %q, want no STLS", caps)
	}
	c.expect("STLS", "-ERR TLS support isn't enabled.")
}

func TestAuthErrors(t *testing.T) {
	fake := startFake(t, &fakeServer{})
	addr := startFrontend(t, Options{
		Picker:           &proxytest.Picker{Targets: []proxy.Target{{Server: "s1", Address: fake.addr}}},
		PlaintextLogin:   true,
		MaxLoginAttempts: 10,
	}, nil)
	tests := []struct {
		name  string
		lines []string
		want  string
	}{
		{"invalid base64 initial response", []string{"AUTH PLAIN !!!"}, "-ERR Invalid base64 data in continued response."},
		{"invalid base64 continuation", []string{"AUTH PLAIN", "%%%"}, "-ERR Invalid base64 data in continued response."},
		{"canceled", []string{"AUTH PLAIN", "*"}, "-ERR Authentication canceled."},
		{"empty initial response", []string{"AUTH PLAIN ="}, "-ERR [AUTH] Authentication failed."},
		{"malformed plain", []string{"AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("no nul"))}, "-ERR [AUTH] Authentication failed."},
		{"unsupported mechanism", []string{"AUTH CRAM-MD5"}, "-ERR Unsupported authentication mechanism."},
		{"PASS without USER", []string{"PASS secret"}, "-ERR No username given."},
		{"USER without name", []string{"USER"}, "-ERR Syntax error."},
		{"transaction command", []string{"STAT"}, "-ERR Not logged in."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := greeted(t, addr)
			for _, l := range tt.lines[:len(tt.lines)-1] {
				c.expect(l, "+ ")
			}
			c.expect(tt.lines[len(tt.lines)-1], tt.want)
			c.expect("QUIT", "+OK Logging out.")
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
		{"unknown command", "HELO there\r\n", "-ERR Unknown command."},
		{"binary noise", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n", "-ERR Unknown command."},
		{"NUL in arguments", "USER a\x00b\r\n", "-ERR Unknown command."},
		{"empty line", "\r\n", "-ERR Unknown command."},
		{"overlong line", "USER " + strings.Repeat("a", 3000) + "\r\n", "-ERR Line too long."},
		{"overlong without newline", strings.Repeat("b", maxLine+10), "-ERR Line too long."},
		{"overlong AUTH continuation", "AUTH PLAIN\r\n" + strings.Repeat("A", 3000) + "\r\n", "-ERR Line too long."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startFrontend(t, Options{Picker: &proxytest.Picker{}, PlaintextLogin: true}, nil)
			c := greeted(t, addr)
			io.WriteString(c.conn, tt.send)
			got := c.readLine()
			if got == "+ " {
				got = c.readLine()
			}
			if got != tt.want {
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
		c.expect("STAT", "-ERR Not logged in.")
	}
	c.expect("STAT", "-ERR Not logged in.")
	if got := c.readLine(); got != "-ERR Too many invalid commands." {
		t.Fatalf("got %q, want too many invalid commands", got)
	}
	c.expectClosed()
}

func TestGreetingAndShutdown(t *testing.T) {
	srv := proxy.New(proxy.Options{})
	fe := proxy.Frontend{
		Name: "pop3", Protocol: "pop3", Addrs: []string{"127.0.0.1:0"},
		Handler: New(Options{Picker: &proxytest.Picker{}, Greeting: "Dovecot ready.\r\nX"}),
	}
	if err := srv.Configure([]proxy.Frontend{fe}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv.ListenerAddr("pop3").String())
	if got := c.readLine(); got != "+OK Dovecot ready.X" {
		t.Fatalf("greeting: got %q, want CR LF removed", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go srv.Shutdown(ctx)
	if got := c.readLine(); got != "-ERR Server shutting down." {
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
		{line: "CAPA\r\n", want: command{Verb: "CAPA"}},
		{line: "user alice\r\n", want: command{Verb: "USER", Args: "alice"}},
		{line: "PASS with spaces \r\n", want: command{Verb: "PASS", Args: "with spaces "}},
		{line: "QUIT\n", want: command{Verb: "QUIT"}},
		{line: "AUTH PLAIN =", want: command{Verb: "AUTH", Args: "PLAIN ="}},
		{line: "", err: true},
		{line: "\r\n", err: true},
		{line: " USER a", err: true},
		{line: "USER \r\n", err: true},
		{line: "US3R a", err: true},
		{line: "GET / HTTP/1.1\r\n", want: command{Verb: "GET", Args: "/ HTTP/1.1"}},
		{line: "USER a\rb", err: true},
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
