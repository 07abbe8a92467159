package proxy

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

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

// Lingering close bounds: how long and how much the proxy reads and drops
// after its last reply when it ends a session the client is still writing
// to.
const (
	lingerTimeout = time.Second
	lingerMax     = 64 << 10
)

// lingerClose sends FIN after the proxy's last reply and, if the client's
// input is waiting unread, reads and drops it until the client closes too,
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
	io.CopyN(io.Discard, s.TCPConn, lingerMax)
}

// pendingInput reports whether the kernel holds input from the client that
// nobody read (SIOCINQ, tcp(7)).
func (s *sockConn) pendingInput() bool {
	n := 0
	s.raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n > 0
}
