package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// sockPair returns a sockConn and the plain TCP connection at its other
// end, over loopback.
func sockPair(t *testing.T) (*sockConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSockConn(c.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); peer.Close() })
	return s, peer.(*net.TCPConn)
}

// TestSockConnIO: sockConn's own Read and Write (rawio_linux.go in
// ordinary builds) behave as net.TCPConn's: every byte both ways with
// the socket buffers filling up, EOF at the peer's close, timeouts and a
// closed connection reported as the net package reports them.
func TestSockConnIO(t *testing.T) {
	t.Run("bulk both ways", func(t *testing.T) {
		s, peer := sockPair(t)
		s.SetDeadline(time.Now().Add(20 * time.Second))
		peer.SetDeadline(time.Now().Add(20 * time.Second))
		data := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB: more than the socket buffers hold
		errc := make(chan error, 1)
		go func() {
			_, err := peer.Write(data)
			peer.CloseWrite()
			errc <- err
		}()
		got, err := io.ReadAll(s) // Read until the peer's EOF
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, %v; want %d bytes as sent, EOF", len(got), err, len(data))
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		go func() {
			got, err := io.ReadAll(peer)
			if err == nil && !bytes.Equal(got, data) {
				err = errors.New("bytes differ")
			}
			errc <- err
		}()
		if n, err := s.Write(data); n != len(data) || err != nil {
			t.Fatalf("write: %d, %v; want %d, nil", n, err, len(data))
		}
		s.CloseWrite()
		if err := <-errc; err != nil {
			t.Fatalf("peer read: %v", err)
		}
	})
	t.Run("read deadline", func(t *testing.T) {
		s, _ := sockPair(t)
		s.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		_, err := s.Read(make([]byte, 10))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read past the deadline: %v; want a timeout", err)
		}
		// As net.TCPConn says it: read tcp A->B: i/o timeout, the
		// deadline error right inside the *net.OpError.
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "read" || oe.Err != os.ErrDeadlineExceeded {
			t.Fatalf("read past the deadline: %v; want a *net.OpError read with os.ErrDeadlineExceeded inside", err)
		}
	})
	t.Run("write deadline", func(t *testing.T) {
		s, _ := sockPair(t) // the peer never reads
		data := make([]byte, 64<<20)
		// The deadline leaves the first write time to fill the socket's
		// buffers even on a loaded machine; the test does not time it.
		s.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := s.Write(data)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() || n <= 0 || n >= len(data) {
			t.Fatalf("write to a peer that does not read: %d, %v; want part of it, then a timeout", n, err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		s, _ := sockPair(t)
		s.Close()
		if _, err := s.Read(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after Close: %v; want net.ErrClosed", err)
		}
		if _, err := s.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("write after Close: %v; want net.ErrClosed", err)
		}
	})
	t.Run("peer reset", func(t *testing.T) {
		s, peer := sockPair(t)
		peer.SetLinger(0)
		peer.Close() // RST
		s.SetDeadline(time.Now().Add(10 * time.Second))
		var err error
		for range 100 { // the first writes may still be taken
			if _, err = s.Write(make([]byte, 1024)); err != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		var oe *net.OpError
		if !errors.As(err, &oe) || oe.Op != "write" {
			t.Fatalf("write to a reset peer: %v; want a *net.OpError", err)
		}
	})
}

// TestSockConnCopy: io.Copy from and into a sockConn goes through its own
// Read and Write, so bytes already taken off the socket (the prefix)
// come first; net.TCPConn's WriteTo would skip them.
func TestSockConnCopy(t *testing.T) {
	s, peer := sockPair(t)
	s.SetDeadline(time.Now().Add(10 * time.Second))
	peer.SetDeadline(time.Now().Add(10 * time.Second))
	s.prefix = []byte("peeked ")
	peer.Write([]byte("rest"))
	peer.CloseWrite()
	var got bytes.Buffer
	if _, err := io.Copy(&got, s); err != nil || got.String() != "peeked rest" {
		t.Fatalf("copy from the sockConn: %q, %v; want %q", got.String(), err, "peeked rest")
	}
	if _, err := io.Copy(s, strings.NewReader("answer")); err != nil {
		t.Fatal(err)
	}
	s.CloseWrite()
	if b, err := io.ReadAll(peer); err != nil || string(b) != "answer" {
		t.Fatalf("copy into the sockConn: the peer read %q, %v", b, err)
	}
}

// TestQuiet: Quiet asks the kernel whether the socket holds bytes or the
// peer's close.
func TestQuiet(t *testing.T) {
	s, peer := sockPair(t)
	if q, ok := Quiet(s); !q || !ok {
		t.Fatalf("nothing sent: Quiet %v, %v; want true, true", q, ok)
	}
	peer.Write([]byte("x"))
	waitFor(t, func() bool { q, _ := Quiet(s); return !q })
	s.Read(make([]byte, 1))
	if q, _ := Quiet(s); !q {
		t.Fatal("after the byte was read: not quiet")
	}
	peer.Close()
	waitFor(t, func() bool { q, _ := Quiet(s); return !q })
	if q, ok := Quiet(nil); q || ok {
		t.Fatalf("not a socket: Quiet %v, %v; want false, false", q, ok)
	}
}
