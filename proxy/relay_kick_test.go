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
)

// TestRelayEdgeDuringPumpIsNotLost: detached sockets are edge-triggered,
// so bytes that arrive after a pump goroutine read EAGAIN but before it
// records that it waits raise their only event while the direction still
// runs. The loop marks it kicked and the pump must go round once more;
// otherwise those bytes sit in the socket until the peer sends more.
func TestRelayEdgeDuringPumpIsNotLost(t *testing.T) {
	baddr, conns := backend(t)
	srv, addr, _ := relayServer(t, baddr, relayLegs[0])
	stopped := make(chan *direction, 1)
	resume := make(chan struct{})
	var fired atomic.Bool
	hook := func(d *direction, err error) {
		if d.s.r != srv.relay || d.from != 1 || err != errWouldBlock || !fired.CompareAndSwap(false, true) {
			return
		}
		stopped <- d
		<-resume
	}
	rawPumpStopping.Store(&hook)
	t.Cleanup(func() { rawPumpStopping.Store(nil) })

	c, _ := loggedIn(t, addr, relayLegs[0], "bob")
	defer c.Close()
	b := nextBackend(t, conns)

	// Chunks larger than the loop's first buffer, so that a pump
	// goroutine takes over, each read by the client before the next is
	// sent, until one such pump has drained the socket.
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	buf := make([]byte, len(chunk))
	c.SetReadDeadline(time.Now().Add(hangGuard))
	var d *direction
	for i := 0; d == nil; i++ {
		if i == 1000 {
			t.Fatal("no pump goroutine drained the server's socket")
		}
		if _, err := b.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("client: %v", err)
		}
		select {
		case d = <-stopped:
		default:
		}
	}
	// The pump has read EAGAIN and not yet said it waits. Once the loop
	// has taken the chunks' last events, the tail raises the only edge
	// it will get, and it must kick the pump.
	time.Sleep(50 * time.Millisecond)
	d.s.mu.Lock()
	d.kicked = false
	d.s.mu.Unlock()
	if _, err := io.WriteString(b, "tail\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		d.s.mu.Lock()
		defer d.s.mu.Unlock()
		return d.kicked
	})
	close(resume)
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
