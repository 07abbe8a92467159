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
// In the normal (blocking) mode it is a plain TCP socket with an optional
// prefix of bytes that were already read (a peeked ClientHello behind a
// PROXY header). In non-blocking mode, which only the relay's pump uses, a
// Read returns at once with what the kernel has, or os.ErrDeadlineExceeded
// when it has nothing. crypto/tls treats that error as temporary and keeps
// its state, so a *tls.Conn layered on a sockConn can be drained without a
// goroutine waiting in Read.
type sockConn struct {
	socket
	raw      syscall.RawConn
	prefix   []byte
	nonblock atomic.Bool
}

// socket is what a sockConn is built on: a lazySocket (accepted by
// accept_linux.go or dialled by dial_linux.go), or a *net.TCPConn (a
// listener that is not a kernel socket, a server dialled by name).
type socket interface {
	net.Conn
	CloseWrite() error
	SyscallConn() (syscall.RawConn, error)
}

func newSockConn(c socket) (*sockConn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &sockConn{socket: c, raw: raw}, nil
}

func (s *sockConn) Read(p []byte) (int, error) {
	if len(s.prefix) > 0 {
		n := copy(p, s.prefix)
		s.prefix = s.prefix[n:]
		return n, nil
	}
	return s.read(p, !s.nonblock.Load())
}

// wouldBlock reports whether err is the non-blocking "nothing to read now".
func wouldBlock(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// SocketConn returns c as the engine's own sessions use their sockets: its
// reads and writes go to the kernel without the runtime's system call
// bookkeeping (rawio_linux.go). For a frontend that dials by itself
// (protocols/http's connection pool). c is then owned by the result.
// A c in blocking mode (one whose descriptor someone took with
// (*os.File).Fd) is returned as it is: the raw calls must never block.
func SocketConn(c *net.TCPConn) (net.Conn, error) {
	s, err := newSockConn(c)
	if err != nil {
		return nil, err
	}
	if !s.nonBlocking() {
		return c, nil
	}
	return s, nil
}

// ReadFrom and WriteTo copy through s's own Read and Write: a TCPConn's
// would bypass the prefix, the non-blocking mode and the raw
// calls.
func (s *sockConn) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(struct{ io.Writer }{s}, r)
}

func (s *sockConn) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, struct{ io.Reader }{s})
}
