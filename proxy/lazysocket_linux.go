package proxy

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// lazySocket is a connected TCP socket that dialSocket opened or
// acceptRaw accepted, with the net.Conn methods (and CloseWrite,
// SyscallConn) the engine uses.
//
// It stays outside the runtime's poller: reads and writes are raw system
// calls on the non-blocking descriptor, made under mu, so that a Close
// never frees a descriptor number while a call is using it, and a call
// that has to wait (EAGAIN) waits parked in the relay's epoll set
// (park_linux.go), within its deadline. A socket that cannot park (no
// relay given, or the relay closed) moves into the runtime's poller at
// that first wait, as an *os.File (registerLocked), with the deadlines
// set so far; from then on the File does the waiting, the deadlines and
// the reference counting, as for any net.Conn. A socket handed to the relay before that (a tcp
// frontend's client and server: the server given its PROXY header,
// nothing read from either) is taken as it is (takeFD): no dup, no deregistration, and no close through the
// runtime, whose entersyscall would wake sysmon (rawio_linux.go).
type lazySocket struct {
	remote net.Addr
	local  net.Addr // nil: asked of the kernel when wanted

	// rmu and wmu hold a Read or a Write for its whole length, as a
	// net.TCPConn does: two writes never interleave their bytes.
	rmu, wmu sync.Mutex

	mu     sync.Mutex
	fd     int             // while unregistered; -1 once closed or taken
	file   *os.File        // set once registered; owns the descriptor then
	raw    syscall.RawConn // file's
	rd, wd time.Time       // deadlines while unregistered
	closed atomic.Bool     // Close was called, or the descriptor taken

	// Parking (park_linux.go): where the socket waits while outside the
	// runtime's poller; relay nil: it enters the poller to wait.
	relay   *relay
	parkKey uint64           // its key in the relay's set; 0: not there
	parked  [2]bool          // a read (0) or write (1) waits there
	wake    [2]chan struct{} // signals them, made on first wait
}

// registerLocked moves the descriptor into the runtime's poller, once, and
// returns its File and RawConn. s.mu is held.
func (s *lazySocket) registerLocked() (*os.File, syscall.RawConn) {
	if s.file == nil {
		s.unparkLocked()
		s.file = os.NewFile(uintptr(s.fd), "tcp") // non-blocking: pollable
		s.raw, _ = s.file.SyscallConn()           // never fails for a File made here
		s.fd = -1
		if !s.rd.IsZero() {
			s.file.SetReadDeadline(s.rd)
		}
		if !s.wd.IsZero() {
			s.file.SetWriteDeadline(s.wd)
		}
	}
	return s.file, s.raw
}

// takeFD hands the descriptor over to the caller, who closes it, if the
// socket never entered the runtime's poller; the socket is then closed to
// every later call. ok is false otherwise (the caller dups, then closes).
func (s *lazySocket) takeFD() (fd int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file != nil || s.fd < 0 {
		return -1, false
	}
	s.unparkLocked()
	fd, s.fd = s.fd, -1
	s.closed.Store(true)
	return fd, true
}

// pastDeadline reports whether deadline t is set and passed: an operation
// then fails at once, as on a net.Conn, even with bytes waiting.
func pastDeadline(t time.Time) bool { return !t.IsZero() && !time.Now().Before(t) }

// do runs f, RawConn style, for a read (write false) or a write: on the
// raw descriptor while unregistered, parked in the relay's epoll set
// (park_linux.go) between calls while f asks to wait; once registered
// (a socket that cannot park enters the runtime's poller at its first
// wait), through the File's RawConn.
func (s *lazySocket) do(write bool, f func(uintptr) bool) error {
	dir := 0
	if write {
		dir = 1
		s.wmu.Lock()
		defer s.wmu.Unlock()
	} else {
		s.rmu.Lock()
		defer s.rmu.Unlock()
	}
	s.mu.Lock()
	for s.file == nil {
		deadline := s.rd
		if write {
			deadline = s.wd
		}
		switch {
		case s.fd < 0:
			s.mu.Unlock()
			return net.ErrClosed
		case pastDeadline(deadline):
			s.mu.Unlock()
			return os.ErrDeadlineExceeded
		case f(uintptr(s.fd)):
			s.mu.Unlock()
			return nil
		}
		if !s.parkLocked(dir, deadline) {
			s.registerLocked()
		}
	}
	raw := s.raw
	s.mu.Unlock()
	if write {
		return s.mapErr(raw.Write(f))
	}
	return s.mapErr(raw.Read(f))
}

// control runs f on the descriptor, not waiting (RawConn.Control).
func (s *lazySocket) control(f func(uintptr)) error {
	s.mu.Lock()
	if s.file == nil {
		defer s.mu.Unlock()
		if s.fd < 0 {
			return net.ErrClosed
		}
		f(uintptr(s.fd))
		return nil
	}
	raw := s.raw
	s.mu.Unlock()
	return s.mapErr(raw.Control(f))
}

// Read and Write serve callers that hold the socket itself (the engine
// reads and writes through sockConn, which does the same through
// SyscallConn).
func (s *lazySocket) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var sysErr error
	err := s.do(false, func(fd uintptr) bool {
		for {
			n, sysErr = sysRead(int(fd), p)
			if sysErr != syscall.EINTR {
				return sysErr != syscall.EAGAIN
			}
		}
	})
	switch {
	case err != nil:
		return 0, s.opError("read", err)
	case sysErr != nil:
		return 0, s.opError("read", os.NewSyscallError("read", sysErr))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (s *lazySocket) Write(p []byte) (int, error) {
	n := 0
	var sysErr error
	err := s.do(true, func(fd uintptr) bool {
		var wait bool
		wait, sysErr = writeSome(int(fd), p, &n)
		return !wait
	})
	switch {
	case err != nil:
		return n, s.opError("write", err)
	case sysErr == io.ErrUnexpectedEOF:
		return n, s.opError("write", sysErr)
	case sysErr != nil:
		return n, s.opError("write", os.NewSyscallError("write", sysErr))
	}
	return n, nil
}

func (s *lazySocket) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: s.LocalAddr(), Addr: s.remote, Err: err}
}

func (s *lazySocket) RemoteAddr() net.Addr { return s.remote }

// LocalAddr is the address accept gave, or, for a dialled socket, asks
// the kernel (getsockname): only error messages want that one.
func (s *lazySocket) LocalAddr() net.Addr {
	if s.local != nil {
		return s.local
	}
	var sa unix.Sockaddr
	s.control(func(fd uintptr) { sa, _ = unix.Getsockname(int(fd)) })
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
	}
	return &net.TCPAddr{}
}

func (s *lazySocket) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}

func (s *lazySocket) SetReadDeadline(t time.Time) error { return s.setDeadline(&s.rd, t, false) }

func (s *lazySocket) SetWriteDeadline(t time.Time) error { return s.setDeadline(&s.wd, t, true) }

func (s *lazySocket) setDeadline(d *time.Time, t time.Time, write bool) error {
	s.mu.Lock()
	if s.file == nil {
		defer s.mu.Unlock()
		if s.fd < 0 {
			return net.ErrClosed
		}
		*d = t
		s.wakeParkedLocked() // a parked wait takes the new deadline
		return nil
	}
	f := s.file
	s.mu.Unlock()
	if write {
		return s.mapErr(f.SetWriteDeadline(t))
	}
	return s.mapErr(f.SetReadDeadline(t))
}

// Close closes the socket: the raw descriptor at once (no call is using
// it: they hold mu, and a parked one is woken to find it closed), or the
// File, which waits for its calls.
func (s *lazySocket) Close() error {
	s.mu.Lock()
	if s.closed.Swap(true) && s.file == nil {
		s.mu.Unlock()
		return net.ErrClosed
	}
	if s.file == nil {
		s.unparkLocked()
		fd := s.fd
		s.fd = -1
		s.mu.Unlock()
		if err := sysClose(fd); err != nil {
			return &net.OpError{Op: "close", Net: "tcp", Addr: s.remote, Err: os.NewSyscallError("close", err)}
		}
		return nil
	}
	f := s.file
	s.mu.Unlock()
	return s.mapErr(f.Close())
}

// CloseWrite shuts the sending side down, as (*net.TCPConn).CloseWrite.
func (s *lazySocket) CloseWrite() error {
	var err error
	if cerr := s.control(func(fd uintptr) { err = sysShutdown(int(fd), unix.SHUT_WR) }); cerr != nil {
		return cerr
	}
	if err != nil {
		return &net.OpError{Op: "close", Net: "tcp", Source: s.LocalAddr(), Addr: s.remote, Err: os.NewSyscallError("shutdown", err)}
	}
	return nil
}

// SyscallConn returns the socket's RawConn: Read and Write run their
// function on the raw descriptor first, and enter the runtime's poller only
// when it asks to wait. Its errors on a closed socket are net.ErrClosed,
// as a TCPConn's are (an *os.File reports its own "use of closed file").
func (s *lazySocket) SyscallConn() (syscall.RawConn, error) { return lazyRaw{s}, nil }

func (s *lazySocket) mapErr(err error) error {
	if err != nil && s.closed.Load() {
		return net.ErrClosed
	}
	return err
}

type lazyRaw struct{ s *lazySocket }

func (c lazyRaw) Control(f func(uintptr)) error    { return c.s.control(f) }
func (c lazyRaw) Read(f func(uintptr) bool) error  { return c.s.do(false, f) }
func (c lazyRaw) Write(f func(uintptr) bool) error { return c.s.do(true, f) }
