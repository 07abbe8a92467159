package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// dialLine connects to addr and returns a reader for its lines.
func dialLine(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// greeter writes a greeting, records the client address it sees and waits
// for the client (or the engine) to end the session.
func greeter(seen chan<- netip.AddrPort) Handler {
	return HandlerFunc(func(ctx context.Context, c *Conn) error {
		c.SetGoodbye("* BYE bye\r\n")
		if seen != nil {
			seen <- c.RemoteAddr()
		}
		if err := c.WriteString("* OK hello\r\n"); err != nil {
			return err
		}
		_, err := c.Reader().ReadString('\n')
		return err
	})
}

func TestTrustedProxyHeader(t *testing.T) {
	seen := make(chan netip.AddrPort, 1)
	_, addr := startServer(t, Frontend{
		Handler:        greeter(seen),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	c, r := dialLine(t, addr)
	src := &net.TCPAddr{IP: net.ParseIP("203.0.113.9"), Port: 40000}
	dst := &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 143}
	if _, err := proxyproto.HeaderProxyFromAddrs(2, src, dst).WriteTo(c); err != nil {
		t.Fatal(err)
	}
	if l, _ := r.ReadString('\n'); l != "* OK hello\r\n" {
		t.Fatalf("greeting: got %q", l)
	}
	if got := <-seen; got.String() != "203.0.113.9:40000" {
		t.Errorf("remote from a trusted PROXY header: got %s, want 203.0.113.9:40000", got)
	}
}

func TestMaxConnQueuesInBacklog(t *testing.T) {
	srv, addr := startServer(t, Frontend{Handler: greeter(nil), MaxConn: 1})
	c1, r1 := dialLine(t, addr)
	if l, _ := r1.ReadString('\n'); l != "* OK hello\r\n" {
		t.Fatalf("first greeting: got %q", l)
	}
	_, r2 := dialLine(t, addr) // connects (kernel backlog) but is not served yet
	got := make(chan string, 1)
	go func() {
		l, _ := r2.ReadString('\n')
		got <- l
	}()
	select {
	case l := <-got:
		t.Fatalf("second client served beyond maxconn: %q", l)
	case <-time.After(200 * time.Millisecond):
	}
	if n := len(srv.Sessions()); n != 1 {
		t.Errorf("live sessions at maxconn: got %d, want 1", n)
	}
	io.WriteString(c1, "done\n")
	if l := <-got; l != "* OK hello\r\n" {
		t.Errorf("second client after a slot freed: got %q", l)
	}
}

func TestShutdownSaysGoodbyeBeforeLogin(t *testing.T) {
	srv, addr := startServer(t, Frontend{Handler: greeter(nil)})
	_, r := dialLine(t, addr)
	r.ReadString('\n')
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	rest, _ := io.ReadAll(r)
	if string(rest) != "* BYE bye\r\n" {
		t.Errorf("pre-login client at shutdown: got %q, want the goodbye", rest)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestConfigureKeepsListenersAndRejectsDuplicates(t *testing.T) {
	srv, _ := startServer(t, Frontend{Name: "a", Handler: greeter(nil)})
	const addr = "127.0.0.1:0" // as startServer configured it
	before := srv.ListenerAddr("a").String()
	err := srv.Configure([]Frontend{{Name: "a", Addrs: []string{addr}, Handler: greeter(nil)}})
	if err != nil {
		t.Fatalf("reconfigure with the same address: %v", err)
	}
	if after := srv.ListenerAddr("a").String(); after != before {
		t.Errorf("listener changed on reconfigure: %s → %s", before, after)
	}
	err = srv.Configure([]Frontend{
		{Name: "a", Addrs: []string{addr}, Handler: greeter(nil)},
		{Name: "b", Addrs: []string{addr}, Handler: greeter(nil)},
	})
	if err == nil || !strings.Contains(err.Error(), "already used") {
		t.Errorf("duplicate address: got %v, want an error", err)
	}
}

func TestHandlerPanicEndsOnlyItsSession(t *testing.T) {
	srv, addr := startServer(t, Frontend{Handler: HandlerFunc(func(ctx context.Context, c *Conn) error {
		line, _ := c.Reader().ReadString('\n')
		if line == "panic\n" {
			panic("boom")
		}
		return c.WriteString("ok\r\n")
	})})
	c, r := dialLine(t, addr)
	io.WriteString(c, "panic\n")
	if rest, _ := io.ReadAll(r); len(rest) != 0 {
		t.Errorf("panicking session: got %q, want a close", rest)
	}
	c2, r2 := dialLine(t, addr)
	io.WriteString(c2, "hello\n")
	if l, _ := r2.ReadString('\n'); l != "ok\r\n" {
		t.Errorf("next session after a panic: got %q, want ok", l)
	}
	waitFor(t, func() bool { return len(srv.Sessions()) == 0 })
}

// finisher answers "ready", then, when a graceful shutdown drains it
// (with drain) or its context ends, says "finishing" and serves one more
// line (the work in flight) before it returns.
func finisher(drain bool) Handler {
	return HandlerFunc(func(ctx context.Context, c *Conn) error {
		drained := make(chan struct{})
		if drain {
			c.SetDrain(func() { close(drained) })
		}
		if err := c.WriteString("ready\n"); err != nil {
			return err
		}
		select {
		case <-drained:
		case <-ctx.Done():
		}
		c.SetReadDeadline(time.Time{}) // what a handler with its own timeouts does
		if err := c.WriteString("finishing\n"); err != nil {
			return err
		}
		line, err := c.Reader().ReadString('\n')
		if err != nil {
			return err
		}
		return c.WriteString("done " + line)
	})
}

// TestDrainingSessionSetsItsDeadlines: a session that drains itself
// (SetDrain) may set its own client deadlines (SetReadDeadline) and finish
// its work in flight; one that does not is stopped, whatever deadline its
// handler sets.
func TestDrainingSessionSetsItsDeadlines(t *testing.T) {
	tests := []struct {
		name  string
		drain bool
		want  string // what the client reads after "finishing"
	}{
		{"drains itself: the work in flight ends", true, "done last\n"},
		{"no drain: ended at once", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, addr := startServer(t, Frontend{Handler: finisher(tt.drain)})
			c, r := dialLine(t, addr)
			if l, _ := r.ReadString('\n'); l != "ready\n" {
				t.Fatalf("got %q, want ready", l)
			}
			done := make(chan error, 1)
			go func() { done <- srv.Shutdown(context.Background()) }()
			if l, _ := r.ReadString('\n'); l != "finishing\n" {
				t.Fatalf("got %q, want finishing", l)
			}
			io.WriteString(c, "last\n")
			if got, _ := io.ReadAll(r); string(got) != tt.want {
				t.Errorf("after shutdown: got %q, want %q", got, tt.want)
			}
			if err := <-done; err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
}

// TestShutdownGraceOverEndsDrainingSessions: a draining session whose work
// does not end is stopped when the grace is over, its own deadlines
// notwithstanding.
func TestShutdownGraceOverEndsDrainingSessions(t *testing.T) {
	srv, addr := startServer(t, Frontend{Handler: finisher(true)})
	_, r := dialLine(t, addr)
	r.ReadString('\n')
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	r.ReadString('\n') // finishing; the client never sends its last line
	if got, _ := io.ReadAll(r); len(got) != 0 {
		t.Errorf("after the grace: got %q, want the connection closed", got)
	}
	if err := <-done; err != context.DeadlineExceeded {
		t.Errorf("Shutdown: got %v, want the grace's deadline exceeded", err)
	}
}
