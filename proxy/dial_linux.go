package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dialSocket connects to a server's address with raw system calls:
// socket, TCP_NODELAY (as net sets it), a non-blocking connect, and, once
// the socket is writable, SO_ERROR. Go's net.Dialer adds getsockname and
// getpeername to every dial, and makes each call through the runtime's
// entersyscall, which wakes sysmon in a process that was idle a moment
// before (see rawio_linux.go); a proxy dials once per login. A connect on
// loopback is done before the poll that follows it, so that one costs no
// wait at all; one still in progress is waited for in the runtime's
// poller, within ctx's deadline.
//
// The socket stays out of the runtime's poller until it has to wait
// (dialedSocket): a tcp frontend's server socket, given its PROXY header
// and handed to the relay, never enters it.
//
// Addresses with a zone are left to net.Dialer (errUseNetDialer).
func dialSocket(ctx context.Context, ap netip.AddrPort) (socket, error) {
	addr := ap.Addr()
	if addr.Zone() != "" {
		return nil, errUseNetDialer
	}
	family := unix.AF_INET6
	if addr.Unmap().Is4() {
		family, addr = unix.AF_INET, addr.Unmap()
	}
	opErr := func(op string, err error) error {
		return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: os.NewSyscallError(op, err)}
	}
	fd, err := sysSocket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, opErr("socket", err)
	}
	if err := sysSetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		sysClose(fd)
		return nil, opErr("setsockopt", err)
	}
	switch err := connectTo(fd, family, addr, ap.Port()); err {
	case nil, unix.EINPROGRESS, unix.EALREADY, unix.EINTR:
	default:
		sysClose(fd)
		return nil, opErr("connect", err)
	}
	s := &dialedSocket{fd: fd, remote: net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, ap.Port()))}
	done, cerr := connectDone(fd)
	switch {
	case !done:
		s.mu.Lock()
		f, raw := s.registerLocked()
		s.mu.Unlock()
		cerr = waitConnected(ctx, f, raw)
	case cerr == nil && ctx.Err() != nil:
		cerr = ctx.Err() // as net.Dialer: a dial whose ctx ended fails
	}
	if cerr != nil {
		s.Close()
		if e, ok := cerr.(syscall.Errno); ok {
			return nil, opErr("connect", e)
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: cerr}
	}
	return s, nil
}

// connectDone polls fd's connect without waiting: done with the connect's
// error (nil: connected, else a syscall.Errno), or not done yet.
func connectDone(fd int) (bool, error) {
	ready, err := sysWritable(fd)
	switch {
	case err == unix.EINTR:
		return false, nil
	case err != nil:
		return true, err
	case !ready:
		return false, nil // still connecting
	}
	n, err := sysGetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	switch {
	case err != nil:
		return true, err
	case n != 0:
		return true, syscall.Errno(n)
	}
	return true, nil
}

// connectTo starts the connect of fd to addr:port.
func connectTo(fd, family int, addr netip.Addr, port uint16) error {
	if family == unix.AF_INET {
		sa := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: addr.As4()}
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], port)
		return sysConnect(fd, unsafe.Pointer(&sa), unsafe.Sizeof(sa))
	}
	sa := unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: addr.As16()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], port)
	return sysConnect(fd, unsafe.Pointer(&sa), unsafe.Sizeof(sa))
}

// waitConnected waits until the connect in progress on f is done, within
// ctx: nil once connected, else the connect's error (a syscall.Errno), a
// timeout or ctx's error.
func waitConnected(ctx context.Context, f *os.File, raw syscall.RawConn) error {
	if ctx.Done() != nil {
		if deadline, ok := ctx.Deadline(); ok {
			f.SetWriteDeadline(deadline)
		}
		stop := context.AfterFunc(ctx, func() { f.SetWriteDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	var cerr error
	err := raw.Write(func(fd uintptr) bool {
		done, err := connectDone(int(fd))
		cerr = err
		return done // not done: wait in the poller
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if dl, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl) {
			return context.DeadlineExceeded // the poller's timer fired before ctx's
		}
		return err
	}
	if cerr != nil {
		return cerr
	}
	if ctx.Err() != nil {
		// Cancelled just as the connect finished: the deadline set by
		// AfterFunc would poison the connection.
		return ctx.Err()
	}
	f.SetWriteDeadline(time.Time{})
	return nil
}

// dialedSocket is a connected TCP socket that dialSocket opened, with the
// net.Conn methods (and CloseWrite, SyscallConn) the engine uses.
//
// It starts outside the runtime's poller: reads and writes are raw system
// calls on the non-blocking descriptor, made under mu, so that a Close
// never frees a descriptor number while a call is using it. The first call
// that has to wait (EAGAIN) moves the descriptor into the poller as an
// *os.File (registerLocked), with the deadlines set so far; from then on
// the File does the waiting, the deadlines and the reference counting, as
// for any net.Conn. A socket handed to the relay before that (a tcp
// frontend's server, given its PROXY header and nothing read) is taken as
// it is (takeFD): no dup, no deregistration, and no close through the
// runtime, whose entersyscall would wake sysmon (rawio_linux.go).
type dialedSocket struct {
	remote net.Addr

	// rmu and wmu hold a Read or a Write for its whole length, as a
	// net.TCPConn does: two writes never interleave their bytes.
	rmu, wmu sync.Mutex

	mu     sync.Mutex
	fd     int             // while unregistered; -1 once closed or taken
	file   *os.File        // set once registered; owns the descriptor then
	raw    syscall.RawConn // file's
	rd, wd time.Time       // deadlines while unregistered
	closed atomic.Bool     // Close was called, or the descriptor taken
}

// registerLocked moves the descriptor into the runtime's poller, once, and
// returns its File and RawConn. s.mu is held.
func (s *dialedSocket) registerLocked() (*os.File, syscall.RawConn) {
	if s.file == nil {
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
func (s *dialedSocket) takeFD() (fd int, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file != nil || s.fd < 0 {
		return -1, false
	}
	fd, s.fd = s.fd, -1
	s.closed.Store(true)
	return fd, true
}

// pastDeadline reports whether deadline t is set and passed: an operation
// then fails at once, as on a net.Conn, even with bytes waiting.
func pastDeadline(t time.Time) bool { return !t.IsZero() && !time.Now().Before(t) }

// do runs f, RawConn style, for a read (write false) or a write: on the
// raw descriptor while unregistered; when f asks to wait, or once
// registered, through the File's RawConn.
func (s *dialedSocket) do(write bool, f func(uintptr) bool) error {
	if write {
		s.wmu.Lock()
		defer s.wmu.Unlock()
	} else {
		s.rmu.Lock()
		defer s.rmu.Unlock()
	}
	s.mu.Lock()
	if s.file == nil {
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
		s.registerLocked()
	}
	raw := s.raw
	s.mu.Unlock()
	if write {
		return s.mapErr(raw.Write(f))
	}
	return s.mapErr(raw.Read(f))
}

// control runs f on the descriptor, not waiting (RawConn.Control).
func (s *dialedSocket) control(f func(uintptr)) error {
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
func (s *dialedSocket) Read(p []byte) (int, error) {
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

func (s *dialedSocket) Write(p []byte) (int, error) {
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

func (s *dialedSocket) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: s.LocalAddr(), Addr: s.remote, Err: err}
}

func (s *dialedSocket) RemoteAddr() net.Addr { return s.remote }

// LocalAddr asks the kernel (getsockname): only error messages want it.
func (s *dialedSocket) LocalAddr() net.Addr {
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

func (s *dialedSocket) SetDeadline(t time.Time) error {
	if err := s.SetReadDeadline(t); err != nil {
		return err
	}
	return s.SetWriteDeadline(t)
}

func (s *dialedSocket) SetReadDeadline(t time.Time) error { return s.setDeadline(&s.rd, t, false) }

func (s *dialedSocket) SetWriteDeadline(t time.Time) error { return s.setDeadline(&s.wd, t, true) }

func (s *dialedSocket) setDeadline(d *time.Time, t time.Time, write bool) error {
	s.mu.Lock()
	if s.file == nil {
		defer s.mu.Unlock()
		if s.fd < 0 {
			return net.ErrClosed
		}
		*d = t
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
// it: they hold mu), or the File, which waits for its calls.
func (s *dialedSocket) Close() error {
	s.mu.Lock()
	if s.closed.Swap(true) && s.file == nil {
		s.mu.Unlock()
		return net.ErrClosed
	}
	if s.file == nil {
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
func (s *dialedSocket) CloseWrite() error {
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
func (s *dialedSocket) SyscallConn() (syscall.RawConn, error) { return lazyRaw{s}, nil }

func (s *dialedSocket) mapErr(err error) error {
	if err != nil && s.closed.Load() {
		return net.ErrClosed
	}
	return err
}

type lazyRaw struct{ s *dialedSocket }

func (c lazyRaw) Control(f func(uintptr)) error    { return c.s.control(f) }
func (c lazyRaw) Read(f func(uintptr) bool) error  { return c.s.do(false, f) }
func (c lazyRaw) Write(f func(uintptr) bool) error { return c.s.do(true, f) }
