package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/maildirector/maildirector/tlsutil"
)

// ErrLocalResource marks a dial that failed for want of this host's
// resources, not the server's: out of descriptors (EMFILE, ENFILE) or
// kernel memory (ENOBUFS, ENOMEM) when opening the socket. It never counts
// against a server's health, and every other server would fail the same
// way, so [Conn.Connect] answers [ErrUnavailable] at once.
var ErrLocalResource = errors.New("local resources exhausted")

// IsLocalResource reports whether err is one of this host's resource
// limits (socket(2) and connect(2) errors, wrapped by net as
// *net.OpError and *os.SyscallError): [ErrLocalResource]'s causes, for a
// frontend that dials by itself (protocols/http's connection pool).
func IsLocalResource(err error) bool { return isLocalResource(err) }

func isLocalResource(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// dialTCP opens the TCP connection of [Conn.Dial]; tests replace it to
// inject errors the kernel will not produce on demand.
//
// Both ways connect without a local address, so connect(2) picks the
// source port per destination. (Dialer.DialTCP with a zero local AddrPort
// binds to 0.0.0.0:0 first, and a port bound that way is this socket's
// alone: all connections to all servers would share one ephemeral range,
// about 28,000 on Linux's default, instead of one range per server.)
var dialTCP = func(ctx context.Context, address string) (net.Conn, error) {
	if ap, err := netip.ParseAddrPort(address); err == nil {
		// An address (servers are usually given so): dialled with raw
		// system calls (dial_linux.go).
		if s, err := dialSocket(ctx, ap); err != errUseNetDialer {
			return s, err
		}
	}
	d := net.Dialer{KeepAlive: -1} // see [Listen]
	return d.DialContext(ctx, "tcp", address)
}

// parkingKey names, in a dial's context, the relay whose epoll set a raw
// dial's socket waits in (park_linux.go), its connect included.
type parkingKey struct{}

// errUseNetDialer: dialSocket leaves this address to net.Dialer.
var errUseNetDialer = errors.New("use net.Dialer")

// Dial connects to t for this session: TCP connect, the PROXY header t asks
// for, then TLS when t.TLS is set, all within the frontend's connect timeout.
// Errors are server failures ([ErrServerFailed]): the caller may try the
// next server; except a local resource limit ([ErrLocalResource]), which is
// no fault of the server's. The returned conn is what [Conn.Relay] takes.
func (c *Conn) Dial(ctx context.Context, t Target) (net.Conn, error) {
	if d := c.fe.Timeouts.connect(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	if c.srv != nil {
		ctx = context.WithValue(ctx, parkingKey{}, c.srv.relay)
	}
	nc, err := dialTCP(ctx, t.Address)
	if err != nil {
		err = fmt.Errorf("dial %s (%s): %w", t.Server, t.Address, err)
		if isLocalResource(err) {
			return nil, fmt.Errorf("%w: %w", ErrLocalResource, err)
		}
		return nil, ServerFailure(err)
	}
	sock, err := newSockConn(nc.(socket))
	if err != nil {
		nc.Close()
		return nil, ServerFailure(err)
	}
	if deadline, ok := ctx.Deadline(); ok {
		sock.SetDeadline(deadline)
	}
	if h := c.proxyHeader(t.Proxy); h != nil {
		if _, err := h.WriteTo(sock); err != nil {
			sock.Close()
			return nil, ServerFailure(fmt.Errorf("send PROXY header to %s: %w", t.Server, err))
		}
	}
	var conn net.Conn = sock
	if t.TLS != nil {
		tc := tls.Client(sock, t.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			sock.Close()
			return nil, ServerFailure(fmt.Errorf("tls to %s: %w", t.Server, err))
		}
		conn = tc
	}
	sock.SetDeadline(deadlineFor(c.fe.Timeouts.serverLogin()))
	return conn, nil
}

// proxyHeader builds the header for mode, or nil for ProxyNone.
//
// For ProxyV2SSL it follows HAProxy's send-proxy-v2-ssl as Dovecot reads it:
// a PP2_TYPE_SSL TLV only when the client really used TLS (Dovecot then
// treats the session as secured), with the client bit set, a non-zero verify
// field (no client certificate was verified) and the TLS version sub-TLV;
// the SNI name, if any, as PP2_TYPE_AUTHORITY (Dovecot's local_name). The
// client's ALPN is never forwarded: Dovecot drops a connection whose ALPN TLV
// differs from the service's protocol.
func (c *Conn) proxyHeader(mode ProxyMode) *proxyproto.Header {
	if mode == ProxyNone {
		return nil
	}
	version := byte(2)
	if mode == ProxyV1 {
		version = 1
	}
	src := net.TCPAddrFromAddrPort(c.remote)
	dst := net.TCPAddrFromAddrPort(c.local)
	h := proxyproto.HeaderProxyFromAddrs(version, src, dst)
	if mode != ProxyV2SSL || c.tlsConn == nil {
		return h
	}
	st := c.tlsConn.ConnectionState()
	ssl := tlvparse.PP2SSL{
		Client: tlvparse.PP2_BITFIELD_CLIENT_SSL,
		Verify: 1,
		TLV: []proxyproto.TLV{
			{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte(tlsutil.VersionName(st.Version))},
			{Type: proxyproto.PP2_SUBTYPE_SSL_CIPHER, Value: []byte(tls.CipherSuiteName(st.CipherSuite))},
		},
	}
	tlv, err := ssl.Marshal()
	if err != nil {
		return h
	}
	tlvs := []proxyproto.TLV{tlv}
	if st.ServerName != "" {
		tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte(st.ServerName)})
	}
	if err := h.SetTLVs(tlvs); err != nil {
		return proxyproto.HeaderProxyFromAddrs(version, src, dst)
	}
	return h
}
