package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuffer collects a Server's log lines, safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) lines(parts ...string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, l := range strings.Split(b.buf.String(), "\n") {
		ok := l != ""
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// waitLines waits (bounded) for a log line with every one of parts.
func (b *logBuffer) waitLines(t *testing.T, parts ...string) []string {
	t.Helper()
	for range 500 {
		if l := b.lines(parts...); len(l) > 0 {
			return l
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no log line with %q; log:\n%s", parts, b.buf.String())
	return nil
}

// loggedServer is startServer with the Server's log (Debug and up) in a buffer.
func loggedServer(t *testing.T, opts Options, fe Frontend) (*Server, string, *logBuffer) {
	t.Helper()
	logs := new(logBuffer)
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := New(opts)
	fe.Addrs = []string{"127.0.0.1:0"}
	if fe.Name == "" {
		fe.Name = "test"
	}
	if err := s.Configure([]Frontend{fe}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, s.ListenerAddr(fe.Name).String(), logs
}

// TestTrustedProxyWithoutHeaderIsLogged: a connection from trusted_proxies
// without a PROXY header is dropped before the greeting, and the log says
// why (once, however many come in the same second).
func TestTrustedProxyWithoutHeaderIsLogged(t *testing.T) {
	_, addr, logs := loggedServer(t, Options{}, Frontend{
		Handler:        greeter(nil),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	for range 3 {
		c, r := dialLine(t, addr)
		io.WriteString(c, "a LOGIN alice secret\r\n")
		if line, err := r.ReadString('\n'); err == nil {
			t.Fatalf("got %q, want the connection dropped without a greeting", line)
		}
	}
	logs.waitLines(t, "trusted_proxies must send a PROXY", "level=WARN")
	if n := len(logs.lines("trusted_proxies must send a PROXY")); n != 1 {
		t.Errorf("got %d warnings for 3 connections in a row, want 1 (rate-limited)", n)
	}
}

// TestMaxConnReachedIsLogged: when global maxconn is reached, new clients
// wait in the backlog and the log says so; they are served once a slot is
// free.
func TestMaxConnReachedIsLogged(t *testing.T) {
	_, addr, logs := loggedServer(t, Options{MaxConn: 1}, Frontend{Handler: greeter(nil)})
	first, r1 := dialLine(t, addr)
	if line, _ := r1.ReadString('\n'); line != "* OK hello\r\n" {
		t.Fatalf("first client: got %q, want the greeting", line)
	}
	_, r2 := dialLine(t, addr)
	logs.waitLines(t, "maxconn reached", "limit=global.maxconn", "max=1")
	io.WriteString(first, "bye\r\n") // the first session ends: its slot frees
	if line, err := r2.ReadString('\n'); line != "* OK hello\r\n" {
		t.Errorf("waiting client after a slot freed: got %q, %v; want the greeting", line, err)
	}
}

// TestEmptySessionsLoggedAtDebug: a connection on which the client sends
// nothing (a port scan, an upstream balancer's TCP check) is logged at
// debug, as HAProxy's "option dontlognull"; one that sent a byte is logged
// at info.
func TestEmptySessionsLoggedAtDebug(t *testing.T) {
	_, addr, logs := loggedServer(t, Options{}, Frontend{Handler: greeter(nil)})
	c, r := dialLine(t, addr)
	r.ReadString('\n')
	c.Close()
	c, r = dialLine(t, addr)
	r.ReadString('\n')
	io.WriteString(c, "hello\r\n")
	logs.waitLines(t, "level=INFO", "msg=session", "bytes_in=7")
	logs.waitLines(t, "level=DEBUG", "msg=session", "bytes_in=0")
	if l := logs.lines("level=INFO", "msg=session"); len(l) != 1 {
		t.Errorf("got %d session lines at info, want 1 (the empty session at debug):\n%s", len(l), strings.Join(l, "\n"))
	}
}

// jsonLog collects a Server's log as JSON lines (Debug and up).
func jsonLog() (*logBuffer, *slog.Logger) {
	logs := new(logBuffer)
	return logs, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records returns the logged lines whose msg is msg, decoded.
func (b *logBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range b.lines(`"msg":"` + msg + `"`) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// waitRecord waits (bounded) for one line with msg and returns it.
func (b *logBuffer) waitRecord(t *testing.T, msg string) map[string]any {
	t.Helper()
	b.waitLines(t, `"msg":"`+msg+`"`)
	recs := b.records(t, msg)
	if len(recs) != 1 {
		t.Fatalf("got %d %q lines, want 1: %v", len(recs), msg, recs)
	}
	return recs[0]
}

// TestSessionLineFields: the session line of a relayed TLS session has
// every documented key: the client's TLS version and cipher by crypto/tls
// names, the bytes before login counted with the relayed ones, the time
// the server's dial and login took, and how it ended.
func TestSessionLineFields(t *testing.T) {
	const loginDelay = 30 * time.Millisecond
	baddr, conns := backend(t)
	logs, logger := jsonLog()
	s := New(Options{Logger: logger})
	p := fixedPicker{Target{Server: "b", Address: baddr, Proxy: ProxyNone}}
	fe := Frontend{
		Name: "imaps", Protocol: "imap", Addrs: []string{"127.0.0.1:0"},
		TLS: testServerTLS(t), ImplicitTLS: true,
		Handler: HandlerFunc(func(ctx context.Context, c *Conn) error {
			line, err := c.Reader().ReadString('\n') // "login alice\n"
			if err != nil {
				return err
			}
			user := strings.TrimPrefix(strings.TrimSpace(line), "login ")
			c.SetUser(user)
			srv, from, err := c.Connect(ctx, p, user, func(context.Context, net.Conn, Target) ([]byte, error) {
				time.Sleep(loginDelay)
				return []byte("ok\n"), nil
			})
			if err != nil {
				return err
			}
			return c.Relay(srv, from)
		}),
	}
	if err := s.Configure([]Frontend{fe}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	c, err := tls.Dial("tcp", s.ListenerAddr("imaps").String(), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(hangGuard))
	cr := bufio.NewReader(c)
	io.WriteString(c, "login alice\n") // 12 bytes before login
	if l := readLine(t, "client", cr); l != "ok\n" {
		t.Fatalf("login: got %q, want ok", l)
	}
	b := nextBackend(t, conns)
	br := bufio.NewReader(b)
	io.WriteString(c, "ping\n") // 5 relayed
	if l := readLine(t, "server", br); l != "ping\n" {
		t.Fatalf("server: got %q, want ping", l)
	}
	io.WriteString(b, "pong!\n") // 6 relayed back, after "ok\n"
	if l := readLine(t, "client", cr); l != "pong!\n" {
		t.Fatalf("client: got %q, want pong!", l)
	}
	c.CloseWrite()
	wantEOF(t, "server after the client's close", br)
	b.Close()

	rec := logs.waitRecord(t, "session")
	cipher := tls.CipherSuiteName(c.ConnectionState().CipherSuite)
	want := map[string]any{
		"level": "INFO", "frontend": "imaps", "proto": "imap", "remote": c.LocalAddr().String(),
		"tls": "TLS 1.2", "tls_cipher": cipher, "user": "alice", "server": "b",
		"bytes_in": float64(12 + 5), "bytes_out": float64(3 + 6), "end": EndClientClosed,
	}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s: got %v, want %v", k, rec[k], v)
		}
	}
	for _, k := range []string{"time", "conn", "connect", "login", "duration"} {
		if _, ok := rec[k]; !ok {
			t.Errorf("%s: missing", k)
		}
	}
	if _, ok := rec["err"]; ok {
		t.Errorf("err: got %v, want none after a clean close", rec["err"])
	}
	connect, login, total := nanos(rec["connect"]), nanos(rec["login"]), nanos(rec["duration"])
	if connect <= 0 || connect >= loginDelay {
		t.Errorf("connect: got %v, want the dial's time: above zero, below the login's %v", connect, loginDelay)
	}
	if login < loginDelay || login > total {
		t.Errorf("login: got %v, want at least the login's %v and at most the session's %v", login, loginDelay, total)
	}
	if total < connect+login {
		t.Errorf("duration: got %v, want at least connect + login (%v)", total, connect+login)
	}
	if t.Failed() {
		t.Logf("session line: %v", rec)
	}
}

// nanos reads a JSON-logged time.Duration (nanoseconds).
func nanos(v any) time.Duration {
	f, _ := v.(float64)
	return time.Duration(f)
}

// TestSessionLinePlaintext: without TLS, tls and tls_cipher say "none".
func TestSessionLinePlaintext(t *testing.T) {
	logs, logger := jsonLog()
	s := New(Options{Logger: logger})
	if err := s.Configure([]Frontend{{Name: "imap", Protocol: "imap", Addrs: []string{"127.0.0.1:0"}, Handler: greeter(nil)}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c, r := dialLine(t, s.ListenerAddr("imap").String())
	r.ReadString('\n')
	io.WriteString(c, "bye\r\n")
	rec := logs.waitRecord(t, "session")
	for k, v := range map[string]any{"tls": "none", "tls_cipher": "none", "end": EndDone, "connect": float64(0), "login": float64(0), "bytes_in": float64(5)} {
		if rec[k] != v {
			t.Errorf("%s: got %v, want %v", k, rec[k], v)
		}
	}
}

// TestLoginFailedLine: a refused login is one Info line with the user,
// the client and the reason; nothing the client sent besides its user name
// (the LoginFunc holds the password) reaches it.
func TestLoginFailedLine(t *testing.T) {
	baddr, _ := backend(t)
	logs, logger := jsonLog()
	s := New(Options{Logger: logger})
	p := fixedPicker{Target{Server: "b", Address: baddr, Proxy: ProxyNone}}
	const password = "s3cret-Pa55"
	fe := Frontend{Name: "imap", Protocol: "imap", Addrs: []string{"127.0.0.1:0"}, Handler: HandlerFunc(func(ctx context.Context, c *Conn) error {
		line, err := c.Reader().ReadString('\n') // "LOGIN user password"
		if err != nil {
			return err
		}
		f := strings.Fields(line)
		_, _, err = c.Connect(ctx, p, f[1], func(context.Context, net.Conn, Target) ([]byte, error) {
			if f[2] != password {
				return nil, errors.New("NO [AUTHENTICATIONFAILED] Authentication failed.")
			}
			return nil, nil
		})
		c.WriteString("refused\n")
		return err
	})}
	if err := s.Configure([]Frontend{fe}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c, r := dialLine(t, s.ListenerAddr("imap").String())
	io.WriteString(c, "LOGIN alice wrong-"+password+"\n")
	r.ReadString('\n')
	rec := logs.waitRecord(t, "login failed")
	for k, v := range map[string]any{"level": "INFO", "user": "alice", "remote": c.LocalAddr().String(), "result": string(LoginRejected),
		"err": "NO [AUTHENTICATIONFAILED] Authentication failed."} {
		if rec[k] != v {
			t.Errorf("%s: got %v, want %v", k, rec[k], v)
		}
	}
	logs.waitRecord(t, "session")
	if l := logs.lines(password); len(l) > 0 {
		t.Errorf("the password reached the log:\n%s", strings.Join(l, "\n"))
	}
}
