package proxy

import (
	"fmt"
	"net"
	"net/netip"
)

// acceptor takes the next connection of a listening socket, with the
// client's address and the address it connected to.
type acceptor interface {
	accept() (sock socket, remote, local netip.AddrPort, err error)
	// close ends a wait in accept, with an error that is net.ErrClosed;
	// the listener itself is closed by its owner.
	close()
}

// netAcceptor accepts through the listener's own Accept: for a listener
// that is not a kernel TCP socket (a test's), and the fallback of
// newAcceptor.
type netAcceptor struct{ ln net.Listener }

func (a netAcceptor) close() {}

func (a netAcceptor) accept() (socket, netip.AddrPort, netip.AddrPort, error) {
	nc, err := a.ln.Accept()
	if err != nil {
		return nil, netip.AddrPort{}, netip.AddrPort{}, err
	}
	s, ok := nc.(socket)
	if !ok {
		nc.Close()
		return nil, netip.AddrPort{}, netip.AddrPort{}, fmt.Errorf("accept on %s: a %T is not a TCP connection", a.ln.Addr(), nc)
	}
	return s, addrPort(nc.RemoteAddr()), addrPort(nc.LocalAddr()), nil
}
