package proxy

import (
	"net"
	"time"
)

// A session holds up to two slots: one of its frontend's Reserve (which
// no other frontend can take) or else one of the server-wide maxconn, and
// one of its frontend's own MaxConn. The accept
// loop takes them before it accepts, so that at the limit new connections
// wait in the kernel's listen backlog (HAProxy's maxconn); past the
// frontend's BacklogWait they are accepted and refused in the protocol's
// words instead of waiting on.

// slots are the semaphores a session holds a slot of; nil: none.
type slots struct {
	global   chan struct{} // Server.sem or the frontend's reserve
	frontend chan struct{}
}

func (sl slots) release() {
	release(sl.frontend)
	release(sl.global)
}

// errBacklogWait: the frontend stayed full for its BacklogWait.
type waitResult int

const (
	gotSlots waitResult = iota
	waitedTooLong
	closing
)

// takeSlots takes a session's slots for l's frontend fe, waiting while
// they are all taken, until deadline (zero: no deadline) or until l
// closes.
func (s *Server) takeSlots(l *listener, fe *Frontend, deadline time.Time) (slots, waitResult) {
	var timeout <-chan time.Time
	if !deadline.IsZero() {
		t := time.NewTimer(time.Until(deadline))
		defer t.Stop()
		timeout = t.C
	}
	var sl slots
	// The frontend's reserve first: its slots are no use to any other
	// frontend, and an accept loop holds its slot while it waits in
	// Accept, so this leaves the shared ones to the others.
	select {
	case fe.reserve <- struct{}{}: // a nil reserve never takes
		sl.global = fe.reserve
	default:
		if s.sem == nil {
			break
		}
		select {
		case s.sem <- struct{}{}:
			sl.global = s.sem
		default:
			s.logFull(l, "global.maxconn", cap(s.sem))
			select {
			case s.sem <- struct{}{}:
				sl.global = s.sem
			case fe.reserve <- struct{}{}:
				sl.global = fe.reserve
			case <-timeout:
				return sl, waitedTooLong
			case <-l.done:
				return sl, closing
			}
		}
	}
	if fe.sem != nil {
		select {
		case fe.sem <- struct{}{}:
		default:
			s.logFull(l, "frontend."+fe.Name+".maxconn", cap(fe.sem))
			select {
			case fe.sem <- struct{}{}:
			case <-timeout:
				sl.release()
				return slots{}, waitedTooLong
			case <-l.done:
				sl.release()
				return slots{}, closing
			}
		}
		sl.frontend = fe.sem
	}
	return sl, gotSlots
}

func (s *Server) logFull(l *listener, key string, max int) {
	if s.maxConnLog.allow(time.Now()) {
		s.log.Warn("maxconn reached: new connections wait in the listen backlog", "limit", key, "max", max, "addr", l.addr)
	}
}

// refuse tells a connection accepted without a slot that the frontend is
// full, in its protocol's words, and closes it. An implicit-TLS frontend
// closes it without a word: a handshake is what a full server saves.
func (s *Server) refuse(fe *Frontend, nc net.Conn) {
	defer nc.Close()
	r, ok := fe.Handler.(Refuser)
	if !ok || fe.ImplicitTLS {
		return
	}
	nc.SetWriteDeadline(time.Now().Add(goodbyeTimeout))
	nc.Write([]byte(r.Refusal("Too many connections, try again later")))
}
