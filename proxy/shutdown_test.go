package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// heldServer echoes each line, except that it answers "slow" only once
// release is closed: a server still working on a command.
func heldServer(t *testing.T, release <-chan struct{}) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "slow\n" {
						<-release
						line = "answer\n"
					}
					io.WriteString(c, line)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// pausingHandler is relayHandler for a frontend whose sessions end at a
// pause at shutdown, with a goodbye.
func pausingHandler(server string) Handler {
	relay := relayHandler(fixedPicker{Target{Server: "s", Address: server}})
	return HandlerFunc(func(ctx context.Context, c *Conn) error {
		c.SetGoodbye("* BYE bye\r\n")
		c.EndAtPause()
		return relay.ServeConn(ctx, c)
	})
}

// relayed counts the sessions the relay has.
func relayed(srv *Server) int {
	n := 0
	for _, i := range srv.Sessions() {
		if i.Relaying {
			n++
		}
	}
	return n
}

// loginAs connects to addr and logs in as user through relayHandler.
func loginAs(t *testing.T, addr, user string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, r := dialLine(t, addr)
	io.WriteString(c, user+"\n")
	if l, err := r.ReadString('\n'); l != "ok\n" {
		t.Fatalf("login of %s: got %q, %v; want ok", user, l, err)
	}
	return c, r
}

// TestShutdownEndsRelayedSessionsAtPause: a relayed session that asked for
// it hears its goodbye as soon as it is quiet after a server reply, long
// before the grace period ends; one whose command the server is still
// working on gets the answer first, then the goodbye.
func TestShutdownEndsRelayedSessionsAtPause(t *testing.T) {
	release := make(chan struct{})
	srv, addr := startServer(t, Frontend{Handler: pausingHandler(heldServer(t, release))})
	_, idleR := loginAs(t, addr, "idle")
	busy, busyR := loginAs(t, addr, "busy")
	io.WriteString(busy, "slow\n")
	waitFor(t, func() bool { return relayed(srv) == 2 })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()

	if rest, err := io.ReadAll(idleR); string(rest) != "* BYE bye\r\n" || err != nil {
		t.Errorf("idle session at shutdown: got %q, %v; want the goodbye and a close", rest, err)
	}
	// Paced, not timed: several pauses go by while the server works on
	// the busy session's command, which must not be cut.
	time.Sleep(5 * drainPause)
	if n := len(srv.Sessions()); n != 1 {
		rest, err := io.ReadAll(busyR)
		t.Fatalf("sessions while a command is unanswered: got %d, want the busy one (it got %q, %v)", n, rest, err)
	}
	close(release)
	if rest, err := io.ReadAll(busyR); string(rest) != "answer\n* BYE bye\r\n" || err != nil {
		t.Errorf("busy session at shutdown: got %q, %v; want its answer, then the goodbye and a close", rest, err)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: got %v, want nil (every session ended at a pause, within the grace)", err)
	}
}

// TestShutdownKeepsOtherRelayedSessionsForTheGrace: a relayed session that
// did not ask to end at a pause (a protocol the engine cannot read) goes on
// until the grace period ends.
func TestShutdownKeepsOtherRelayedSessionsForTheGrace(t *testing.T) {
	echo := startEcho(t, false)
	srv, addr := startServer(t, Frontend{Handler: relayHandler(fixedPicker{Target{Server: "echo", Address: echo.ln.Addr().String()}})})
	c, r := loginAs(t, addr, "tcp")
	waitFor(t, func() bool { return relayed(srv) == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	time.Sleep(5 * drainPause) // paced: pauses go by
	io.WriteString(c, "still there\n")
	if l, err := r.ReadString('\n'); l != "still there\n" {
		t.Errorf("session during the grace period: got %q, %v; want the echo", l, err)
	}
	cancel()
	if _, err := io.ReadAll(r); err != nil {
		t.Errorf("session at the end of the grace period: %v, want a close", err)
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Shutdown: got %v, want context.Canceled (a session was closed at the end)", err)
	}
}

// TestShutdownLetsDrainingSessionsFinish: a frontend that drains itself
// is asked to, is not stopped, and its goodbye follows what it still said.
func TestShutdownLetsDrainingSessionsFinish(t *testing.T) {
	srv, addr := startServer(t, Frontend{Handler: HandlerFunc(func(ctx context.Context, c *Conn) error {
		c.SetGoodbye("421 bye\r\n")
		drained := make(chan struct{})
		c.SetDrain(func() { close(drained) })
		if err := c.WriteString("220 hello\r\n"); err != nil {
			return err
		}
		select {
		case <-drained:
			return c.WriteString("250 finished\r\n")
		case <-ctx.Done():
			return ctx.Err()
		}
	})})
	_, r := dialLine(t, addr)
	if l, _ := r.ReadString('\n'); l != "220 hello\r\n" {
		t.Fatalf("greeting: got %q", l)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if rest, err := io.ReadAll(r); string(rest) != "250 finished\r\n421 bye\r\n" || err != nil {
		t.Errorf("draining session: got %q, %v; want what it finished, then the goodbye", rest, err)
	}
}

// TestHandoverLetsLoginsFinish: at an upgrade's handover, a session still
// logging in completes its login (the new process has the listeners, so
// no login has to fail), then ends at its first pause like the others.
func TestHandoverLetsLoginsFinish(t *testing.T) {
	srv, addr := startServer(t, Frontend{Handler: pausingHandler(heldServer(t, nil))})
	c, r := dialLine(t, addr)
	waitFor(t, func() bool { return len(srv.Sessions()) == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Handover(ctx) }()
	waitFor(t, func() bool {
		d, err := net.Dial("tcp", addr)
		if err == nil {
			d.Close()
		}
		return err != nil
	})
	time.Sleep(drainPause) // paced: the handover has looked at the session
	io.WriteString(c, "late\n")
	if rest, err := io.ReadAll(r); string(rest) != "ok\n* BYE bye\r\n" || err != nil {
		t.Errorf("login during a handover: got %q, %v; want ok, then the goodbye at a pause", rest, err)
	}
	if err := <-done; err != nil {
		t.Errorf("Handover: got %v, want nil", err)
	}
}
