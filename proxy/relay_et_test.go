//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRelayEdgeDuringPumpIsNotLost: detached sockets are edge-triggered,
// so bytes that arrive after a pump goroutine read EAGAIN but before it
// records that it waits raise their only event while the direction still
// runs. The loop marks it kicked and the pump must go round once more;
// otherwise those bytes sit in the socket until the peer sends more.
func TestRelayEdgeDuringPumpIsNotLost(t *testing.T) {
	baddr, conns := backend(t)
	srv, addr, _ := relayServer(t, baddr, relayLegs[0])
	c, _ := loggedIn(t, addr, relayLegs[0], "bob")
	defer c.Close()
	b := nextBackend(t, conns)

	// The hook runs in the first pump goroutine that drains the server's
	// socket, between its EAGAIN and pumpEnded: it sends the tail then,
	// and waits until the loop has taken the tail's edge (which finds the
	// direction running and kicks it).
	var fired atomic.Bool
	kicked := make(chan bool, 1)
	hook := func(d *direction, err error) {
		if d.s.r != srv.relay || d.from != 1 || err != errWouldBlock || !fired.CompareAndSwap(false, true) {
			return
		}
		isKicked := func() bool {
			d.s.mu.Lock()
			defer d.s.mu.Unlock()
			return d.kicked
		}
		time.Sleep(50 * time.Millisecond) // the loop takes the chunks' last events
		d.s.mu.Lock()
		d.kicked = false
		d.s.mu.Unlock()
		io.WriteString(b, "tail\n")
		deadline := time.Now().Add(5 * time.Second)
		for !isKicked() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		kicked <- isKicked()
	}
	rawPumpStopping.Store(&hook)
	t.Cleanup(func() { rawPumpStopping.Store(nil) })

	// Chunks larger than the loop's first buffer, so that a pump
	// goroutine takes over, each read by the client and its pump done
	// before the next is sent, until the hook has fired.
	var s *session
	waitFor(t, func() bool { s = sessionOf(srv, "bob"); return s != nil && s.raw })
	waiting := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.dirs[1].state == dirWaitRead
	}
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	buf := make([]byte, len(chunk))
	c.SetReadDeadline(time.Now().Add(hangGuard))
	for i := 0; !fired.Load(); i++ {
		if i == 1000 {
			t.Fatal("no pump goroutine drained the server's socket")
		}
		if _, err := b.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("client: %v", err)
		}
		waitFor(t, func() bool { return fired.Load() || waiting() })
	}
	select {
	case ok := <-kicked:
		if !ok {
			t.Fatal("the tail's edge did not reach the loop while the pump was stopping")
		}
	case <-time.After(hangGuard):
		t.Fatal("the hook did not finish")
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf[:5]); err != nil || string(buf[:5]) != "tail\n" {
		t.Fatalf("client: got %q, %v; want the tail the server sent while the pump was stopping", buf[:5], err)
	}
	if n := len(srv.Sessions()); n != 1 {
		t.Errorf("live sessions: got %d, want 1", n)
	}
}

// TestRelayManySessionsPingPong: many detached sessions exchanging short
// lines at once, each line waiting for its echo, so that every step is a
// new edge on some socket and the relay's loop is woken thousands of times
// while it handles earlier events. A wake-up the loop misses stalls a
// session: the test then fails at its deadline.
func TestRelayManySessionsPingPong(t *testing.T) {
	echo := startEcho(t, false)
	_, addr := startServer(t, Frontend{Handler: relayHandler(fixedPicker{Target{Server: "e", Address: echo.ln.Addr().String(), Proxy: ProxyNone}})})
	const sessions, rounds = 64, 200
	errs := make(chan error, sessions)
	for i := range sessions {
		go func() {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(hangGuard))
			br := bufio.NewReader(nc)
			if _, err := fmt.Fprintf(nc, "user%d\n", i); err != nil {
				errs <- err
				return
			}
			if l, err := br.ReadString('\n'); err != nil || l != "ok\n" {
				errs <- fmt.Errorf("session %d login: %q, %v", i, l, err)
				return
			}
			for r := range rounds {
				want := fmt.Sprintf("s%d r%d\n", i, r)
				if _, err := io.WriteString(nc, want); err != nil {
					errs <- err
					return
				}
				if l, err := br.ReadString('\n'); err != nil || l != want {
					errs <- fmt.Errorf("session %d round %d: got %q, %v", i, r, l, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range sessions {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// sessionOf returns the relayed session of user on srv, or nil.
func sessionOf(srv *Server, user string) *session {
	srv.relay.mu.Lock()
	defer srv.relay.mu.Unlock()
	for _, s := range srv.relay.sessions {
		if s.c.Info().User == user {
			return s
		}
	}
	return nil
}

// roundTrip sends a line from the client to the server: the session is
// then in the relay, its sockets registered.
func roundTrip(t *testing.T, c net.Conn, b *net.TCPConn) {
	t.Helper()
	io.WriteString(c, "r\n")
	b.SetReadDeadline(time.Now().Add(hangGuard))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(b, buf); err != nil {
		t.Fatal(err)
	}
}

// holdLoop parks the relay's loop in session a's onEvent (a's lock is
// held and a's client sends a byte), so that what other sessions are sent
// meanwhile is all queued before the loop's next epoll_wait, which then
// reports each socket once. The returned func lets the loop go on.
func holdLoop(t *testing.T, srv *Server, a net.Conn) func() {
	t.Helper()
	var sa *session
	waitFor(t, func() bool { sa = sessionOf(srv, "a"); return sa != nil && sa.raw })
	sa.mu.Lock()
	io.WriteString(a, "x")
	time.Sleep(100 * time.Millisecond)
	return func() { time.Sleep(100 * time.Millisecond); sa.mu.Unlock() }
}

func sendUrgent(t *testing.T, c net.Conn, b byte) {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		if err := unix.Sendto(int(fd), []byte{b}, unix.MSG_OOB, nil); err != nil {
			t.Error(err)
		}
	})
}

// urgentSessions starts a relay with two logged-in plain sessions, a (to
// hold the loop with) and b, and returns b's client and server ends.
func urgentSessions(t *testing.T, leg relayLeg) (srv *Server, a net.Conn, bc net.Conn, bb *net.TCPConn) {
	t.Helper()
	baddr, conns := backend(t)
	srv, addr, _ := relayServer(t, baddr, leg)
	a, _ = loggedIn(t, addr, leg, "a")
	roundTrip(t, a, nextBackend(t, conns))
	bc, _ = loggedIn(t, addr, leg, "b")
	bb = nextBackend(t, conns)
	roundTrip(t, bc, bb)
	return srv, a, bc, bb
}

// TestRelayUrgentMarkLoopRead: read(2) stops at a TCP urgent mark once it
// has copied anything (tcp(7)), so the loop's short first read is no proof
// that the socket is drained, and the bytes behind the mark raise no new
// edge: the urgent data's EPOLLPRI makes the loop read on.
func TestRelayUrgentMarkLoopRead(t *testing.T) {
	srv, a, bc, bb := urgentSessions(t, relayLegs[0])
	release := holdLoop(t, srv, a)
	io.WriteString(bc, "hello ")
	sendUrgent(t, bc, '!')
	io.WriteString(bc, "world\n")
	release()

	bb.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l, err := bufio.NewReader(bb).ReadString('\n'); err != nil || l != "hello world\n" {
		t.Fatalf("server got %q, %v; want the bytes on both sides of the urgent byte", l, err)
	}
}

// TestRelayUrgentMarkSplice: splice(2) says EAGAIN at an urgent mark with
// bytes still queued behind it, and read(2) stops short at one; the pump
// must not take either for drained (bulk by splice, and by read and write).
func TestRelayUrgentMarkSplice(t *testing.T) {
	for _, leg := range relayLegs[:2] {
		t.Run(leg.name, func(t *testing.T) {
			srv, a, bc, bb := urgentSessions(t, leg)
			big := make([]byte, 100<<10)
			release := holdLoop(t, srv, a)
			bc.Write(big)
			sendUrgent(t, bc, '!')
			io.WriteString(bc, "tail\n")
			release()

			bb.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, len(big)+5)
			if n, err := io.ReadFull(bb, got); err != nil || string(got[len(big):]) != "tail\n" {
				t.Fatalf("server got %d of %d bytes (%v); want all, the tail behind the urgent byte last", n, len(got), err)
			}
		})
	}
}
