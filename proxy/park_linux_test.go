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

// parkedPair is dialPair with the dialled socket parking in a running
// Server's relay, as the engine's sockets do.
func parkedPair(t *testing.T) (*lazySocket, net.Conn, *relay) {
	t.Helper()
	srv := New(Options{})
	t.Cleanup(func() { srv.Close() })
	ds, peer := dialPair(t)
	parkIn(ds, srv.relay)
	return ds, peer, srv.relay
}

func parkedCount(r *relay) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.parked)
}

// inBackground runs f and returns its error on a channel.
func inBackground(f func() error) <-chan error {
	c := make(chan error, 1)
	go func() { c <- f() }()
	return c
}

func await(t *testing.T, c <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(hangGuard):
		t.Fatalf("%s did not return", what)
		return nil
	}
}

// waitParked waits until a call on s is parked in the relay's set.
func waitParked(t *testing.T, s *lazySocket, dir int) {
	t.Helper()
	for end := time.Now().Add(hangGuard); time.Now().Before(end); time.Sleep(time.Millisecond) {
		s.mu.Lock()
		p := s.parked[dir]
		s.mu.Unlock()
		if p {
			return
		}
	}
	t.Fatal("the call never parked")
}

// TestParkedRead: a read that has to wait waits in the relay's epoll set,
// not in the runtime's poller, and returns the bytes when they come; the
// relay takes the socket as it is afterwards, and forgets it.
func TestParkedRead(t *testing.T) {
	ds, peer, r := parkedPair(t)
	buf := make([]byte, 4)
	read := inBackground(func() error {
		_, err := io.ReadFull(ds, buf)
		return err
	})
	waitParked(t, ds, 0)
	io.WriteString(peer, "late")
	if err := await(t, read, "parked read"); err != nil || string(buf) != "late" {
		t.Fatalf("parked read %q, %v", buf, err)
	}
	if registered(ds) {
		t.Fatal("the read that waited entered the runtime's poller")
	}
	if parkedCount(r) != 1 {
		t.Fatalf("%d sockets parked in the relay, want 1", parkedCount(r))
	}

	fd, ok := ds.takeFD()
	if !ok {
		t.Fatal("takeFD refused a socket that only parked")
	}
	defer sysClose(fd)
	if n := parkedCount(r); n != 0 {
		t.Fatalf("the relay still has %d parked sockets after the hand-off", n)
	}
}

func sweeping(r *relay) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sweeping
}

// TestParkedFarDeadline: a parked read whose deadline is further off than
// the next sweeps has no timer of its own; the sweep wakes it when the
// deadline nears and it ends at the deadline. The sweep then stops,
// although the socket stays in the relay's set (as one idle in LMTP's
// pool does): an idle process has no ticker to wake it.
func TestParkedFarDeadline(t *testing.T) {
	srv := New(Options{})
	t.Cleanup(func() { srv.Close() })
	r := srv.relay
	r.sweepEvery = 20 * time.Millisecond
	ds, _ := dialPair(t)
	parkIn(ds, r)
	ds.SetReadDeadline(time.Now().Add(200 * time.Millisecond)) // ten sweeps off
	read := inBackground(func() error { _, err := ds.Read(make([]byte, 1)); return err })
	waitParked(t, ds, 0)
	if err := await(t, read, "read with a far deadline"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its far deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	if registered(ds) {
		t.Fatal("the read entered the runtime's poller")
	}
	if parkedCount(r) != 1 {
		t.Fatalf("%d sockets in the relay's set, want the one that parked", parkedCount(r))
	}
	for end := time.Now().Add(hangGuard); sweeping(r) && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	if sweeping(r) {
		t.Error("the relay's sweep runs on with no session and no wait to wake")
	}
}

// TestParkedDeadline: a parked read ends at its deadline, and at a new
// deadline set while it waits.
func TestParkedDeadline(t *testing.T) {
	ds, _, _ := parkedPair(t)
	buf := make([]byte, 1)
	ds.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	err := await(t, inBackground(func() error { _, err := ds.Read(buf); return err }), "read with a deadline")
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}

	ds.SetReadDeadline(time.Time{})
	read := inBackground(func() error { _, err := ds.Read(buf); return err })
	waitParked(t, ds, 0)
	ds.SetReadDeadline(time.Now().Add(-time.Second))
	if err := await(t, read, "read whose deadline moved into the past"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after its deadline moved: %v, want os.ErrDeadlineExceeded", err)
	}
	if registered(ds) {
		t.Fatal("a parked read entered the runtime's poller")
	}
}

// TestParkedClose: Close ends a parked read with net.ErrClosed and takes
// the socket out of the relay's set.
func TestParkedClose(t *testing.T) {
	ds, _, r := parkedPair(t)
	read := inBackground(func() error { _, err := ds.Read(make([]byte, 1)); return err })
	waitParked(t, ds, 0)
	ds.Close()
	if err := await(t, read, "parked read after Close"); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("parked read after Close: %v, want net.ErrClosed", err)
	}
	if n := parkedCount(r); n != 0 {
		t.Fatalf("%d sockets parked after Close, want 0", n)
	}
}

// TestParkedReadAndWrite: a write waiting for room and a read waiting for
// bytes park at once on one socket; each ends when its own event comes,
// whichever comes first.
func TestParkedReadAndWrite(t *testing.T) {
	ds, peer, _ := parkedPair(t)
	rbuf := make([]byte, 1)
	read := inBackground(func() error { _, err := ds.Read(rbuf); return err })
	waitParked(t, ds, 0)
	big := make([]byte, 64<<20) // more than both sockets' buffers hold
	var written int
	write := inBackground(func() error {
		var err error
		written, err = ds.Write(big)
		return err
	})
	waitParked(t, ds, 1)
	peer.Write([]byte("x"))
	if err := await(t, read, "parked read beside a parked write"); err != nil || rbuf[0] != 'x' {
		t.Fatalf("read %q, %v", rbuf, err)
	}
	if _, err := io.CopyN(io.Discard, peer, int64(len(big))); err != nil {
		t.Fatalf("peer read: %v", err)
	}
	if err := await(t, write, "parked write"); err != nil || written != len(big) {
		t.Fatalf("write %d of %d bytes, %v", written, len(big), err)
	}
	if registered(ds) {
		t.Fatal("a parked call entered the runtime's poller")
	}
}

// TestParkedRelayClosed: when the relay closes, a parked read moves into
// the runtime's poller and still gets its bytes.
func TestParkedRelayClosed(t *testing.T) {
	ds, peer, r := parkedPair(t)
	buf := make([]byte, 4)
	read := inBackground(func() error { _, err := io.ReadFull(ds, buf); return err })
	waitParked(t, ds, 0)
	r.close()
	for end := time.Now().Add(hangGuard); !registered(ds) && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	if !registered(ds) {
		t.Fatal("the parked read did not move into the runtime's poller when the relay closed")
	}
	io.WriteString(peer, "late")
	if err := await(t, read, "read after the relay closed"); err != nil || string(buf) != "late" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

// TestLeaveParking: a socket the relay took under a session's key (a TLS
// leg) never parks again: its later waits enter the runtime's poller.
func TestLeaveParking(t *testing.T) {
	ds, peer, r := parkedPair(t)
	buf := make([]byte, 1)
	read := inBackground(func() error { _, err := ds.Read(buf); return err })
	waitParked(t, ds, 0)
	peer.Write([]byte("x"))
	if err := await(t, read, "parked read"); err != nil {
		t.Fatal(err)
	}
	leaveParking(ds)
	if n := parkedCount(r); n != 0 {
		t.Fatalf("%d sockets parked after leaveParking, want 0", n)
	}
	read = inBackground(func() error { _, err := ds.Read(buf); return err })
	for end := time.Now().Add(hangGuard); !registered(ds) && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	if !registered(ds) || parkedCount(r) != 0 {
		t.Fatal("a socket that left parking parked again")
	}
	peer.Write([]byte("y"))
	if err := await(t, read, "read in the runtime's poller"); err != nil || buf[0] != 'y' {
		t.Fatalf("read %q, %v", buf, err)
	}
}

// TestRelayNotRestartedAfterClose: a closed relay refuses to start again
// (its epoll set's number is closed and may be reused).
func TestRelayNotRestartedAfterClose(t *testing.T) {
	srv := New(Options{})
	defer srv.Close()
	r := srv.relay
	r.mu.Lock()
	err := r.startLocked()
	r.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	r.close()
	r.mu.Lock()
	err = r.startLocked()
	r.mu.Unlock()
	if err == nil {
		t.Fatal("a closed relay started again")
	}
}

// TestParkedConnect: a dial whose connect does not finish at once (a
// server across a network; here a listener whose backlog is full until
// the test accepts) waits for it parked in the relay's set named by the
// dial's context, and the socket stays out of the runtime's poller.
func TestParkedConnect(t *testing.T) {
	srv := New(Options{})
	t.Cleanup(func() { srv.Close() })
	addr, accept := fullBacklogAccept(t)
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), parkingKey{}, srv.relay), hangGuard)
	defer cancel()
	var nc net.Conn
	dial := inBackground(func() error {
		var err error
		nc, err = dialTCP(ctx, addr)
		return err
	})
	for end := time.Now().Add(hangGuard); parkedCount(srv.relay) == 0 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	if parkedCount(srv.relay) == 0 {
		t.Fatal("the connect in progress did not park in the relay's set")
	}
	accept() // room in the backlog: the SYN's retransmission connects
	if err := await(t, dial, "parked connect"); err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ds, ok := nc.(*lazySocket)
	if !ok {
		t.Fatalf("dialTCP gave a %T, want *lazySocket", nc)
	}
	if registered(ds) {
		t.Fatal("the connect's wait entered the runtime's poller")
	}
}

// TestParkedConnectEnds: a parked connect ends at ctx's deadline, or when
// ctx is cancelled, with the context's error, as the runtime-waited one
// does (TestDialSocketTimeout, TestDialSocketCancel).
func TestParkedConnectEnds(t *testing.T) {
	srv := New(Options{})
	t.Cleanup(func() { srv.Close() })
	parking := context.WithValue(context.Background(), parkingKey{}, srv.relay)
	for _, tt := range []struct {
		name   string
		ctx    func() (context.Context, context.CancelFunc)
		cancel bool
		want   error
	}{
		{name: "deadline", ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(parking, 300*time.Millisecond)
		}, want: context.DeadlineExceeded},
		{name: "cancel", ctx: func() (context.Context, context.CancelFunc) { return context.WithCancel(parking) }, cancel: true, want: context.Canceled},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := fullBacklog(t)
			ctx, cancel := tt.ctx()
			defer cancel()
			dial := inBackground(func() error {
				nc, err := dialTCP(ctx, addr)
				if err == nil {
					nc.Close()
				}
				return err
			})
			for end := time.Now().Add(hangGuard); parkedCount(srv.relay) == 0 && time.Now().Before(end); {
				time.Sleep(time.Millisecond)
			}
			if parkedCount(srv.relay) == 0 {
				t.Fatal("the connect in progress did not park")
			}
			if tt.cancel {
				cancel()
			}
			if err := await(t, dial, "parked connect"); !errors.Is(err, tt.want) {
				t.Fatalf("parked connect: %v, want %v", err, tt.want)
			}
		})
	}
}
