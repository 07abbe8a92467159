package proxy

import (
	"errors"
	"io"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The detached relay: when both legs are plain TCP, the session's sockets
// leave Go's netpoller at handoff. Each is duplicated and its net.TCPConn
// (or dialled socket) closed, which also removes it from the runtime's epoll set (the runtime
// deletes the registration before it closes the descriptor) and gives back
// its netFD and poll descriptor; a dialled socket that never had to wait
// was never in the runtime's poller, and is taken over as it is. An idle session is then two descriptors in
// the relay's epoll set and the session struct, nothing else.
//
// Bytes move by splice(2) through a pooled pipe. A direction is always in
// one state, guarded by session.mu: waiting for its source to be readable,
// running (one pump), waiting for its destination to be writable (the pipe
// it holds still has bytes), or done (EOF seen).
//
// Each socket is registered once, edge-triggered (EPOLLET): readable from
// the start, writable too from the first time a direction has to wait for
// it. No event is ever re-armed, which under EPOLLONESHOT cost an epoll_ctl
// per event (about seven per IMAP login). An edge reports only what
// changed, so a pump stops only once its socket said EAGAIN (or after a
// short read: the socket had nothing more at that moment), and an event
// that arrives for a running direction is not lost: the loop marks the
// direction kicked, and its pump, about to wait, goes round once more.

// dirState is where a detached direction stands.
type dirState int

const (
	dirWaitRead  dirState = iota // armed for EPOLLIN on the source
	dirRunning                   // a pump runs
	dirWaitWrite                 // holds a pipe with bytes; armed for EPOLLOUT on the destination
	dirDone                      // the source sent EOF
)

// errWouldBlockWrite ends a pump whose destination cannot take more now.
var errWouldBlockWrite = errors.New("would block writing")

// fdTaker is a socket that can hand its descriptor over as it is, when it
// never entered the runtime's poller (lazySocket).
type fdTaker interface{ takeFD() (int, bool) }

// detach takes both sockets off Go's netpoller: a socket that was never in
// it gives its descriptor over as it is (fdTaker); the others are dup'd,
// then closed. On error the sockets that were dup'd are as they were, and
// a descriptor already given over is closed (its socket is closed).
func (s *session) detach() error {
	var fds [2]int
	var dupped, taken [2]bool
	dup := func(i int) error {
		var nfd int
		var err error
		cerr := s.legs[i].sock.raw.Control(func(fd uintptr) {
			nfd, err = sysDup(int(fd))
		})
		if err == nil {
			err = cerr
		}
		if err != nil {
			for j := range fds {
				if dupped[j] || taken[j] {
					sysClose(fds[j])
				}
			}
			return err
		}
		fds[i], dupped[i] = nfd, true
		return nil
	}
	// The dups first: they may fail, a take does not.
	for i, l := range s.legs {
		if _, ok := l.sock.socket.(fdTaker); !ok {
			if err := dup(i); err != nil {
				return err
			}
		}
	}
	for i, l := range s.legs {
		t, ok := l.sock.socket.(fdTaker)
		if !ok {
			continue
		}
		if fd, ok := t.takeFD(); ok {
			fds[i], taken[i] = fd, true
			continue
		}
		if err := dup(i); err != nil { // it is in the poller: dup it as the others
			return err
		}
	}
	for i, l := range s.legs {
		if dupped[i] {
			l.sock.socket.Close() // the duplicate keeps the socket open
		}
	}
	s.raw, s.fds = true, fds
	return nil
}

// epollReadable is what every detached socket is registered for.
// EPOLLPRI: TCP urgent data, at whose mark read(2) stops short and
// splice(2) says EAGAIN with bytes still queued behind it (tcp(7)).
const epollReadable = unix.EPOLLIN | unix.EPOLLPRI | unix.EPOLLRDHUP | unix.EPOLLET

// addLocked registers socket i in the relay's epoll set, edge-triggered
// for readable: data already there is reported at once.
func (s *session) addLocked(i int) error {
	ev := unix.EpollEvent{Events: epollReadable}
	setKey(&ev, s.c.id<<1|uint64(i))
	return sysEpollCtl(s.r.epfd, unix.EPOLL_CTL_ADD, s.fds[i], &ev)
}

// wantWriteLocked adds writable to socket i's events the first time a
// direction waits to write to it; the change reports the socket at once
// if it is writable already.
func (s *session) wantWriteLocked(i int) error {
	if s.closed || s.fdsClosed || s.outArmed[i] {
		return nil // never touch descriptor numbers that may be reused
	}
	s.outArmed[i] = true
	ev := unix.EpollEvent{Events: epollReadable | unix.EPOLLOUT}
	setKey(&ev, s.c.id<<1|uint64(i))
	return sysEpollCtl(s.r.epfd, unix.EPOLL_CTL_MOD, s.fds[i], &ev)
}

// onEvent starts the pumps an event on socket i lets go on; a direction
// whose pump is running is kicked instead (see pumpEnded).
func (s *session) onEvent(i int, events uint32) {
	var start [2]bool
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if events&(unix.EPOLLIN|unix.EPOLLPRI|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		if events&(unix.EPOLLPRI|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			s.dirs[i].readOn = true
		}
		start[i] = s.dirs[i].wakeLocked(dirWaitRead)
	}
	if events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		start[1-i] = s.dirs[1-i].wakeLocked(dirWaitWrite)
	}
	s.mu.Unlock()
	for d, ok := range start {
		if ok {
			s.dirs[d].firstPump()
		}
	}
}

// wakeLocked handles an event of what d waits for in state waiting: it
// reports whether d's pump is to start now (the caller starts it), or
// marks a running pump kicked. s.mu is held.
func (d *direction) wakeLocked(waiting dirState) bool {
	switch d.state {
	case waiting:
		d.state = dirRunning
		d.s.busy++
		return true
	case dirRunning:
		d.kicked = true
	}
	return false
}

// firstPump moves one buffer right here on the relay's loop: a command or
// a reply of a few hundred bytes then costs no goroutine and no wake-up of
// another thread (an interactive session's every event is one). When the
// read fills the buffer, more is waiting, and a pump goroutine takes the
// rest so that one bulk transfer never holds up the other sessions.
func (d *direction) firstPump() {
	s := d.s
	for {
		err := d.moveFirst(s.fds[d.from], s.fds[1-d.from])
		if err == errFullBuffer {
			go d.rawPump()
			return
		}
		endErr, again := d.pumpEnded(err)
		if again {
			continue
		}
		if endErr != nil {
			s.endOffLoop(endErr) // on the loop: its log line must not hold it
		}
		return
	}
}

// errFullBuffer: the first buffer was full; the pump goes on elsewhere.
var errFullBuffer = errors.New("first buffer full")

// moveFirst writes what a direction left pending, then moves one buffer.
func (d *direction) moveFirst(src, dst int) error {
	if err := d.writePending(dst); err != nil {
		return err
	}
	if d.s.stopping.Load() {
		return errSessionClosed
	}
	for {
		full, err := d.copyRaw(src, dst)
		switch {
		case err != nil:
			return err
		case full:
			return errFullBuffer
		case !d.readOn:
			// A short read drained the socket at that moment: bytes
			// that come later are a new edge, so wait for it rather
			// than try a read that would say EAGAIN.
			return errWouldBlock
		}
		// An event said the peer has shut down or failed (its EOF or
		// error is no new edge) or sent urgent data (a read stops at
		// its mark): read on until EAGAIN, EOF or the error.
	}
}

// rawPump moves bytes until the source is drained or the destination is
// full, then records what it waits for and exits.
func (d *direction) rawPump() {
	for {
		err := d.spliceRaw(d.s.fds[d.from], d.s.fds[1-d.from])
		if hook := rawPumpStopping.Load(); hook != nil {
			(*hook)(d, err)
		}
		endErr, again := d.pumpEnded(err)
		if again {
			continue
		}
		if endErr != nil {
			d.s.end("", endErr)
		}
		return
	}
}

// rawPumpStopping, when set (by tests only), is called by a pump goroutine
// between its last read or write and pumpEnded: the window in which an
// edge reaches the loop while the direction still runs.
var rawPumpStopping atomic.Pointer[func(d *direction, err error)]

// pumpEnded records why a pump stopped and what it now waits for. It
// reports again when the pump was kicked while it ran (an edge it may
// have missed): the pump then goes round once more instead of waiting.
// It returns what the session ends with, if it ends; the caller ends it.
func (d *direction) pumpEnded(err error) (endErr error, again bool) {
	s := d.s
	s.mu.Lock()
	defer s.mu.Unlock()
	kicked := d.kicked
	d.kicked = false
	if kicked && !s.closed && (err == errWouldBlock || err == errWouldBlockWrite) {
		return nil, true // still running, still busy
	}
	s.busy--
	switch {
	case s.closed:
	case err == errWouldBlock:
		d.state = dirWaitRead
	case err == errWouldBlockWrite:
		d.state = dirWaitWrite
		endErr = s.wantWriteLocked(1 - d.from)
	case err == io.EOF:
		d.state = dirDone
		// Recorded under s.mu with the shutdown that passes it on: the
		// other side's EOF, even if it answers this one, comes after.
		endErr = s.eofLocked(d.from)
		if endErr == nil {
			sysShutdown(s.fds[1-d.from], unix.SHUT_WR)
		}
		// Else both sides are done, and the close that ends the session
		// sends the FIN: one system call less per session (HAProxy's
		// count). That close cannot turn into a reset: the other
		// socket's input was read up to its EOF.
	default:
		endErr = err
	}
	if s.closed && s.busy == 0 {
		s.closeFDsLocked()
	}
	return endErr, false
}

// spliceRaw moves src → dst: each pump moves by read and write through a
// pooled buffer and, when the frontend says Splice, moves on to src → pipe
// → dst once a read fills the buffer. A login's or a command's few hundred
// bytes then cost one read and one write and no pipe, where splice(2)
// would take two splices and a pipe from the pool; bulk transfers move by
// splice (HAProxy's splice-auto makes the same choice). A pipe that still holds bytes when
// dst is full stays with the direction until dst is writable again. An
// error of either socket says which leg failed (see [onLeg]).
func (d *direction) spliceRaw(src, dst int) error {
	if err := d.writePending(dst); err != nil {
		return err
	}
	bulk := false
	pipes := &d.s.r.pipes
	for {
		if d.s.stopping.Load() {
			return errSessionClosed
		}
		if !bulk {
			full, err := d.copyRaw(src, dst)
			if err != nil {
				return err
			}
			bulk = full && d.s.c.fe.Splice
			continue
		}
		p, err := pipes.get()
		if err == unix.EMFILE || err == unix.ENFILE {
			// Out of descriptors for a pipe: the session goes on through
			// the buffer, as a TLS leg does, rather than failing.
			bulk = false
			continue
		}
		if err != nil {
			return err
		}
		n, err := spliceNoEINTR(src, p.w, spliceChunk)
		switch {
		case err == unix.EAGAIN:
			// Drained, or stopped at an urgent mark with bytes behind
			// it, which no new edge would report: a read, which passes
			// the mark, says which (one read more per burst).
			pipes.put(p)
			bulk = false
			continue
		case err != nil:
			pipes.put(p)
			return onLeg(d.from, err)
		case n == 0:
			pipes.put(p)
			return io.EOF
		}
		d.moved(n)
		d.pending, d.pendingN = p, n
		if err := d.drainPending(dst); err != nil {
			return err
		}
	}
}

// copyRaw moves one buffer src → dst with read and write; what dst does
// not take waits in pendingBuf. full reports that the read filled the
// buffer: more is likely waiting, which splice moves better.
func (d *direction) copyRaw(src, dst int) (full bool, err error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	n, err := sysRead(src, *bp)
	for err == unix.EINTR {
		n, err = sysRead(src, *bp)
	}
	switch {
	case err == unix.EAGAIN:
		return false, errWouldBlock
	case err != nil:
		return false, onLeg(d.from, err)
	case n == 0:
		return false, io.EOF
	}
	d.moved(n)
	buf := (*bp)[:n]
	for len(buf) > 0 {
		m, err := sysWrite(dst, buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			d.pendingBuf = append([]byte(nil), buf...) // kept only while dst is full
			return false, errWouldBlockWrite
		case err != nil:
			return false, onLeg(1-d.from, err)
		}
		buf = buf[m:]
	}
	return n == len(*bp), nil
}

// writePending writes what dst did not take last time, from the pipe or
// the buffer.
func (d *direction) writePending(dst int) error {
	if d.pending != nil {
		if err := d.drainPending(dst); err != nil {
			return err
		}
	}
	if d.pendingBuf != nil {
		return d.writePendingBuf(dst)
	}
	return nil
}

// writePendingBuf writes pendingBuf to dst.
func (d *direction) writePendingBuf(dst int) error {
	for len(d.pendingBuf) > 0 {
		m, err := sysWrite(dst, d.pendingBuf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			return errWouldBlockWrite
		case err != nil:
			d.pendingBuf = nil
			return onLeg(1-d.from, err)
		}
		d.pendingBuf = d.pendingBuf[m:]
	}
	d.pendingBuf = nil
	return nil
}

// drainPending writes the pipe's bytes to dst and returns the pipe to the pool.
func (d *direction) drainPending(dst int) error {
	for d.pendingN > 0 {
		m, err := spliceNoEINTR(d.pending.r, dst, d.pendingN)
		if err == unix.EAGAIN {
			return errWouldBlockWrite
		}
		if err != nil {
			d.pending.close() // it may hold bytes: never reuse it
			d.pending, d.pendingN = nil, 0
			return onLeg(1-d.from, err)
		}
		d.pendingN -= m
	}
	d.s.r.pipes.put(d.pending)
	d.pending = nil
	return nil
}

func spliceNoEINTR(from, to, n int) (int, error) {
	for {
		m, err := sysSplice(from, to, n, unix.SPLICE_F_NONBLOCK|unix.SPLICE_F_MOVE)
		if err != unix.EINTR {
			return m, err
		}
	}
}

// rawFD writes to a detached, non-blocking socket: what the kernel takes
// now, never waiting (the goodbye is best effort).
type rawFD int

func (fd rawFD) Write(p []byte) (int, error) { return sysWrite(int(fd), p) }

// errSessionClosed stops a pump of a session that is ending.
var errSessionClosed = errors.New("session closed")

// closeFDsLocked closes the detached sockets once no pump uses them, so a
// descriptor number is never reused under a running pump.
func (s *session) closeFDsLocked() {
	if s.fdsClosed {
		return
	}
	s.fdsClosed = true
	sysClose(s.fds[0])
	sysClose(s.fds[1])
	for i := range s.dirs {
		if p := s.dirs[i].pending; p != nil {
			p.close()
			s.dirs[i].pending = nil
		}
	}
}
