package proxy

import (
	"context"
	"net"
)

// TCP keepalive is off on both legs of a session, as in HAProxy without
// option clitcpka/srvtcpka: Go turns it on for every accepted and dialled
// connection (four setsockopt calls each, then a probe every 15 s on every
// idle connection), while an idle session here ends by timeouts.idle and a
// dead peer shows at the next write.

// Listen opens a listening socket whose accepted connections have no TCP
// keepalive. It is the engine's default [Options.Listen].
func Listen(network, address string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), network, address)
}

// NoKeepAlive turns TCP keepalive off on the connections ln accepts, for a
// listening socket the process did not open itself (systemd's, or one an
// upgrade handed over), which Go sets up with keepalive on. Other
// listeners are returned as they are.
func NoKeepAlive(ln net.Listener) net.Listener {
	if tl, ok := ln.(*net.TCPListener); ok {
		return keepAliveOff{tl}
	}
	return ln
}

// keepAliveOff is a TCP listener whose connections have keepalive off. It
// keeps the *net.TCPListener's methods (SyscallConn for an upgrade).
type keepAliveOff struct{ *net.TCPListener }

func (l keepAliveOff) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	c.SetKeepAlive(false)
	return c, nil
}
