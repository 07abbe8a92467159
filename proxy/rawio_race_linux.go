//go:build linux && (race || msan || asan)

package proxy

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Race, msan and asan builds: the ordinary system calls, whose annotations
// model the synchronisation a socket gives and the bytes a read writes (see
// rawio_linux.go).

func sysRead(fd int, p []byte) (int, error)  { return noNeg(unix.Read(fd, p)) }
func sysWrite(fd int, p []byte) (int, error) { return noNeg(unix.Write(fd, p)) }

func sysSplice(from, to, n int, flags int) (int, error) {
	m, err := unix.Splice(from, nil, to, nil, n, flags)
	return noNeg(int(m), err)
}

func sysRecvPeek(fd int, p []byte) (int, error) {
	n, _, err := unix.Recvfrom(fd, p, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return noNeg(n, err)
}

func sysEpollWait(epfd int, events []unix.EpollEvent) (int, error) {
	return noNeg(unix.EpollWait(epfd, events, 0))
}

func noNeg(n int, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	return n, nil
}

func sysClose(fd int) error         { return unix.Close(fd) }
func sysShutdown(fd, how int) error { return unix.Shutdown(fd, how) }

func sysEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	return unix.EpollCtl(epfd, op, fd, ev)
}

func sysSocket(family, typ, proto int) (int, error) { return unix.Socket(family, typ, proto) }

func sysConnect(fd int, sa unsafe.Pointer, n uintptr) error {
	_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(sa), n)
	if e != 0 {
		return e
	}
	return nil
}

func sysSetsockoptInt(fd, level, opt, v int) error { return unix.SetsockoptInt(fd, level, opt, v) }

func sysGetsockoptInt(fd, level, opt int) (int, error) { return unix.GetsockoptInt(fd, level, opt) }

func sysWritable(fd int) (bool, error) {
	n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}, 0)
	return n > 0, err
}

func sysDup(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0) }

func sysAccept4(fd int, sa *unix.RawSockaddrAny, n *uint32, flags int) (int, error) {
	nfd, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(sa)), uintptr(unsafe.Pointer(n)), uintptr(flags), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(nfd), nil
}

func sysGetsockname(fd int, sa *unix.RawSockaddrAny, n *uint32) error {
	_, _, e := unix.Syscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(sa)), uintptr(unsafe.Pointer(n)))
	if e != 0 {
		return e
	}
	return nil
}

func sysEnsureNonblock(fd int) error { return unix.SetNonblock(fd, true) }
