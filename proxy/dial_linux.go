package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
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
// before (see rawio_linux.go); a proxy dials once per login. The socket
// then waits in the runtime's poller as an *os.File, with deadlines, like
// any net.Conn; a connect still in progress is waited for there, within
// ctx's deadline. A connect on loopback is done before the poll that
// follows it, so that one costs no wait at all.
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
	f := os.NewFile(uintptr(fd), "tcp") // non-blocking: it waits in the runtime's poller
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := waitConnected(ctx, f, raw); err != nil {
		f.Close()
		if e, ok := err.(syscall.Errno); ok {
			return nil, opErr("connect", e)
		}
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: err}
	}
	return &dialedSocket{File: f, raw: raw, remote: net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, ap.Port()))}, nil
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
		ready, err := sysWritable(int(fd))
		switch {
		case err == unix.EINTR:
			return false
		case err != nil:
			cerr = err
			return true
		case !ready:
			return false // still connecting: wait in the poller
		}
		n, err := sysGetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			cerr = err
		case n != 0:
			cerr = syscall.Errno(n)
		}
		return true
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

// dialedSocket is a connected TCP socket that dialSocket opened: an
// *os.File in the runtime's poller (Read, Write, Close, deadlines), with
// the net.Conn methods a File lacks.
type dialedSocket struct {
	*os.File
	raw    syscall.RawConn
	remote net.Addr
	closed atomic.Bool
}

func (s *dialedSocket) RemoteAddr() net.Addr { return s.remote }

// LocalAddr asks the kernel (getsockname): only error messages want it.
func (s *dialedSocket) LocalAddr() net.Addr {
	var sa unix.Sockaddr
	s.raw.Control(func(fd uintptr) { sa, _ = unix.Getsockname(int(fd)) })
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
	case *unix.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
	}
	return &net.TCPAddr{}
}

func (s *dialedSocket) Close() error {
	s.closed.Store(true)
	return s.File.Close()
}

// CloseWrite shuts the sending side down, as (*net.TCPConn).CloseWrite.
func (s *dialedSocket) CloseWrite() error {
	var err error
	if cerr := s.raw.Control(func(fd uintptr) { err = sysShutdown(int(fd), unix.SHUT_WR) }); cerr != nil {
		return s.mapErr(cerr)
	}
	if err != nil {
		return &net.OpError{Op: "close", Net: "tcp", Source: s.LocalAddr(), Addr: s.remote, Err: os.NewSyscallError("shutdown", err)}
	}
	return nil
}

// SyscallConn returns the socket's RawConn, whose errors on a closed
// socket are net.ErrClosed, as a TCPConn's are (an *os.File reports its
// own "use of closed file").
func (s *dialedSocket) SyscallConn() (syscall.RawConn, error) { return closedAsNet{s}, nil }

func (s *dialedSocket) mapErr(err error) error {
	if err != nil && s.closed.Load() {
		return net.ErrClosed
	}
	return err
}

type closedAsNet struct{ s *dialedSocket }

func (c closedAsNet) Control(f func(uintptr)) error    { return c.s.mapErr(c.s.raw.Control(f)) }
func (c closedAsNet) Read(f func(uintptr) bool) error  { return c.s.mapErr(c.s.raw.Read(f)) }
func (c closedAsNet) Write(f func(uintptr) bool) error { return c.s.mapErr(c.s.raw.Write(f)) }
