package proxy

import (
	"net"
	"time"
)

// NetConn returns the client connection as a net.Conn, for a frontend that
// hands the whole conversation to a protocol library (LMTP runs go-smtp's
// server on it). Reads go through [Conn.Reader] first, so bytes already
// buffered (read past a PROXY header) are not lost; writes go through
// [Conn.Write]; both are counted in the session's byte counters. Deadlines
// apply to the client socket, TLS or not. RemoteAddr is the real client
// ([Conn.RemoteAddr]). Closing it closes the client connection. Do not mix
// it with [Conn.Relay].
func (c *Conn) NetConn() net.Conn { return clientNetConn{c} }

type clientNetConn struct{ c *Conn }

func (n clientNetConn) Read(p []byte) (int, error) { return n.c.r.Read(p) } // counted by clientReader

func (n clientNetConn) Write(p []byte) (int, error)        { return n.c.Write(p) }
func (n clientNetConn) Close() error                       { return n.c.netConn().Close() }
func (n clientNetConn) LocalAddr() net.Addr                { return net.TCPAddrFromAddrPort(n.c.local) }
func (n clientNetConn) RemoteAddr() net.Addr               { return net.TCPAddrFromAddrPort(n.c.remote) }
func (n clientNetConn) SetDeadline(t time.Time) error      { return n.c.netConn().SetDeadline(t) }
func (n clientNetConn) SetReadDeadline(t time.Time) error  { return n.c.netConn().SetReadDeadline(t) }
func (n clientNetConn) SetWriteDeadline(t time.Time) error { return n.c.netConn().SetWriteDeadline(t) }
