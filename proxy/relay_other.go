//go:build !linux

package proxy

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// maildirector runs on Linux only: the relay is built on epoll(7) and
// splice(2) (relay_linux.go, relay_raw_linux.go), which is what keeps an idle
// relayed session at two descriptors and no goroutine. There is no relay for
// other systems, so building for one fails here, on purpose, with
// "undefined: maildirector_requires_linux".
var _ = maildirector_requires_linux

// The declarations below keep that the only error a build reports.

type relay struct{}

func newRelay(*Server) *relay      { return &relay{} }
func (*relay) add(*Conn, leg, leg) {}
func (*relay) stop(*Conn, string)  {}
func (*relay) close()              {}

func (*relay) endPaused(time.Time) int { return 0 }

func (*sockConn) read([]byte, bool) (int, error) { return 0, nil }
func (*sockConn) lingerClose()                   {}
func (*sockConn) pendingInput() bool             { return false }
func (*sockConn) nonBlocking() bool              { return false }

func dialSocket(context.Context, netip.AddrPort) (socket, error) { return nil, errUseNetDialer }

// Quiet is the Linux-only check in sockconn_linux.go.
func Quiet(net.Conn) (quiet, ok bool) { return false, false }

func newAcceptor(ln net.Listener) acceptor { return netAcceptor{ln} }

func parkIn(socket, *relay) {}
