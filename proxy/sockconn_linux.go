package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// read is net.TCPConn's Read through sysRead (rawio_linux.go). With wait
// it waits in the runtime's netpoller, within the read deadline, until the
// kernel has bytes or the peer's EOF; without, it returns at once, and
// os.ErrDeadlineExceeded when the kernel has nothing (see [wouldBlock]).
func (s *sockConn) read(p []byte, wait bool) (n int, err error) {
	if len(p) == 0 {
		return 0, nil
	}
	var sysErr error
	cerr := s.raw.Read(func(fd uintptr) bool {
		for {
			n, sysErr = sysRead(int(fd), p)
			switch {
			case sysErr == syscall.EINTR:
				continue
			case sysErr == syscall.EAGAIN && wait:
				return false
			}
			return true
		}
	})
	switch {
	case cerr != nil:
		return 0, s.opError("read", cerr)
	case sysErr == syscall.EAGAIN:
		return 0, os.ErrDeadlineExceeded
	case sysErr != nil:
		return 0, s.opError("read", os.NewSyscallError("read", sysErr))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write is net.TCPConn's Write through sysWrite (rawio_linux.go): all of
// p, waiting in the runtime's netpoller, within the write deadline,
// while the socket's buffer is full.
func (s *sockConn) Write(p []byte) (n int, err error) {
	if len(p) == 0 {
		return 0, nil
	}
	var sysErr error
	cerr := s.raw.Write(func(fd uintptr) bool {
		var wait bool
		wait, sysErr = writeSome(int(fd), p, &n)
		return !wait
	})
	switch {
	case cerr != nil:
		return n, s.opError("write", cerr)
	case sysErr == io.ErrUnexpectedEOF:
		return n, s.opError("write", sysErr)
	case sysErr != nil:
		return n, s.opError("write", os.NewSyscallError("write", sysErr))
	}
	return n, nil
}

// writeSome writes p[*n:] to the non-blocking fd, advancing *n, until all
// of p is written, the socket's buffer is full (wait: the caller waits
// for writable and calls again) or an error (io.ErrUnexpectedEOF for a
// write of nothing, which a socket never does; internal/poll says the
// same).
func writeSome(fd int, p []byte, n *int) (wait bool, err error) {
	for *n < len(p) {
		m, err := sysWrite(fd, p[*n:])
		switch err {
		case nil:
			if m == 0 {
				return false, io.ErrUnexpectedEOF
			}
			*n += m
		case syscall.EINTR:
		case syscall.EAGAIN:
			return true, nil
		default:
			return false, err
		}
	}
	return false, nil
}

// opError wraps err as the net package does for a TCP connection's
// errors, so that callers see the same errors either way. RawConn's own
// errors are already wrapped (as "raw-read" or "raw-write"): their cause
// is taken out.
func (s *sockConn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
}

// Lingering close bounds: how long and how much the proxy reads and drops
// after its last reply when it ends a session the client is still writing
// to.
var (
	lingerTimeout = time.Second // a variable for the tests
	lingerMax     = int64(64 << 10)
)

// lingerClose sends FIN after the proxy's last reply and, if the client's
// input is waiting unread (bytes still on the way when it looks are not
// seen: their arrival after the close may still draw a RST), reads and
// drops it until the client closes too,
// lingerTimeout passes or lingerMax bytes were dropped. Closing a socket
// with unread input makes the kernel send RST instead of FIN (RFC 1122
// 4.2.2.13), and a client that receives the RST may lose the final reply
// (an IMAP BYE) or see a reset instead of the end of the stream: lingering
// is how HAProxy and nginx avoid it. A socket with nothing unread closes at
// once, so a client refused before it sent anything costs no wait. The
// caller closes the socket afterwards.
func (s *sockConn) lingerClose() {
	if !s.pendingInput() || s.CloseWrite() != nil {
		return
	}
	s.nonblock.Store(false)
	s.SetReadDeadline(time.Now().Add(lingerTimeout))
	io.CopyN(io.Discard, s.socket, lingerMax)
}

// nonBlocking reports whether the socket's descriptor is in non-blocking
// mode (fcntl F_GETFL), which the raw calls need.
func (s *sockConn) nonBlocking() bool {
	flags := 0
	var err error
	s.raw.Control(func(fd uintptr) { flags, err = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	return err == nil && flags&unix.O_NONBLOCK != 0
}

// pendingInput reports whether the kernel holds input from the client that
// nobody read (SIOCINQ, tcp(7)).
func (s *sockConn) pendingInput() bool {
	n := 0
	s.raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n > 0
}

// Quiet reports whether the socket under c has nothing waiting to be read,
// neither bytes nor the peer's close: recv(2) with MSG_PEEK|MSG_DONTWAIT
// asks the kernel, where a read deadline in the past would have the
// runtime report a timeout without asking. ok is false when c is not a
// socket.
func Quiet(c net.Conn) (quiet, ok bool) {
	conn, isSock := c.(syscall.Conn)
	if !isSock {
		return false, false
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return false, true
	}
	var rerr error
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		for {
			_, rerr = sysRecvPeek(int(fd), b[:])
			if rerr != syscall.EINTR {
				return true
			}
		}
	})
	return err == nil && rerr == syscall.EAGAIN, true
}
