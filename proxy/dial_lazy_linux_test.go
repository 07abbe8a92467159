package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// dialPair dials a listener with the raw dial and returns the dialled
// socket and the accepted peer.
func dialPair(t *testing.T) (*lazySocket, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	nc, err := dialTCP(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ds, ok := nc.(*lazySocket)
	if !ok {
		t.Fatalf("dialTCP gave a %T, want *lazySocket", nc)
	}
	t.Cleanup(func() { ds.Close() })
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(hangGuard))
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	peer.SetDeadline(time.Now().Add(hangGuard))
	return ds, peer
}

func registered(ds *lazySocket) bool {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.file != nil
}

// TestDialedSocketEntersPollerOnlyToWait: a dialled socket reads and
// writes with raw calls while the kernel can answer at once, and enters
// the runtime's poller at its first wait, with the deadline set before.
func TestDialedSocketEntersPollerOnlyToWait(t *testing.T) {
	ds, peer := dialPair(t)
	sock, err := newSockConn(ds)
	if err != nil {
		t.Fatal(err)
	}
	if registered(ds) {
		t.Fatal("registered in the runtime's poller by the dial")
	}
	if _, err := io.WriteString(sock, "ping"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("peer read %q, %v", buf, err)
	}
	io.WriteString(peer, "pong")
	time.Sleep(20 * time.Millisecond) // on loopback the bytes are there long before
	if _, err := io.ReadFull(sock, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if registered(ds) {
		t.Fatal("registered although nothing had to wait")
	}

	// Nothing to read: the read waits in the poller, within the deadline
	// set while the socket was still outside it.
	sock.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	read := make(chan error, 1)
	go func() {
		_, err := sock.Read(make([]byte, 4))
		read <- err
	}()
	select {
	case err = <-read:
	case <-time.After(hangGuard):
		t.Fatal("a read with nothing sent outlived its deadline: the deadline was lost entering the poller")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read with nothing sent: %v, want a timeout", err)
	}
	if !registered(ds) {
		t.Fatal("a read that waited did not enter the poller")
	}
	sock.SetReadDeadline(time.Now().Add(hangGuard))
	go func() {
		time.Sleep(20 * time.Millisecond)
		io.WriteString(peer, "late")
	}()
	if _, err := io.ReadFull(sock, buf); err != nil || string(buf) != "late" {
		t.Fatalf("read in the poller %q, %v", buf, err)
	}
	if _, ok := ds.takeFD(); ok {
		t.Error("takeFD gave away a descriptor the runtime's poller holds")
	}
	sock.Close()
	if _, err := sock.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v, want net.ErrClosed", err)
	}
}

// TestDialedSocketPastDeadline: a deadline in the past fails a read at
// once, as on a net.Conn, even with bytes waiting and outside the poller.
func TestDialedSocketPastDeadline(t *testing.T) {
	ds, peer := dialPair(t)
	io.WriteString(peer, "x")
	time.Sleep(20 * time.Millisecond)
	ds.SetReadDeadline(time.Now().Add(-time.Second))
	buf := make([]byte, 1)
	if _, err := ds.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	ds.SetReadDeadline(time.Time{})
	if n, err := ds.Read(buf); n != 1 || err != nil || buf[0] != 'x' {
		t.Fatalf("read after clearing the deadline: %d %q %v", n, buf, err)
	}
}

// TestDetachTakesDialledSocket: the relay takes a dialled socket that
// never entered the poller as it is (same descriptor, no dup), and dups
// one that did; either way the descriptor carries the session's bytes.
func TestDetachTakesDialledSocket(t *testing.T) {
	for _, waited := range []bool{false, true} {
		ds, peer := dialPair(t)
		client, clientPeer := dialPair(t) // the client leg: any engine socket
		cs, _ := newSockConn(client)
		ss, _ := newSockConn(ds)
		if waited { // as the first read or write that had to wait does
			ds.mu.Lock()
			ds.registerLocked()
			ds.mu.Unlock()
		}
		orig := -1
		ds.control(func(fd uintptr) { orig = int(fd) })
		s := &session{legs: [2]leg{{conn: cs, sock: cs}, {conn: ss, sock: ss}}}
		if err := s.detach(); err != nil {
			t.Fatal(err)
		}
		if taken := s.fds[1] == orig; taken == waited {
			t.Errorf("waited %v: relay descriptor %d, dialled descriptor %d: want taken only when it never waited", waited, s.fds[1], orig)
		}
		for i, p := range []net.Conn{clientPeer, peer} {
			if _, err := sysWrite(s.fds[i], []byte("z")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 1)
			if _, err := io.ReadFull(p, buf); err != nil || buf[0] != 'z' {
				t.Fatalf("waited %v, leg %d: peer read %q, %v", waited, i, buf, err)
			}
		}
		for _, fd := range s.fds {
			sysClose(fd)
		}
		if err := ds.Close(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("waited %v: Close after detach: %v, want net.ErrClosed", waited, err)
		}
	}
}

// TestDialSocketCancelledContext: a dial whose ctx ended fails, as with
// net.Dialer, even when the connect itself finished at once.
func TestDialSocketCancelledContext(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	nc, err := dialTCP(ctx, ln.Addr().String())
	if err == nil {
		nc.Close()
		t.Fatalf("a dial with a cancelled ctx gave a %T", nc)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("dial with a cancelled ctx: %v, want context.Canceled", err)
	}
}
