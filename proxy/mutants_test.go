package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// Tests here were written so that each fails when the behaviour it names is
// broken (issue 18): every one was checked against a mutation of the engine.

// sessionView is what a handler saw of its connection.
type sessionView struct {
	remote, local netip.AddrPort
	data          []byte // what the handler read from the client
	err           error
}

// recorder reports the addresses of each connection and what the client
// sent up to EOF, then ends the session.
func recorder(seen chan<- sessionView) Handler {
	return HandlerFunc(func(ctx context.Context, c *Conn) error {
		v := sessionView{remote: c.RemoteAddr(), local: c.LocalAddr()}
		v.data, v.err = io.ReadAll(c.Reader())
		seen <- v
		return v.err
	})
}

// proxyHeader is a PROXY header of version v from 203.0.113.9:40000 to
// 198.51.100.1:143, followed by a command line.
func proxyHeader(t *testing.T, v byte) (header []byte, src netip.AddrPort) {
	t.Helper()
	s := &net.TCPAddr{IP: net.ParseIP("203.0.113.9"), Port: 40000}
	d := &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 143}
	b, err := proxyproto.HeaderProxyFromAddrs(v, s, d).Format()
	if err != nil {
		t.Fatal(err)
	}
	return b, netip.MustParseAddrPort("203.0.113.9:40000")
}

func TestProxyHeaderOnlyFromTrustedSources(t *testing.T) {
	const line = "a LOGIN x y\r\n"
	for _, v := range []byte{1, 2} {
		header, src := proxyHeader(t, v)
		tests := []struct {
			name       string
			trusted    string
			wantRemote func(c net.Conn) netip.AddrPort
			wantData   []byte // what the handler reads: the header is data unless trusted
		}{
			{
				name:       "untrusted",
				trusted:    "10.0.0.0/8",
				wantRemote: func(c net.Conn) netip.AddrPort { return addrPort(c.LocalAddr()) },
				wantData:   append(append([]byte(nil), header...), line...),
			},
			{
				name:       "trusted",
				trusted:    "127.0.0.0/8",
				wantRemote: func(net.Conn) netip.AddrPort { return src },
				wantData:   []byte(line),
			},
		}
		for _, tt := range tests {
			t.Run(tt.name+"/v"+string('0'+v), func(t *testing.T) {
				seen := make(chan sessionView, 1)
				_, addr := startServer(t, Frontend{
					Handler:        recorder(seen),
					TrustedProxies: []netip.Prefix{netip.MustParsePrefix(tt.trusted)},
				})
				c, _ := dialLine(t, addr)
				writeAndHalfClose(c.(*net.TCPConn), append(append([]byte(nil), header...), line...))
				got := <-seen
				if got.err != nil {
					t.Fatalf("handler read: %v", got.err)
				}
				if !bytes.Equal(got.data, tt.wantData) {
					t.Errorf("handler read: got %q, want %q", got.data, tt.wantData)
				}
				if want := tt.wantRemote(c); got.remote != want {
					t.Errorf("RemoteAddr: got %s, want %s", got.remote, want)
				}
			})
		}
	}
}

// acceptWaitsForSlot reports whether an accept loop is blocked waiting for a
// maxconn slot (its goroutine sits in takeSlots).
func acceptWaitsForSlot() bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return bytes.Contains(buf[:n], []byte("proxy.(*Server).takeSlots("))
}

// named greets with its own name and serves until the client sends a line.
func named(name string) Handler {
	return HandlerFunc(func(ctx context.Context, c *Conn) error {
		if err := c.WriteString("* OK " + name + "\r\n"); err != nil {
			return err
		}
		_, err := c.Reader().ReadString('\n')
		return err
	})
}

func TestReloadKeepsMaxConnSlots(t *testing.T) {
	srv, addr := startServer(t, Frontend{Name: "m", Handler: named("old"), MaxConn: 1})
	c1, r1 := dialLine(t, addr)
	if l, _ := r1.ReadString('\n'); l != "* OK old\r\n" {
		t.Fatalf("first greeting: got %q, want the old frontend's", l)
	}
	// The accept loop now waits for the only slot, holding the frontend it
	// loaded before the reload.
	waitFor(t, acceptWaitsForSlot)
	// The same limit after a reload: the live session still holds the only slot.
	if err := srv.Configure([]Frontend{{Name: "m", Addrs: []string{"127.0.0.1:0"}, Handler: named("new"), MaxConn: 1}}); err != nil {
		t.Fatal(err)
	}
	_, r2 := dialLine(t, addr)
	got := make(chan string, 1)
	go func() {
		l, _ := r2.ReadString('\n')
		got <- l
	}()
	select {
	case l := <-got:
		t.Fatalf("a reload handed out a second slot: second client served with %q", l)
	case <-time.After(200 * time.Millisecond):
	}
	// Once the slot frees, the client that waited in the backlog across the
	// reload is served by the new frontend.
	io.WriteString(c1, "done\n")
	if l := <-got; l != "* OK new\r\n" {
		t.Errorf("client accepted after the reload: got %q, want the new frontend's greeting", l)
	}
}

func TestRelayedSessionIdleTimeoutAndKick(t *testing.T) {
	const idle = 1500 * time.Millisecond
	echo := startEcho(t, false)
	srv, addr := startServer(t, Frontend{
		Handler:  relayHandler(fixedPicker{Target{Server: "echo", Address: echo.ln.Addr().String()}}),
		Timeouts: Timeouts{Idle: idle},
	})
	c, r := dialLine(t, addr)
	c.SetDeadline(time.Time{})
	io.WriteString(c, "busy\n")
	if l, _ := r.ReadString('\n'); l != "ok\n" {
		t.Fatalf("login reply: got %q, want ok", l)
	}
	// Traffic well inside each idle period, over more than two of them:
	// a busy session is never cut.
	const rounds = 8
	pause := idle / 4
	for i := range rounds {
		time.Sleep(pause)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "ping\n")
		if l, err := r.ReadString('\n'); l != "ping\n" {
			t.Fatalf("busy session after %v of traffic (round %d): got %q, %v; want the echo", time.Duration(i+1)*pause, i+1, l, err)
		}
	}
	// Nothing moves: the sweeper ends the session.
	if _, err := io.ReadAll(r); err != nil {
		t.Fatalf("idle session: %v", err)
	}
	waitFor(t, func() bool { return len(srv.Sessions()) == 0 })

	c, r = dialLine(t, addr)
	io.WriteString(c, "kickme\n")
	r.ReadString('\n')
	waitFor(t, func() bool {
		s := srv.Sessions()
		return len(s) == 1 && s[0].Relaying
	})
	if n := srv.Kick(func(i Info) bool { return i.User == "kickme" }, "kicked"); n != 1 {
		t.Fatalf("Kick: got %d sessions, want 1", n)
	}
	if _, err := io.ReadAll(r); err != nil {
		t.Fatalf("kicked session: %v", err)
	}
	waitFor(t, func() bool { return len(srv.Sessions()) == 0 })
}

// FuzzProxyHeader sends arbitrary bytes from a trusted upstream through the
// engine's own inbound path (Server.prepare via a real connection). The
// library's parse is the oracle for what the bytes are:
//   - not a header: the session never reaches the handler and is closed;
//   - PROXY with TCP addresses: RemoteAddr and LocalAddr are the header's;
//   - LOCAL (or no usable addresses): the socket's addresses stay;
//   - either way the handler reads exactly the bytes after the header.
//
// It must never panic.
func FuzzProxyHeader(f *testing.F) {
	src := &net.TCPAddr{IP: net.ParseIP("203.0.113.9"), Port: 40000}
	dst := &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 143}
	for _, v := range []byte{1, 2} {
		b, _ := proxyproto.HeaderProxyFromAddrs(v, src, dst).Format()
		f.Add(append(b, "a LOGIN x y\r\n"...))
	}
	// LOCAL with (informational) addresses: they must not be used.
	local := &proxyproto.Header{
		Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.TCPv4,
		SourceAddr:      &net.TCPAddr{IP: net.ParseIP("192.0.2.7").To4(), Port: 1234},
		DestinationAddr: &net.TCPAddr{IP: net.ParseIP("192.0.2.8").To4(), Port: 143},
	}
	if b, err := local.Format(); err == nil {
		f.Add(append(b, "a NOOP\r\n"...))
	} else {
		f.Fatal(err)
	}
	f.Add([]byte("PROXY UNKNOWN\r\nrest"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"))
	f.Add([]byte("a LOGIN x y\r\n"))

	seen := make(chan sessionView, 1)
	s := New(Options{})
	fe := Frontend{
		Name:           "fuzz",
		Addrs:          []string{"127.0.0.1:0"},
		Handler:        recorder(seen),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Timeouts:       Timeouts{Handshake: 5 * time.Second, PreAuth: 5 * time.Second},
	}
	if err := s.Configure([]Frontend{fe}); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { s.Close() })
	addr := s.ListenerAddr("fuzz").String()

	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		h, perr := proxyproto.Read(br)
		rest, _ := io.ReadAll(br)

		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go writeAndHalfClose(c.(*net.TCPConn), data)
		// The client reads until the engine closes (a reset counts: the
		// engine may close with bytes unread). The handler reports before
		// it returns, so by then it has reported or never ran.
		reply, err := io.ReadAll(c)
		if isTimeout(err) {
			t.Fatalf("connection still open after the client's EOF: %v", err)
		}
		if len(reply) != 0 {
			t.Errorf("engine wrote %q, want nothing", reply)
		}
		var v sessionView
		var ran bool
		select {
		case v = <-seen:
			ran = true
		default:
		}
		if perr != nil {
			if ran {
				t.Fatalf("not a PROXY header (%v), yet the handler ran with remote %s", perr, v.remote)
			}
			return
		}
		if !ran {
			t.Fatalf("a valid %s header, and the handler never ran", command(h))
		}
		wantRemote, wantLocal := addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())
		if s, d, ok := h.TCPAddrs(); ok && h.Command.IsProxy() {
			wantRemote, wantLocal = addrPort(s), addrPort(d)
		}
		if v.remote != wantRemote || v.local != wantLocal {
			t.Errorf("%s header: got remote %s local %s, want %s %s", command(h), v.remote, v.local, wantRemote, wantLocal)
		}
		if !bytes.Equal(v.data, rest) {
			t.Errorf("handler read %q, want the bytes after the header %q", v.data, rest)
		}
	})
}

// writeAndHalfClose sends data and then closes the write side, so that the
// engine sees EOF after it. It exits when the write is done.
func writeAndHalfClose(c *net.TCPConn, data []byte) {
	c.Write(data)
	c.CloseWrite()
}

func command(h *proxyproto.Header) string {
	if h.Command.IsLocal() {
		return "LOCAL"
	}
	return "PROXY"
}
