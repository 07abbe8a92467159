package proxy

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawAcceptor accepts with a raw accept4(2) on the listening socket, and
// gives each connection as a lazySocket: outside the runtime's poller
// until a read or write has to wait. net's Accept costs, per connection,
// its accept4 and a setsockopt(TCP_NODELAY) through the runtime's
// entersyscall (which wakes sysmon in a process idle a moment before, see
// rawio_linux.go), the socket's registration in the runtime's poller, and
// a getsockname; a tcp frontend's client socket then had to be dup'd out
// of the poller for the relay and closed through the runtime again. Here
// the wait for a connection is still the runtime's (through a duplicate
// of the listening descriptor as an *os.File: a net.Listener's RawConn
// cannot wait, its Read is always EINVAL), the socket options come from the listener, where the kernel
// copies them into every socket it accepts, and the local address is the
// listener's unless it listens on every address.
type rawAcceptor struct {
	ln     net.Listener
	file   *os.File // the duplicate; closed with the listener
	closed atomic.Bool
	raw    syscall.RawConn
	local  netip.AddrPort // the listener's address; zero when it is a wildcard
}

// newAcceptor returns the raw acceptor for the engine's own TCP
// listeners (a *net.TCPListener, or one [NoKeepAlive] wrapped) whose
// options it could set, and net's Accept for any other: another wrapper's
// Accept may do something of its own.
func newAcceptor(ln net.Listener) acceptor {
	var sc syscall.Conn
	switch l := ln.(type) {
	case *net.TCPListener:
		sc = l
	case keepAliveOff:
		sc = l.TCPListener
	default:
		return netAcceptor{ln}
	}
	lraw, err := sc.SyscallConn()
	if err != nil {
		return netAcceptor{ln}
	}
	// Accepted sockets inherit these (tcp(7) and socket(7) options live
	// in the socket the kernel clones from the listener): TCP_NODELAY, as
	// net sets on every connection it accepts, and no keepalive, as
	// keepalive.go explains (a listener from systemd may have it on).
	dup := -1
	var serr error
	transparent := false
	cerr := lraw.Control(func(fd uintptr) {
		// A transparent (TPROXY) listener accepts connections to
		// addresses that are not its own: ask each one's.
		v4, _ := unix.GetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT)
		v6, _ := unix.GetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT)
		transparent = v4 != 0 || v6 != 0
		if serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); serr != nil {
			return
		}
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0); serr != nil {
			return
		}
		dup, serr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil || serr != nil {
		if dup >= 0 {
			unix.Close(dup)
		}
		return netAcceptor{ln}
	}
	// The duplicate shares the listener's non-blocking mode, so the File
	// enters the runtime's poller.
	f := os.NewFile(uintptr(dup), "listener")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return netAcceptor{ln}
	}
	a := &rawAcceptor{ln: ln, file: f, raw: raw}
	if ap := addrPort(ln.Addr()); ap.IsValid() && !ap.Addr().IsUnspecified() && !transparent {
		a.local = ap
	}
	return a
}

func (a *rawAcceptor) close() {
	a.closed.Store(true)
	a.file.Close()
}

func (a *rawAcceptor) accept() (socket, netip.AddrPort, netip.AddrPort, error) {
	var (
		nfd  int
		rsa  unix.RawSockaddrAny
		aerr error
	)
	err := a.raw.Read(func(fd uintptr) bool {
		// accept4 is a raw call, which must never block (it would hold
		// its P and stop every garbage collection): the listening socket
		// is non-blocking unless something outside this process's code
		// made the description it shares blocking ((*os.File).Fd does);
		// then it is made non-blocking again, as net needs it too.
		if aerr = sysEnsureNonblock(int(fd)); aerr != nil {
			return true
		}
		for {
			n := uint32(unix.SizeofSockaddrAny)
			nfd, aerr = sysAccept4(int(fd), &rsa, &n, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
			switch aerr {
			case syscall.EINTR, syscall.ECONNABORTED:
				// A connection reset while in the backlog: take the next
				// (as net's Accept does).
				continue
			case syscall.EAGAIN:
				return false // wait in the runtime's poller
			}
			return true
		}
	})
	if err != nil && a.closed.Load() {
		err = net.ErrClosed // the File says "use of closed file", which no exported error matches
	}
	if err == nil && aerr != nil {
		err = &net.OpError{Op: "accept", Net: "tcp", Addr: a.ln.Addr(), Err: os.NewSyscallError("accept4", aerr)}
	}
	if err != nil {
		return nil, netip.AddrPort{}, netip.AddrPort{}, err
	}
	remote := sockaddrAddrPort(&rsa)
	local := a.local
	if !local.IsValid() {
		n := uint32(unix.SizeofSockaddrAny)
		if err := sysGetsockname(nfd, &rsa, &n); err != nil {
			sysClose(nfd)
			return nil, netip.AddrPort{}, netip.AddrPort{}, &net.OpError{Op: "accept", Net: "tcp", Addr: a.ln.Addr(), Err: os.NewSyscallError("getsockname", err)}
		}
		local = sockaddrAddrPort(&rsa)
	}
	s := &lazySocket{fd: nfd, remote: net.TCPAddrFromAddrPort(remote), local: net.TCPAddrFromAddrPort(local)}
	return s, remote, local, nil
}

// sockaddrAddrPort reads an AF_INET or AF_INET6 address (an IPv4-mapped
// one as IPv4, as addrPort does); anything else is the zero AddrPort.
func sockaddrAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		addr := netip.AddrFrom16(sa.Addr).Unmap()
		if sa.Scope_id != 0 && addr.Is6() {
			zone := strconv.FormatUint(uint64(sa.Scope_id), 10)
			if ifi, err := net.InterfaceByIndex(int(sa.Scope_id)); err == nil {
				zone = ifi.Name
			}
			addr = addr.WithZone(zone)
		}
		return netip.AddrPortFrom(addr, port)
	}
	return netip.AddrPort{}
}
