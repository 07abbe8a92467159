//go:build linux && !race && !msan && !asan

package proxy

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The socket I/O of sessions, on non-blocking descriptors only (the
// runtime's netpoller sockets and the detached relay's), goes to the
// kernel through RawSyscall: such a call never blocks, so it does not need
// the runtime's entersyscall/exitsyscall, which on a process that was
// idle a moment before wakes sysmon from its deep sleep (a futex wake-up)
// and has it poll every 20 µs (nanosleep) until the process is idle
// again. A proxy waits for a peer several times per message; measured
// under the LMTP bench, that was about four futex calls and seven
// nanosleeps per message, the larger part of the CPU maildirector spent
// over HAProxy's. Race, msan and asan builds use the ordinary calls (rawio_race_linux.go):
// their annotations model the synchronisation a socket gives and the bytes
// a read writes.
//
// The rule these calls rely on: every descriptor they are given is in
// non-blocking mode (accept4 and dial set it; a dup shares it). Nothing
// may take a session socket's descriptor with (*os.File).Fd, which would
// set it blocking, and a RawSyscall that blocks holds its thread and the
// garbage collector's stop of the world with it. close(2) ignores
// O_NONBLOCK and waits when SO_LINGER is set with a time: nothing sets it
// on a session's sockets, and nothing may.

func sysRead(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return result(n, e)
}

func sysWrite(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	return result(n, e)
}

func sysSplice(from, to, n int, flags int) (int, error) {
	m, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(from), 0, uintptr(to), 0, uintptr(n), uintptr(flags))
	return result(m, e)
}

func sysRecvPeek(fd int, p []byte) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return result(n, e)
}

func sysEpollWait(epfd int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(unsafe.SliceData(events))), uintptr(len(events)), 0, 0, 0)
	return result(n, e)
}

func result(n uintptr, e syscall.Errno) (int, error) {
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

func sysClose(fd int) error {
	_, _, e := unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
	return errnoErr(e)
}

func sysShutdown(fd, how int) error {
	_, _, e := unix.RawSyscall(unix.SYS_SHUTDOWN, uintptr(fd), uintptr(how), 0)
	return errnoErr(e)
}

func sysEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	return errnoErr(e)
}

func errnoErr(e syscall.Errno) error {
	if e != 0 {
		return e
	}
	return nil
}

func sysSocket(family, typ, proto int) (int, error) {
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), uintptr(typ), uintptr(proto))
	return result(fd, e)
}

// sysConnect starts connect(2) on a non-blocking socket: it never waits.
func sysConnect(fd int, sa unsafe.Pointer, n uintptr) error {
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(sa), n)
	return errnoErr(e)
}

func sysSetsockoptInt(fd, level, opt, v int) error {
	v32 := int32(v)
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v32)), 4, 0)
	return errnoErr(e)
}

func sysGetsockoptInt(fd, level, opt int) (int, error) {
	var v int32
	n := uint32(4)
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&n)), 0)
	return int(v), errnoErr(e)
}

// sysWritable polls fd for writable (or an error) without waiting.
func sysWritable(fd int) (bool, error) {
	pfd := unix.PollFd{Fd: int32(fd), Events: unix.POLLOUT}
	var ts unix.Timespec
	n, _, e := unix.RawSyscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	if e != 0 {
		return false, e
	}
	return n > 0, nil
}

// sysDup duplicates fd (close-on-exec), sharing its open file description
// and so its non-blocking mode.
func sysDup(fd int) (int, error) {
	nfd, _, e := unix.RawSyscall(unix.SYS_FCNTL, uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	return result(nfd, e)
}

// sysAccept4 accepts a connection on the non-blocking listening socket fd
// (EAGAIN when none is waiting); sa and n receive the peer's address.
func sysAccept4(fd int, sa *unix.RawSockaddrAny, n *uint32, flags int) (int, error) {
	nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), uintptr(unsafe.Pointer(sa)), uintptr(unsafe.Pointer(n)), uintptr(flags), 0, 0)
	return result(nfd, e)
}

// sysGetsockname reads fd's local address into sa.
func sysGetsockname(fd int, sa *unix.RawSockaddrAny, n *uint32) error {
	_, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(fd), uintptr(unsafe.Pointer(sa)), uintptr(unsafe.Pointer(n)))
	return errnoErr(e)
}

// sysEnsureNonblock sets O_NONBLOCK on fd if it is not set (fcntl(2)).
func sysEnsureNonblock(fd int) error {
	flags, _, e := unix.RawSyscall(unix.SYS_FCNTL, uintptr(fd), unix.F_GETFL, 0)
	if e != 0 {
		return e
	}
	if flags&unix.O_NONBLOCK != 0 {
		return nil
	}
	_, _, e = unix.RawSyscall(unix.SYS_FCNTL, uintptr(fd), unix.F_SETFL, flags|unix.O_NONBLOCK)
	return errnoErr(e)
}
