package tlsutil

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"
)

// DefaultHandshakeTimeout bounds a TLS handshake when Handshake is given no
// timeout. A client that opens a connection and stalls the handshake holds a
// file descriptor and a goroutine; ten seconds is ample on any real network.
const DefaultHandshakeTimeout = 10 * time.Second

// Handshake runs the TLS handshake on conn (server or client side) with a
// deadline: the earlier of now+timeout and ctx's deadline. Zero or negative
// timeout means DefaultHandshakeTimeout. If ctx is canceled during the
// handshake, crypto/tls closes the underlying connection.
//
// On success the deadline is cleared, so the caller's own phase deadlines
// start from a clean connection. On failure the deadline is left as is: the
// caller is expected to close conn.
func Handshake(ctx context.Context, conn *tls.Conn, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return fmt.Errorf("set tls handshake deadline: %w", err)
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("clear tls handshake deadline: %w", err)
	}
	return nil
}
