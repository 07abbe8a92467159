package proxy

import (
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// relay moves bytes for every session that has logged in. Sessions wait in
// one epoll set (detached sockets edge-triggered, TLS legs EPOLLONESHOT); a
// readable socket starts a pump for that direction, which copies until the
// socket has nothing more and exits. Between two plain TCP legs the
// loop itself moves the first buffer (read and write), which is all of an
// interactive command or reply, and only a full buffer hands the rest to a
// pump goroutine that moves it by read and write (by splice(2) when the
// frontend says Splice); a TLS leg always gets a pump goroutine. An idle session therefore costs its two sockets, two small
// structs and nothing else.
type relay struct {
	srv   *Server
	epfd  int
	epoll syscall.RawConn // epfd in the Go runtime's poller: loop waits there
	epf   *os.File        // owns epfd
	wake  int             // eventfd that ends loop
	pipes pipePool

	mu         sync.Mutex
	sessions   map[uint64]*session
	parked     map[uint64]*lazySocket // sockets waiting before hand-off, by key (park_linux.go)
	nextPark   uint64
	closed     bool
	done       chan struct{} // closed when loop and sweep have exited
	stopped    chan struct{} // closed by close to end sweep
	wg         *sync.WaitGroup
	sweeping   bool          // sweep runs (while there are sessions or untimed parked waits)
	sweepEvery time.Duration // sweepEvery when made; a test sets its own before the relay starts
	untimed    int           // parked waits without a timer, which the sweep wakes (park_linux.go)
}

// session is one relayed client/server pair.
type session struct {
	r      *relay
	c      *Conn
	legs   [2]leg       // client, server
	dirs   [2]direction // client→server, server→client
	active atomic.Int64 // unix nanos of the last byte either way

	// raw: both legs were plain TCP and are detached (relay_raw_linux.go);
	// fds are then the sockets and legs[i].sock is closed.
	raw      bool
	fds      [2]int
	stopping atomic.Bool // set by end: pumps stop at the next chunk

	mu        sync.Mutex
	eof       [2]bool
	first     int // the leg whose EOF came first, once one did
	closed    bool
	busy      int     // detached pumps running
	fdsClosed bool    // detached sockets closed
	outArmed  [2]bool // detached socket i is registered for writable too
}

// direction copies from legs[from] to legs[1-from].
type direction struct {
	s       *session
	from    int
	running atomic.Bool   // a netpoller pump runs (TLS sessions)
	bytes   *atomic.Int64 // the Conn counter this direction feeds
	last    atomic.Int64  // unix nanos of the last byte this way

	// Detached sessions only; state is guarded by session.mu, pending is
	// touched only by the running pump.
	state    dirState
	pending  *pipe // holds pendingN bytes the destination did not take yet
	pendingN int
	// pendingBuf holds bytes read without a pipe (none could be made: the
	// process is out of descriptors) that the destination did not take yet.
	pendingBuf []byte
	// kicked: an event this direction waits for came while its pump ran;
	// the pump goes round once more before it waits (relay_raw_linux.go).
	kicked bool
	// readOn: an event said a short read may leave bytes behind (the
	// source shut down or failed, or sent urgent data); only the relay's
	// loop reads and writes it (onEvent, moveFirst).
	readOn bool
}

const wakeKey = 0 // epoll key of the eventfd; session keys are id<<1|dir with id >= 1

// spliceChunk is the most one splice call moves (the default pipe size).
const spliceChunk = 64 << 10

// copyBufSize is the pump buffer when a leg is TLS: one full TLS record.
const copyBufSize = 16 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// errWouldBlock ends a pump that has drained its socket.
var errWouldBlock = errors.New("would block")

func newRelay(srv *Server) *relay {
	r := &relay{srv: srv, epfd: -1, wake: -1, sessions: make(map[uint64]*session), sweepEvery: sweepEvery}
	return r
}

// start creates the epoll set on first use, so a Server that never relays
// holds no descriptors.
func (r *relay) startLocked() error {
	if r.closed {
		return errors.New("relay closed")
	}
	if r.epfd >= 0 {
		return nil
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return err
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setKey(&ev, wakeKey)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return err
	}
	// The loop waits for the epoll set in the runtime's own poller rather
	// than in a blocking epoll_wait, which would hold a thread in a system
	// call and make the scheduler hand its P to another thread each time.
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return err
	}
	epf := os.NewFile(uintptr(epfd), "relay-epoll")
	epoll, err := epf.SyscallConn()
	if err != nil {
		epf.Close()
		unix.Close(wake)
		return err
	}
	r.epfd, r.epoll, r.epf, r.wake = epfd, epoll, epf, wake
	r.done = make(chan struct{})
	r.stopped = make(chan struct{})
	r.wg = new(sync.WaitGroup)
	r.wg.Add(1)
	go r.loop(r.wg)
	go func(wg *sync.WaitGroup, done chan struct{}) { wg.Wait(); close(done) }(r.wg, r.done)
	return nil
}

// sweepLocked starts the sweep, unless it runs, when a session is added
// or a wait parks without a timer. r.mu is held and the relay started; the loop's count
// in r.wg keeps it from reaching zero until close.
func (r *relay) sweepLocked() {
	if !r.sweeping {
		r.sweeping = true
		r.wg.Add(1)
		go r.sweep(r.wg)
	}
}

func setKey(ev *unix.EpollEvent, key uint64) {
	ev.Fd = int32(uint32(key))
	ev.Pad = int32(uint32(key >> 32))
}

func getKey(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// add takes over c with its client and server legs and starts both pumps
// once, to move anything crypto/tls already holds.
func (r *relay) add(c *Conn, client, server leg) {
	s := &session{r: r, c: c, legs: [2]leg{client, server}}
	s.dirs[0] = direction{s: s, from: 0, bytes: &c.bytesIn}
	s.dirs[1] = direction{s: s, from: 1, bytes: &c.bytesOut}
	now := time.Now().UnixNano()
	s.active.Store(now)
	s.dirs[1].last.Store(now) // the server's login reply came last
	for _, l := range s.legs {
		leaveParking(l.sock.socket) // the relay registers it under the session's key
		l.sock.SetDeadline(time.Time{})
		l.sock.nonblock.Store(true)
	}
	var err error
	if client.tls == nil && server.tls == nil {
		err = s.detach()
	}

	r.mu.Lock()
	if err == nil {
		err = r.startLocked()
	}
	if err == nil {
		r.sweepLocked()
		r.sessions[c.id] = s
	}
	r.mu.Unlock()
	if err == nil && s.raw {
		s.mu.Lock()
		for i := range s.fds {
			if err = s.addLocked(i); err != nil {
				break
			}
		}
		s.mu.Unlock()
	} else if err == nil {
		for i := range s.dirs {
			if err = s.register(i, unix.EPOLL_CTL_ADD); err != nil {
				break
			}
		}
	}
	if err != nil {
		s.end("", err)
		return
	}
	if ended := c.endingReason(); ended != "" { // a stop that came while the session was being added
		s.end(ended, nil)
		return
	}
	if !s.raw {
		for i := range s.dirs {
			go s.dirs[i].pump()
		}
	}
}

// register arms (or re-arms) the readable event of the socket direction i
// reads. It runs under the socket's fd lock so it can never touch a
// descriptor number that was closed and reused.
func (s *session) register(i int, op int) error {
	var err error
	cerr := s.legs[i].sock.raw.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
		setKey(&ev, s.c.id<<1|uint64(i))
		err = unix.EpollCtl(s.r.epfd, op, int(fd), &ev)
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// loop waits for readable sockets and starts their pumps. It exits when
// close writes the eventfd.
func (r *relay) loop(wg *sync.WaitGroup) {
	defer wg.Done()
	events := make([]unix.EpollEvent, 256)
	var werr error
	// One Read for the loop's whole life: its callback polls the epoll set
	// without blocking, handles what it got and returns false to wait in
	// the runtime's poller until the set is readable again. RawConn.Read
	// forgets the set's readiness only when it begins, so an edge that came
	// while a batch was handled ends the next wait at once, and no event is
	// missed; a Read per batch would have to begin each time with a poll
	// that finds nothing (one epoll_pwait more per wake-up).
	err := r.epoll.Read(func(fd uintptr) bool {
		for {
			n, err := sysEpollWait(int(fd), events)
			switch {
			case err == unix.EINTR:
				continue
			case err != nil:
				werr = err
				return true
			case n == 0:
				return false
			}
			if r.handle(events[:n]) {
				return true
			}
			if n < len(events) {
				return false // the set was drained: wait for its next edge
			}
		}
	})
	if err == nil {
		err = werr
	}
	if err != nil {
		r.srv.log.Error("relay: epoll_wait failed", "err", err)
	}
}

// handle starts the pumps of a batch of events; it reports true when the
// eventfd asks the loop to end.
func (r *relay) handle(events []unix.EpollEvent) bool {
	for i := range events {
		key := getKey(&events[i])
		if key == wakeKey {
			return true
		}
		if key&parkBit != 0 {
			r.parkedEvent(key)
			continue
		}
		r.mu.Lock()
		s := r.sessions[key>>1]
		r.mu.Unlock()
		switch {
		case s == nil:
		case s.raw:
			s.onEvent(int(key&1), events[i].Events)
		default:
			go s.dirs[key&1].pump()
		}
	}
	return false
}

// sweepEvery is how often idle sessions and parked sockets' deadlines are
// looked at (relay.sweepEvery; the tests set theirs).
const sweepEvery = time.Second

// sweep ends sessions idle for longer than their frontend's idle timeout,
// and wakes parked waits whose deadline is near (park_linux.go). It exits
// when the relay is closed, or when there are neither sessions nor parked
// waits without a timer (sweepLocked starts it again): an idle process,
// sockets idle in LMTP's pool included, has no ticker to wake it.
func (r *relay) sweep(wg *sync.WaitGroup) {
	defer wg.Done()
	t := time.NewTicker(r.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-r.stopped:
			return
		case now := <-t.C:
			r.wakeParkedDue()
			r.mu.Lock()
			if len(r.sessions) == 0 && r.untimed == 0 {
				r.sweeping = false
				r.mu.Unlock()
				return
			}
			var idle []*session
			for _, s := range r.sessions {
				limit := s.c.fe.Timeouts.idle() // negative: no idle timeout
				if limit >= 0 && now.UnixNano()-s.active.Load() > int64(limit) {
					idle = append(idle, s)
				}
			}
			r.mu.Unlock()
			for _, s := range idle {
				go s.end(EndIdleTimeout, nil)
			}
		}
	}
}

// pump moves what is readable now from one leg to the other, then re-arms
// the socket and exits. At most one pump runs per direction.
func (d *direction) pump() {
	if !d.running.CompareAndSwap(false, true) {
		return
	}
	s := d.s
	src, dst := s.legs[d.from], s.legs[1-d.from]
	err := d.copy(src, dst) // sessions here have a TLS leg; plain pairs are detached
	d.running.Store(false)
	switch {
	case err == errWouldBlock:
		if rerr := s.register(d.from, unix.EPOLL_CTL_MOD); rerr != nil {
			s.end("", rerr)
		}
	case errors.Is(err, io.EOF):
		// The EOF is recorded before it is passed on: a peer that closes
		// on seeing it must not count as the side that closed first.
		end := s.halfClosed(d.from)
		dst.closeWrite()
		if end != nil {
			s.end("", end)
		}
	default:
		s.end("", err)
	}
}

func (d *direction) moved(n int) {
	d.bytes.Add(int64(n))
	now := time.Now().UnixNano()
	d.last.Store(now)
	d.s.active.Store(now)
}

// drainPause is how long a session that ends at a pause ([Conn.EndAtPause])
// must have been quiet both ways, with a server reply the last thing that
// moved, before a graceful shutdown ends it there. Servers write a reply in
// one go, so a reply does not pause this long in its middle; an IDLE
// session is quiet for minutes.
const drainPause = 200 * time.Millisecond

// endPaused ends, with their goodbye, the sessions that asked to end at a
// pause and are in one at now ([Server.Shutdown]); it returns how many.
func (r *relay) endPaused(now time.Time) int {
	r.mu.Lock()
	all := make([]*session, 0, len(r.sessions))
	for _, s := range r.sessions {
		all = append(all, s)
	}
	r.mu.Unlock()
	n := 0
	for _, s := range all {
		if s.atPause(now) {
			s.end(EndShutdown, nil)
			n++
		}
	}
	return n
}

// atPause reports whether s asked to end at a pause and is in one: nothing
// moving either way for drainPause, nothing held for a peer, and the
// server spoke last (the client's latest command is answered).
func (s *session) atPause(now time.Time) bool {
	if !s.c.endsAtPause() || now.UnixNano()-s.active.Load() < int64(drainPause) {
		return false
	}
	if s.dirs[0].last.Load() > s.dirs[1].last.Load() {
		return false
	}
	if !s.raw {
		return !s.dirs[0].running.Load() && !s.dirs[1].running.Load()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.dirs {
		if st := s.dirs[i].state; st == dirRunning || st == dirWaitWrite {
			return false
		}
	}
	return true
}

// copy moves bytes through a pooled buffer (a TLS leg cannot splice). An
// error says which leg failed (see [onLeg]).
func (d *direction) copy(src, dst leg) error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	dst.sock.SetWriteDeadline(deadlineFor(d.s.c.fe.Timeouts.idle()))
	for {
		n, err := src.conn.Read(buf)
		if n > 0 {
			// Counted when read, as the detached relay does: a reply
			// the destination answers at once must not look older than
			// the bytes it answers (atPause compares the two).
			d.moved(n)
			if _, werr := dst.conn.Write(buf[:n]); werr != nil {
				return onLeg(1-d.from, werr)
			}
		}
		if err != nil {
			if wouldBlock(err) {
				return errWouldBlock
			}
			return onLeg(d.from, err)
		}
	}
}

// onLeg wraps err, met reading or writing leg i (0 the client, 1 the
// server), for the session's end reason.
func onLeg(i int, err error) error { return &peerClosed{server: i == 1, err: err} }

// eofLocked records EOF from leg i and, once both sides are done, returns
// what the session ends with: closed by the side that sent EOF first.
// It returns nil while the other side is still open. s.mu is held.
func (s *session) eofLocked(i int) error {
	if !s.eof[1-i] {
		s.first = i
	}
	s.eof[i] = true
	if !s.eof[1-i] {
		return nil
	}
	return &peerClosed{server: s.first == 1}
}

// halfClosed records EOF from leg i and returns what the session ends
// with once both sides are done (see eofLocked), else nil.
func (s *session) halfClosed(i int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.eofLocked(i)
}

// end closes both legs once and lets the engine log the session. reason is
// set when the engine (not a peer) ended it; then the client is told
// goodbye unless the server is in the middle of sending to it.
func (s *session) end(reason string, err error) {
	if s.close(reason) {
		s.c.finish(err)
	}
}

// endOffLoop is end for the relay's loop: the session is closed here, and
// its finish (lease, counters, the log line, whose writer may stall) runs
// on a goroutine of its own, so that it never holds up other sessions.
func (s *session) endOffLoop(err error) {
	if s.close("") {
		go s.c.finish(err)
	}
}

// close is end without the Conn's finish: it reports whether this call
// closed the session (the caller then finishes it).
func (s *session) close(reason string) bool {
	s.stopping.Store(true)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return false
	}
	s.closed = true
	if s.raw {
		s.endRawLocked(reason)
	}
	s.mu.Unlock()

	r := s.r
	r.mu.Lock()
	delete(r.sessions, s.c.id)
	r.mu.Unlock()

	c := s.c
	c.markEnding(reason)
	if !s.raw {
		// Holding running keeps a server→client pump from starting under the goodbye.
		if reason != "" && s.dirs[1].running.CompareAndSwap(false, true) {
			c.sayGoodbye(reason, s.legs[0].conn)
		}
		s.legs[1].conn.Close()
		s.legs[0].conn.Close()
	}
	return true
}

// endRawLocked ends a detached session: the client is told goodbye when the
// engine ended it and the server is not in the middle of sending, both
// sockets are shut down, and they are closed now or by the last pump.
func (s *session) endRawLocked(reason string) {
	if s.fdsClosed {
		return
	}
	if s.dirs[1].state != dirRunning && s.dirs[1].pending == nil && s.dirs[1].pendingBuf == nil {
		s.c.sayGoodbye(reason, rawFD(s.fds[0]))
	}
	if s.busy == 0 {
		s.closeFDsLocked() // close ends both connections: no shutdown needed
		return
	}
	// A pump is inside a splice or a write on these sockets: shut them
	// down to wake it; the last pump closes them.
	sysShutdown(s.fds[0], unix.SHUT_RDWR)
	sysShutdown(s.fds[1], unix.SHUT_RDWR)
}

// stop ends c's session for reason (shutdown, kick).
func (r *relay) stop(c *Conn, reason string) {
	r.mu.Lock()
	s := r.sessions[c.id]
	r.mu.Unlock()
	if s != nil {
		s.end(reason, nil)
	}
}

// close ends the loop and the sweeper and releases the epoll set; sessions
// must have been ended before.
func (r *relay) close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	started := r.epfd >= 0
	r.mu.Unlock()
	if !started {
		return
	}
	var one [8]byte
	one[0] = 1
	unix.Write(r.wake, one[:])
	close(r.stopped)
	<-r.done
	r.wakeAllParked() // they find the relay closed and wait in the runtime's poller
	r.epf.Close()
	unix.Close(r.wake)
	r.pipes.drain()
}

// pipe is a kernel pipe used by splice.
type pipe struct{ r, w int }

func (p *pipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// pipePool keeps a few empty pipes for the pumps. A pipe is borrowed only
// while bytes move, so a busy proxy needs about as many as it has
// concurrent transfers, not sessions.
type pipePool struct {
	mu       sync.Mutex
	free     []*pipe
	drained  bool         // the relay closed: pipes given back are closed
	borrowed atomic.Int64 // pipes handed to pumps, for the tests
}

// maxIdlePipes bounds the descriptors kept in the pool.
const maxIdlePipes = 64

func (pp *pipePool) get() (*pipe, error) {
	pp.borrowed.Add(1)
	pp.mu.Lock()
	if n := len(pp.free); n > 0 {
		p := pp.free[n-1]
		pp.free = pp.free[:n-1]
		pp.mu.Unlock()
		return p, nil
	}
	pp.mu.Unlock()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	return &pipe{r: fds[0], w: fds[1]}, nil
}

func (pp *pipePool) put(p *pipe) {
	pp.mu.Lock()
	if !pp.drained && len(pp.free) < maxIdlePipes {
		pp.free = append(pp.free, p)
		p = nil
	}
	pp.mu.Unlock()
	if p != nil {
		p.close()
	}
}

func (pp *pipePool) drain() {
	pp.mu.Lock()
	free := pp.free
	pp.free, pp.drained = nil, true
	pp.mu.Unlock()
	for _, p := range free {
		p.close()
	}
}
