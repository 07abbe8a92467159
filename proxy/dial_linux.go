package proxy

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
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
// wait at all; one still in progress is waited for within ctx's deadline
// as the socket's later waits are (lazySocket.waitConnected).
//
// The socket stays out of the runtime's poller (lazySocket): it parks in
// the relay's epoll set named by ctx (parkingKey) when it has to wait, and
// the relay takes it as it is.
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
	s := &lazySocket{fd: fd, remote: net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, ap.Port()))}
	if r, ok := ctx.Value(parkingKey{}).(*relay); ok {
		s.relay = r
	}
	done, cerr := connectDone(fd)
	switch {
	case !done:
		cerr = s.waitConnected(ctx)
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

// waitConnected waits until the connect in progress is done, within ctx:
// nil once connected, else the connect's error (a syscall.Errno), a
// timeout or ctx's error. It waits as the socket's other calls do: parked
// in the relay's epoll set when the dial's ctx names one (a server across
// a network, whose connect never finishes at once), so that the relay can
// take the socket as it is; else in the runtime's poller.
func (s *lazySocket) waitConnected(ctx context.Context) error {
	if ctx.Done() != nil {
		// ctx's end, by its deadline or a cancel, ends the wait.
		stop := context.AfterFunc(ctx, func() { s.SetWriteDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	var cerr error
	err := s.do(true, func(fd uintptr) bool {
		done, err := connectDone(int(fd))
		cerr = err
		return done // not done: wait for writable
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
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
	s.SetWriteDeadline(time.Time{})
	return nil
}
