package proxy

import (
	"bytes"
	"io"
	"log/slog"
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
