package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
)

// sockConn is a TCP connection that the relay can read without blocking.
//
// In the normal (blocking) mode it is a plain *net.TCPConn with an optional
// prefix of bytes that were already read (a peeked ClientHello behind a
// PROXY header). In non-blocking mode, which only the relay's pump uses, a
// Read returns at once with what the kernel has, or os.ErrDeadlineExceeded
// when it has nothing. crypto/tls treats that error as temporary and keeps
// its state, so a *tls.Conn layered on a sockConn can be drained without a
// goroutine waiting in Read.
type sockConn struct {
	*net.TCPConn
	raw      syscall.RawConn
	prefix   []byte
	nonblock atomic.Bool
}

func newSockConn(c *net.TCPConn) (*sockConn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &sockConn{TCPConn: c, raw: raw}, nil
}

func (s *sockConn) Read(p []byte) (int, error) {
	if len(s.prefix) > 0 {
		n := copy(p, s.prefix)
		s.prefix = s.prefix[n:]
		return n, nil
	}
	if !s.nonblock.Load() {
		return s.TCPConn.Read(p)
	}
	return s.readNow(p)
}

// readNow reads what the kernel has without waiting.
func (s *sockConn) readNow(p []byte) (n int, err error) {
	var sysErr error
	cerr := s.raw.Read(func(fd uintptr) bool {
		for {
			n, sysErr = syscall.Read(int(fd), p)
			if sysErr != syscall.EINTR {
				return true
			}
		}
	})
	switch {
	case cerr != nil:
		return 0, cerr
	case sysErr == syscall.EAGAIN:
		return 0, os.ErrDeadlineExceeded
	case sysErr != nil:
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", sysErr)}
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// wouldBlock reports whether err is the non-blocking "nothing to read now".
func wouldBlock(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
