package proxy

import (
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// acceptOne dials addr and returns what a's accept gives for it, with the
// dialling side.
func acceptOne(t *testing.T, a acceptor, network, addr string) (*lazySocket, netip.AddrPort, netip.AddrPort, net.Conn) {
	t.Helper()
	d, err := net.DialTimeout(network, addr, hangGuard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	type result struct {
		s             socket
		remote, local netip.AddrPort
		err           error
	}
	done := make(chan result, 1)
	go func() {
		s, r, l, err := a.accept()
		done <- result{s, r, l, err}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(hangGuard):
		t.Fatal("accept did not return")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	ls, ok := res.s.(*lazySocket)
	if !ok {
		t.Fatalf("accept gave a %T, want *lazySocket", res.s)
	}
	t.Cleanup(func() { ls.Close() })
	return ls, res.remote, res.local, d
}

func sockoptOf(t *testing.T, s *lazySocket, level, opt int) int {
	t.Helper()
	var v int
	var gerr error
	if err := s.control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v
}

// TestRawAccept: the engine's listeners accept with raw calls; the socket
// comes out of the runtime's poller, non-blocking, with TCP_NODELAY (as
// net's Accept sets it) and without keepalive, also from a listening
// socket that had keepalive on (systemd's KeepAlive=yes), and with both
// addresses as the client sees them.
func TestRawAccept(t *testing.T) {
	for _, tt := range []struct {
		name, network, listen string
		keepAliveListener     bool
	}{
		{name: "one address", network: "tcp4", listen: "127.0.0.1:0"},
		{name: "listener with keepalive", network: "tcp4", listen: "127.0.0.1:0", keepAliveListener: true},
		{name: "wildcard", network: "tcp4", listen: "0.0.0.0:0"},
		{name: "ipv6", network: "tcp6", listen: "[::1]:0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := Listen(tt.network, tt.listen)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if tt.keepAliveListener {
				raw, _ := ln.(syscall.Conn).SyscallConn()
				raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1) })
			}
			a := newAcceptor(ln)
			if _, ok := a.(*rawAcceptor); !ok {
				t.Fatalf("newAcceptor gave a %T, want *rawAcceptor", a)
			}
			defer a.close()
			dial := ln.Addr().String()
			if tt.listen == "0.0.0.0:0" {
				dial = net.JoinHostPort("127.0.0.1", strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
			}
			s, remote, local, d := acceptOne(t, a, tt.network, dial)
			if registered(s) {
				t.Error("accepted socket is in the runtime's poller")
			}
			if got := sockoptOf(t, s, unix.IPPROTO_TCP, unix.TCP_NODELAY); got == 0 {
				t.Error("TCP_NODELAY is off")
			}
			if got := sockoptOf(t, s, unix.SOL_SOCKET, unix.SO_KEEPALIVE); got != 0 {
				t.Error("SO_KEEPALIVE is on")
			}
			var flags int
			s.control(func(fd uintptr) { flags, _ = unix.FcntlInt(fd, unix.F_GETFL, 0) })
			if flags&unix.O_NONBLOCK == 0 {
				t.Error("accepted socket is blocking: the raw calls would block")
			}
			wantRemote := addrPort(d.LocalAddr())
			wantLocal := addrPort(d.RemoteAddr())
			if remote != wantRemote || addrPort(s.RemoteAddr()) != wantRemote {
				t.Errorf("remote %v (RemoteAddr %v), want %v", remote, s.RemoteAddr(), wantRemote)
			}
			if local != wantLocal || addrPort(s.LocalAddr()) != wantLocal {
				t.Errorf("local %v (LocalAddr %v), want %v", local, s.LocalAddr(), wantLocal)
			}
			// And it is a working connection both ways.
			if _, err := s.Write([]byte("hi")); err != nil {
				t.Fatal(err)
			}
			d.SetDeadline(time.Now().Add(hangGuard))
			b := make([]byte, 2)
			if _, err := d.Read(b); err != nil || string(b) != "hi" {
				t.Fatalf("client read %q, %v", b, err)
			}
		})
	}
}

// TestRawAcceptClose: closing the acceptor ends an accept that waits, with
// net.ErrClosed (the accept loop's cue to return rather than retry).
func TestRawAcceptClose(t *testing.T) {
	ln, err := Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a := newAcceptor(ln)
	errc := make(chan error, 1)
	go func() {
		_, _, _, err := a.accept()
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond) // let it wait in the poller (either way the answer must be ErrClosed)
	ln.Close()
	a.close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("accept after close: %v, want net.ErrClosed", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("accept did not return after close")
	}
}

// TestRawAcceptBlockingListener: a listening socket whose shared
// description something made blocking is made non-blocking again before
// the raw accept4, which would otherwise hold its thread's P and freeze
// the process at the next garbage collection.
func TestRawAcceptBlockingListener(t *testing.T) {
	ln, err := Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a := newAcceptor(ln)
	defer a.close()
	raw, _ := ln.(syscall.Conn).SyscallConn()
	raw.Control(func(fd uintptr) { unix.SetNonblock(int(fd), false) })
	type result struct {
		s   socket
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, _, _, err := a.accept()
		done <- result{s, err}
	}()
	time.Sleep(50 * time.Millisecond) // the accept waits for a connection
	runtime.GC()                      // needs every P: hangs if accept4 blocks in a raw call
	d, err := net.DialTimeout("tcp4", ln.Addr().String(), hangGuard)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	select {
	case res := <-done:
		if res.err != nil {
			t.Fatal(res.err)
		}
		res.s.Close()
	case <-time.After(hangGuard):
		t.Fatal("accept did not return")
	}
}

// wrappedListener is a listener with an Accept of its own.
type wrappedListener struct{ *net.TCPListener }

func (l wrappedListener) Accept() (net.Conn, error) { return l.TCPListener.Accept() }

// TestAcceptorKinds: only the engine's own listeners are accepted from
// raw; another wrapper keeps its Accept, and a transparent listener's
// connections get their local address from the kernel, not the listener.
func TestAcceptorKinds(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if a, ok := newAcceptor(NoKeepAlive(ln)).(*rawAcceptor); !ok {
		t.Errorf("NoKeepAlive's listener: %T, want *rawAcceptor", a)
	} else {
		a.close()
	}
	if a := newAcceptor(wrappedListener{ln.(*net.TCPListener)}); a != (netAcceptor{wrappedListener{ln.(*net.TCPListener)}}) {
		t.Errorf("a wrapper with its own Accept: %T, want netAcceptor", a)
	}

	tl, err := Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	var serr error
	raw, _ := tl.(syscall.Conn).SyscallConn()
	raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1) })
	if serr != nil {
		t.Fatalf("IP_TRANSPARENT (the tests run as root): %v", serr)
	}
	a := newAcceptor(tl).(*rawAcceptor)
	defer a.close()
	if a.local.IsValid() {
		t.Errorf("transparent listener: local address fixed to %v, want it asked per connection", a.local)
	}
	_, _, local, d := acceptOne(t, a, "tcp4", tl.Addr().String())
	if want := addrPort(d.RemoteAddr()); local != want {
		t.Errorf("transparent listener: local %v, want %v", local, want)
	}
}
