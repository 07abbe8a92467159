package proxy

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// Parking: a lazySocket that has to wait while it is outside the runtime's
// poller waits in the relay's epoll set instead of entering that poller.
// Entering it is cheap; leaving it is not: the relay must dup the socket
// and close the original through the runtime, whose entersyscall wakes
// sysmon in a process idle a moment before (rawio_linux.go), and every
// protocol frontend's sockets wait before their login (the client for its
// command, the server for its greeting). Parked, a socket is registered
// once in the relay's set, level-triggered and one-shot, under a key of
// its own (parkBit set, so never a session's); the relay's loop signals
// the waiting goroutine, which calls again and re-arms if it still has
// to wait. The relay takes the socket as it is at hand-off (takeFD): no
// dup, no close through the runtime.

// parkBit marks the epoll keys of parked sockets; session keys are
// id<<1|dir and the eventfd's is 0.
const parkBit = 1 << 63

var errRelayClosed = errors.New("relay closed")

// armParked registers fd in the relay's epoll set for events, one-shot,
// under *key (allocated, with s, on the first call), or re-arms it.
// untimed: the caller will wait without a timer of its own, counted in
// r.untimed until it calls untimedDone, and the sweep runs meanwhile.
func (r *relay) armParked(s *lazySocket, key *uint64, fd int, events uint32, untimed bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return errRelayClosed
	}
	if err := r.startLocked(); err != nil {
		return err
	}
	op := unix.EPOLL_CTL_MOD
	if *key == 0 {
		r.nextPark++
		*key = parkBit | r.nextPark
		if r.parked == nil {
			r.parked = make(map[uint64]*lazySocket)
		}
		r.parked[*key] = s
		op = unix.EPOLL_CTL_ADD
	}
	ev := unix.EpollEvent{Events: events | unix.EPOLLONESHOT}
	setKey(&ev, *key)
	if err := sysEpollCtl(r.epfd, op, fd, &ev); err != nil {
		if op == unix.EPOLL_CTL_ADD {
			delete(r.parked, *key)
			*key = 0
		}
		return err
	}
	if untimed {
		r.untimed++
		r.sweepLocked()
	}
	return nil
}

// untimedDone ends a wait armParked counted as untimed.
func (r *relay) untimedDone() {
	r.mu.Lock()
	r.untimed--
	r.mu.Unlock()
}

// timerWithin is how near a parked wait's deadline must be for the wait to
// have a timer of its own: two sweeps, so that the sweep's wake-up of a
// farther one (wakeParkedDue) always leaves it a timer to wait with, even
// when a tick comes late.
func (r *relay) timerWithin() time.Duration { return 2 * r.sweepEvery }

// unpark removes fd, parked under key, from the relay's epoll set.
func (r *relay) unpark(key uint64, fd int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.parked, key)
	if !r.closed && r.epfd >= 0 {
		sysEpollCtl(r.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
}

// parkedEvent wakes the goroutines parked on the socket of key.
func (r *relay) parkedEvent(key uint64) {
	r.mu.Lock()
	s := r.parked[key]
	r.mu.Unlock()
	if s != nil {
		s.wakeParked()
	}
}

// wakeParkedDue wakes the goroutines parked with a deadline nearer than
// timerWithin, which then wait again with a timer of their own.
func (r *relay) wakeParkedDue() {
	now := time.Now()
	for _, s := range r.parkedSockets() {
		s.mu.Lock()
		for d, dl := range [2]time.Time{s.rd, s.wd} {
			if s.parked[d] && !dl.IsZero() && dl.Sub(now) < r.timerWithin() {
				s.wakeParkedLocked()
				break
			}
		}
		s.mu.Unlock()
	}
}

// wakeAllParked wakes every parked socket's goroutines (the relay is
// closing: they wait again in the runtime's poller).
func (r *relay) wakeAllParked() {
	for _, s := range r.parkedSockets() {
		s.wakeParked()
	}
}

// parkedSockets returns the sockets in the relay's set now, for a caller
// that takes their locks (after relay.mu, never under it).
func (r *relay) parkedSockets() []*lazySocket {
	r.mu.Lock()
	defer r.mu.Unlock()
	all := make([]*lazySocket, 0, len(r.parked))
	for _, s := range r.parked {
		all = append(all, s)
	}
	return all
}

// parkLocked waits, parked in the relay's set, until the socket may be
// ready for direction dir (0 read, 1 write), deadline passes (by the
// sweep's wake-up and a timer once it is near), or a Close,
// a new deadline or a move into the runtime's poller ends the wait. It
// reports false, not waiting, when the socket cannot park (no relay, or
// the relay closed): the caller enters the runtime's poller. s.mu is held,
// and released while waiting.
func (s *lazySocket) parkLocked(dir int, deadline time.Time) bool {
	if s.relay == nil {
		return false
	}
	if s.wake[dir] == nil {
		s.wake[dir] = make(chan struct{}, 1)
	}
	s.parked[dir] = true
	var events uint32
	if s.parked[0] {
		events |= unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if s.parked[1] {
		events |= unix.EPOLLOUT
	}
	// No timer of its own for a deadline further off than timerWithin
	// (pre-login timeouts are tens of seconds, and a timer per wait was
	// most of what parking allocated): the relay's sweep wakes the wait
	// when the deadline is near, to wait again with one.
	untimed := !deadline.IsZero() && time.Until(deadline) >= s.relay.timerWithin()
	if err := s.relay.armParked(s, &s.parkKey, s.fd, events, untimed); err != nil {
		s.parked[dir] = false
		return false
	}
	r := s.relay
	wake := s.wake[dir]
	s.mu.Unlock()
	if deadline.IsZero() || untimed {
		<-wake
		if untimed {
			r.untimedDone()
		}
	} else {
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
	s.mu.Lock()
	s.parked[dir] = false
	return true
}

// wakeParked signals the goroutines parked on s: each calls again, and
// waits again if it has to. A signal with nobody parked is dropped; one
// left in a channel makes the next wait one round longer, no more.
func (s *lazySocket) wakeParked() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wakeParkedLocked()
}

func (s *lazySocket) wakeParkedLocked() {
	for d := range s.parked {
		if s.parked[d] {
			select {
			case s.wake[d] <- struct{}{}:
			default:
			}
		}
	}
}

// unparkLocked takes the socket out of the relay's set for good (it is
// being closed, handed over or moved into the runtime's poller) and wakes
// whoever waits there. s.mu is held and s.fd is still open.
func (s *lazySocket) unparkLocked() {
	if s.parkKey != 0 {
		s.relay.unpark(s.parkKey, s.fd)
		s.parkKey = 0
	}
	s.wakeParkedLocked()
}

// parkIn lets sock, if it is a lazySocket, wait in r's epoll set.
func parkIn(sock socket, r *relay) {
	if s, ok := sock.(*lazySocket); ok {
		s.mu.Lock()
		s.relay = r
		s.mu.Unlock()
	}
}

// leaveParking takes sock, if it is a lazySocket, out of the relay's set
// for good: the relay registers it under its session's key (a TLS leg's
// later wait, in a pump, enters the runtime's poller).
func leaveParking(sock socket) {
	if s, ok := sock.(*lazySocket); ok {
		s.mu.Lock()
		if s.fd >= 0 {
			s.unparkLocked()
		}
		s.relay = nil
		s.mu.Unlock()
	}
}
