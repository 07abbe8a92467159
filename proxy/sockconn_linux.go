package proxy

import (
	"io"
	"net"
	"os"
	"syscall"
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
