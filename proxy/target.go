package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net/netip"
)

// ProxyMode says which PROXY protocol header, if any, opens a connection to a
// server (HAProxy's send-proxy, send-proxy-v2 and send-proxy-v2-ssl).
type ProxyMode int

const (
	ProxyNone ProxyMode = iota
	ProxyV1
	ProxyV2
	// ProxyV2SSL adds the PP2_TYPE_SSL TLV describing the client's TLS
	// session, and the SNI name as PP2_TYPE_AUTHORITY.
	ProxyV2SSL
)

// ParseProxyMode parses the config spelling: none, v1, v2, v2-ssl.
func ParseProxyMode(s string) (ProxyMode, error) {
	switch s {
	case "", "none":
		return ProxyNone, nil
	case "v1":
		return ProxyV1, nil
	case "v2":
		return ProxyV2, nil
	case "v2-ssl":
		return ProxyV2SSL, nil
	}
	return ProxyNone, fmt.Errorf("unknown PROXY mode %q (want none, v1, v2 or v2-ssl)", s)
}

func (m ProxyMode) String() string {
	switch m {
	case ProxyV1:
		return "v1"
	case ProxyV2:
		return "v2"
	case ProxyV2SSL:
		return "v2-ssl"
	}
	return "none"
}

// Target is one server a session may be sent to, as the frontend dials it.
type Target struct {
	// Backend names the server's backend: one frontend may send sessions
	// to several (routing rules), whose servers may share a name. Empty
	// for a picker without backends (tests).
	Backend string
	Server  string      // server name, for logs; unique within Backend
	Address string      // host:port
	Proxy   ProxyMode   // header sent before anything else
	TLS     *tls.Config // nil: plaintext to the server
}

// Name is the server's name as logs and statistics show it: "BACKEND/SERVER",
// or the server's name alone when Target has no backend.
func (t Target) Name() string {
	if t.Backend == "" {
		return t.Server
	}
	return t.Backend + "/" + t.Server
}

// PickRequest is what a picker may route a session by: who logs in, from
// where, to which of maildirector's addresses, under which TLS name.
type PickRequest struct {
	// User is the login name or LMTP recipient, as the client sent it;
	// empty for protocols without one (tcp, http).
	User string
	// Client is the real client: from a trusted PROXY header, else the
	// socket's peer.
	Client netip.AddrPort
	// Local is the address the client connected to: the PROXY header's
	// destination when a trusted one came, else the socket's own address.
	Local netip.AddrPort
	// SNI is the server name the client asked for in its TLS ClientHello
	// (implicit TLS or STARTTLS), lower-cased; empty without TLS or SNI.
	SNI string
	// Exclude names the servers already tried for this login, by
	// Target.Server: the picker must not offer them again.
	Exclude []string
}

// Picker chooses servers. It is implemented outside this package (cmd wires
// the director to it), so the engine never depends on the director.
type Picker interface {
	// Pick returns a lease on one usable server for req.User (which may be
	// empty for balance algorithms that need none), skipping the servers
	// named in req.Exclude.
	Pick(ctx context.Context, req PickRequest) (Lease, error)
}

// Lease is one session's claim on a server.
type Lease interface {
	Target() Target
	// User is the routing key the picker used: the user name as it
	// normalised it (Dovecot's lookup name); "" when it used none.
	User() string
	// Established reports that the session is established: the server
	// accepted the login (or the LMTP recipient). The server answered, so
	// its failure counter restarts (passive health), and the user is
	// pinned to it (a sticky assignment).
	Established()
	// Answered reports that the server answered but did not accept (a
	// rejected password, a temporary refusal, an unknown recipient): it
	// resets the failure counter only, so refused users pin nothing.
	Answered()
	// Failed reports that the server failed before the session could start
	// and releases the lease.
	Failed(err error)
	// Release ends the claim when the session ends. Extra calls are no-ops.
	Release()
}

// Limit resolves a count option by the rule every Options struct of the
// project follows: zero is the documented default def, a negative value
// means no limit (math.MaxInt), anything else is itself.
func Limit(v, def int) int {
	switch {
	case v < 0:
		return math.MaxInt
	case v == 0:
		return def
	}
	return v
}

// ErrServerFailed marks an error as the server's fault (dial refused, no
// greeting, dropped before answering the login): the caller may try the
// next server. Wrap it with [ServerFailure].
var ErrServerFailed = errors.New("server failed")

// ServerFailure wraps err so that errors.Is(err, ErrServerFailed) holds.
func ServerFailure(err error) error {
	if err == nil || errors.Is(err, ErrServerFailed) {
		return err
	}
	return &serverFailure{err}
}

type serverFailure struct{ err error }

func (e *serverFailure) Error() string   { return e.err.Error() }
func (e *serverFailure) Unwrap() []error { return []error{e.err, ErrServerFailed} }

// ErrServerBusy marks a server's temporary refusal of a login (POP3
// -ERR [SYS/TEMP], an SMTP 4xx to AUTH): the next server is tried, but the
// server is not counted as failing. When the cause is shared (an LDAP
// outage makes every server answer so), passive health must not take the
// whole fleet down. Wrap it with [ServerBusy].
var ErrServerBusy = errors.New("server busy")

// ServerBusy wraps err so that errors.Is(err, ErrServerBusy) holds.
func ServerBusy(err error) error {
	if err == nil || errors.Is(err, ErrServerBusy) {
		return err
	}
	return &serverBusy{err}
}

type serverBusy struct{ err error }

func (e *serverBusy) Error() string   { return e.err.Error() }
func (e *serverBusy) Unwrap() []error { return []error{e.err, ErrServerBusy} }
