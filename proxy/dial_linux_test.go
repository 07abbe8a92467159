package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestDialSocket: a server dialled by address gets the raw dial
// (dialSocket), over IPv4 and IPv6, and behaves as a net.TCPConn would:
// bytes both ways, addresses, half-close, net.ErrClosed once closed.
func TestDialSocket(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "tcp6" {
				addr = "[::1]:0"
			}
			ln, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err == nil {
					accepted <- c
				}
			}()
			nc, err := dialTCP(context.Background(), ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			ds, ok := nc.(*lazySocket)
			if !ok {
				t.Fatalf("dialTCP(%s) gave a %T, want the raw dial's *lazySocket", ln.Addr(), nc)
			}
			sock, err := newSockConn(ds)
			if err != nil {
				t.Fatal(err)
			}
			var peer net.Conn
			select {
			case peer = <-accepted:
			case <-time.After(hangGuard):
				t.Fatal("no connection accepted")
			}
			defer peer.Close()
			peer.SetDeadline(time.Now().Add(hangGuard))
			sock.SetDeadline(time.Now().Add(hangGuard))

			if got, want := sock.RemoteAddr().String(), ln.Addr().String(); got != want {
				t.Errorf("RemoteAddr: %s, want %s", got, want)
			}
			if got, want := sock.LocalAddr().String(), peer.RemoteAddr().String(); got != want {
				t.Errorf("LocalAddr: %s, want the accepted side's RemoteAddr %s", got, want)
			}
			if _, err := io.WriteString(sock, "ping"); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("server read %q, %v", buf, err)
			}
			io.WriteString(peer, "pong")
			if _, err := io.ReadFull(sock, buf); err != nil || string(buf) != "pong" {
				t.Fatalf("client read %q, %v", buf, err)
			}
			if err := sock.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			if n, err := peer.Read(buf); err != io.EOF {
				t.Fatalf("server after CloseWrite: %d, %v; want EOF", n, err)
			}
			sock.Close()
			if _, err := sock.Read(buf); !errors.Is(err, net.ErrClosed) {
				t.Errorf("read after close: %v, want net.ErrClosed", err)
			}
		})
	}
}

// TestDialSocketRefused: a refused connect is the dial's error, a server
// failure (not a local resource limit).
func TestDialSocketRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	nc, err := dialTCP(context.Background(), addr)
	if err == nil {
		nc.Close()
		t.Fatal("dial to a closed port succeeded")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) || isLocalResource(err) {
		t.Errorf("dial to a closed port: %v; want ECONNREFUSED, not a local resource", err)
	}
}

// fullBacklog listens with a backlog of 0 and never accepts, then fills
// the queue: a further connect gets no answer (its SYNs are dropped).
func fullBacklog(t *testing.T) string {
	t.Helper()
	addr, _ := fullBacklogAccept(t)
	return addr
}

// fullBacklogAccept is fullBacklog with a function that accepts one queued
// connection, making room for the next SYN.
func fullBacklogAccept(t *testing.T) (string, func()) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port)).String()
	// The queue takes backlog+1 connections; a few more make sure.
	for range 4 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}
	accept := func() {
		nfd, _, err := unix.Accept(fd)
		if err != nil {
			t.Fatalf("accept from the full backlog: %v", err)
		}
		t.Cleanup(func() { unix.Close(nfd) })
	}
	return addr, accept
}

// TestDialSocketTimeout: a connect that gets no answer ends at ctx's
// deadline with the context's error, as net.Dialer's does.
func TestDialSocketTimeout(t *testing.T) {
	addr := fullBacklog(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		nc, err := dialTCP(ctx, addr)
		if err == nil {
			nc.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("dial with no answer: %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("dial with no answer did not end at its deadline")
	}
}

// TestDialSocketCancel: cancelling ctx ends a connect in progress.
func TestDialSocketCancel(t *testing.T) {
	addr := fullBacklog(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		nc, err := dialTCP(ctx, addr)
		if err == nil {
			nc.Close()
		}
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled dial: %v, want context.Canceled", err)
		}
	case <-time.After(hangGuard):
		t.Fatal("cancelled dial did not end")
	}
}
