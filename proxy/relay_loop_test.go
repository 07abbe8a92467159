package proxy

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// stuckLog is a log handler whose first session line blocks until the
// test ends, as a log writer that stalls (a full pipe to journald) does.
type stuckLog struct {
	sessionLog
	first   chan struct{} // closed when the first session line arrived
	release chan struct{}
}

func (h *stuckLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "session" {
		select {
		case <-h.first:
		default:
			close(h.first)
			<-h.release
		}
	}
	return h.sessionLog.Handle(ctx, r)
}

// TestRelayEndDoesNotHoldLoop: a detached session that ends inside the
// relay's loop (its last EOF read by the loop's first buffer) is logged
// and cleaned up off the loop: a stalled log writer holds up that one
// session's end, not the bytes of every other session.
func TestRelayEndDoesNotHoldLoop(t *testing.T) {
	baddr, conns := backend(t)
	h := &stuckLog{first: make(chan struct{}), release: make(chan struct{})}
	s := New(Options{Logger: slog.New(h)})
	fe := Frontend{
		Name:    "edge",
		Addrs:   []string{"127.0.0.1:0"},
		Handler: relayHandler(fixedPicker{Target{Server: "b", Address: baddr, Proxy: ProxyNone}}),
	}
	if err := s.Configure([]Frontend{fe}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { close(h.release); s.Close() })
	addr := s.ListenerAddr(fe.Name).String()
	leg := relayLeg{name: "plain"}

	a, ar := loggedIn(t, addr, leg, "alice")
	ab := nextBackend(t, conns)
	b, br := loggedIn(t, addr, leg, "bob")
	bb := nextBackend(t, conns)
	bbr := bufio.NewReader(bb)

	// alice's session ends: the client half-closes, then the server; the
	// server's EOF is the loop's to read.
	a.CloseWrite()
	wantEOF(t, "alice's server", ab)
	ab.CloseWrite()
	wantEOF(t, "alice", ar)
	select {
	case <-h.first:
	case <-time.After(hangGuard):
		t.Fatal("alice's session line never came")
	}

	// bob's bytes still move while alice's line is stuck.
	b.SetDeadline(time.Now().Add(5 * time.Second))
	bb.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(b, "ping\n")
	if l, err := bbr.ReadString('\n'); l != "ping\n" {
		t.Fatalf("bob's server while another session's end is stuck: got %q, %v; want ping", l, err)
	}
	io.WriteString(bb, "pong\n")
	if l, err := br.ReadString('\n'); l != "pong\n" {
		t.Fatalf("bob while another session's end is stuck: got %q, %v; want pong", l, err)
	}
}
