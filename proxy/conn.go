package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Phase is a stage of a session; each has its own deadline.
type Phase int

const (
	PhaseGreeting  Phase = iota // writing the greeting, reading the first command
	PhasePreAuth                // waiting for the next command before login
	PhaseHandshake              // TLS handshake (implicit TLS or STARTTLS)
	PhaseLogin                  // talking to the server: greeting and replayed login
	PhaseRelay                  // after login: bytes flow both ways
)

// readerSize is the client reader's buffer before login. Pre-auth lines are
// capped by the frontends well below it; after login the reader is dropped.
const readerSize = 4096

// Conn is one client connection and the session on it.
//
// A Handler reads the client through [Conn.Reader] and writes with
// [Conn.Write]. Methods are not safe for concurrent use unless noted; the
// engine itself only touches the connection concurrently to end it.
//
// Its life (new → serving → relaying → closed, the engine's end reason, the
// goodbye) is in lifecycle.go, the only file that changes it.
//
// Lock order, where locks nest: Server.mu, then lazySocket.mu (one
// socket), then relay.mu, then session.mu (one relayed session), then
// Conn.mu; pipePool.mu is a leaf. Take them in that order and never the
// reverse. Today the nestings are lazySocket.mu → relay.mu (a socket
// parking in the relay's epoll set, park_linux.go) and session.mu →
// Conn.mu (a detached session reads the goodbye while its sockets are
// shut); Server.mu is held alone, and no lock is held while a lease is
// released or a blocking write is made.
type Conn struct {
	id      uint64
	session string // see SessionID
	srv     *Server
	fe      *Frontend
	start   time.Time
	remote  netip.AddrPort // the real client (from a trusted PROXY header, else the socket)
	local   netip.AddrPort // the address the client connected to
	sock    *sockConn      // the client socket
	slots   slots          // the maxconn slots this session holds
	tlsConn *tls.Conn      // non-nil once the client is on TLS
	r       *bufio.Reader
	proxied bool // remote came from an inbound PROXY header
	// admitted: the frontend's guard counts this connection against its
	// client (see Limits); finish releases it.
	admitted bool

	bytesIn  atomic.Int64 // client → maildirector
	bytesOut atomic.Int64 // maildirector → client

	mu      sync.Mutex // guards the fields below, read by the registry and the log line
	life    connLife   // see lifecycle.go
	user    string
	lease   Lease
	backend string // of the server(s) below; a comma list for LMTP
	server  string
	tlsVer  uint16        // the client's TLS version, once on TLS
	cipher  uint16        // the client's TLS cipher suite, once on TLS
	connDur time.Duration // dialling the server, TLS to it included
	login   time.Duration // the server's greeting and the replayed login
}

// clientReader reads the client (through TLS once it is on), counting
// what it reads as bytes in: the pre-login commands count as much as the
// relayed bytes do. It is the source of Conn.Reader.
type clientReader struct{ c *Conn }

func (r clientReader) Read(p []byte) (int, error) {
	n, err := r.c.netConn().Read(p)
	r.c.bytesIn.Add(int64(n))
	return n, err
}

// ID is the connection's number, unique in this process.
func (c *Conn) ID() uint64 { return c.id }

// SessionID is the session's id: the process's random prefix, "-", and
// [Conn.ID], e.g. "k3j9x2qa-17"; unique across processes, at most 29
// characters of [a-z2-7] and digits, so it fits Dovecot's session id
// (64 characters at most, LOGIN_MAX_SESSION_ID_LEN) as a bare word. It is
// the "session" of every log line of the connection, what a frontend with
// forward "id" hands the server as its session id (IMAP ID
// x-session-ext-id, POP3 XCLIENT SESSION), and what `ctl show session`
// takes.
func (c *Conn) SessionID() string { return c.session }

// newSessionPrefix returns 8 random characters of lower-case base32
// (RFC 4648 section 6, 40 bits).
func newSessionPrefix() string {
	var b [5]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24)
	return strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

// Logger returns a logger with the connection's attributes (conn,
// frontend, proto, remote), added to each line when it is written rather
// than formatted up front: a session that logs nothing at the configured
// level pays nothing for them. It is built on each call, so that a
// relayed session holds no logger: keep it for the length of a handler.
func (c *Conn) Logger() *slog.Logger {
	return slog.New(connHandler{c.srv.log.Handler(), c})
}

// connHandler puts the connection's attributes first on each record it
// passes on.
type connHandler struct {
	h slog.Handler
	c *Conn
}

func (h connHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.h.Enabled(ctx, l) }

func (h connHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(slog.Uint64("conn", h.c.id), slog.String("session", h.c.session), slog.String("frontend", h.c.fe.Name),
		slog.String("proto", h.c.fe.Protocol), slog.String("remote", h.c.remote.String()))
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(a)
		return true
	})
	return h.h.Handle(ctx, out)
}

func (h connHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return connHandler{h.h.WithAttrs(as), h.c}
}

func (h connHandler) WithGroup(name string) slog.Handler {
	return connHandler{h.h.WithGroup(name), h.c}
}

// Retries is how many other servers this session may be tried on after a
// server fails: the frontend's [Frontend.Retries], resolved.
func (c *Conn) Retries() int { return c.fe.retries() }

// Frontend is the frontend that accepted the connection.
func (c *Conn) Frontend() *Frontend { return c.fe }

// RemoteAddr is the real client: from a trusted PROXY header, else the socket peer.
func (c *Conn) RemoteAddr() netip.AddrPort { return c.remote }

// LocalAddr is the address the client connected to.
func (c *Conn) LocalAddr() netip.AddrPort { return c.local }

// Reader is the buffered client reader. Bytes read ahead of a handoff are
// replayed to the server by [Conn.Relay].
func (c *Conn) Reader() *bufio.Reader { return c.r }

// Write writes to the client.
func (c *Conn) Write(p []byte) (int, error) {
	n, err := c.netConn().Write(p)
	c.bytesOut.Add(int64(n))
	return n, err
}

// WriteString writes s to the client.
func (c *Conn) WriteString(s string) error {
	_, err := c.Write([]byte(s))
	return err
}

func (c *Conn) netConn() net.Conn {
	if c.tlsConn != nil {
		return c.tlsConn
	}
	return c.sock
}

// TLS returns the client's TLS state, or nil if the client is in plaintext.
func (c *Conn) TLS() *tls.ConnectionState {
	if c.tlsConn == nil {
		return nil
	}
	st := c.tlsConn.ConnectionState()
	return &st
}

// IsTLS reports whether the client is on TLS (implicit or after STARTTLS).
func (c *Conn) IsTLS() bool { return c.tlsConn != nil }

// CanStartTLS reports whether the frontend has certificates for STARTTLS and
// the client is not on TLS yet.
func (c *Conn) CanStartTLS() bool { return c.fe.TLS != nil && c.tlsConn == nil }

// StartTLS upgrades the client to TLS. Bytes the client sent after the
// STARTTLS command are discarded first (RFC 3207 section 4.2, RFC 9051
// section 6.2.1): they were not protected and must not be acted upon.
func (c *Conn) StartTLS(ctx context.Context) error {
	if !c.CanStartTLS() {
		return errors.New("starttls: not available")
	}
	c.r.Reset(clientReader{c}) // discard buffered plaintext
	c.sock.prefix = nil
	return c.handshake(ctx)
}

func (c *Conn) handshake(ctx context.Context) error {
	tc := tls.Server(c.sock, c.fe.TLS)
	c.SetPhase(PhaseHandshake)
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("tls handshake: %w", err)
	}
	st := tc.ConnectionState()
	c.mu.Lock() // Info reads them from other goroutines
	c.tlsConn = tc
	c.tlsVer, c.cipher = st.Version, st.CipherSuite
	c.mu.Unlock()
	c.r.Reset(clientReader{c})
	return nil
}

// SetPhase sets the client deadline for phase from the frontend's timeouts.
func (c *Conn) SetPhase(p Phase) {
	t := c.fe.Timeouts
	var d time.Duration
	switch p {
	case PhaseGreeting, PhasePreAuth:
		d = t.preAuth()
	case PhaseHandshake:
		d = t.handshake()
	case PhaseLogin:
		d = t.serverLogin()
	case PhaseRelay:
		d = t.idle()
	}
	if c.endingReason() != "" {
		c.sock.SetDeadline(time.Now()) // the engine is ending the session: the next read fails at once
		return
	}
	dl := deadlineFor(d)
	if t.LoginDeadline > 0 && p != PhaseLogin && p != PhaseRelay {
		if end := c.start.Add(t.LoginDeadline); dl.IsZero() || end.Before(dl) {
			dl = end // before login, no phase outlasts the login deadline
		}
	}
	c.sock.SetDeadline(dl)
}

// SetReadDeadline sets the deadline of reads from the client, for a
// handler that keeps its own timeouts ([protocols/http] under net/http);
// the zero time means none. While the engine is ending the session now
// (a stop; not a graceful shutdown's drain, [Conn.SetDrain]) the deadline is
// the present whatever t says, so a handler cannot keep a session the
// engine ends.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.stopping() {
		t = time.Now()
	}
	return c.netConn().SetReadDeadline(t)
}

// SetWriteDeadline sets the deadline of writes to the client, as
// [Conn.SetReadDeadline] does for reads.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.stopping() {
		t = time.Now()
	}
	return c.netConn().SetWriteDeadline(t)
}

// SetUser records the login name for the session's log line and the registry.
func (c *Conn) SetUser(user string) {
	c.mu.Lock()
	c.user = user
	c.mu.Unlock()
}

// SetServers names the servers of a session that uses several at once
// (LMTP: one per recipient), for its log line and the registry, and their
// backends, each once; SetLease names the one server of a relayed
// session.
func (c *Conn) SetServers(backends, servers []string) {
	c.mu.Lock()
	c.backend, c.server = strings.Join(backends, ","), strings.Join(servers, ",")
	c.mu.Unlock()
}

// PickRequest is the request for a pick for user on this connection:
// its client, local address and SNI name (see [PickRequest]).
func (c *Conn) PickRequest(user string, exclude []string) PickRequest {
	req := PickRequest{User: user, Client: c.remote, Local: c.local, Exclude: exclude}
	if st := c.TLS(); st != nil {
		req.SNI = strings.ToLower(st.ServerName)
	}
	return req
}

// SetLease records the server the session was sent to; the engine releases
// the lease when the session ends. A previous lease is released.
func (c *Conn) SetLease(l Lease) {
	c.mu.Lock()
	old := c.lease
	c.lease = l
	c.backend, c.server = "", ""
	if l != nil {
		c.backend, c.server = l.Target().Backend, l.Target().Server
		if u := l.User(); u != "" {
			c.user = u // the name the session was routed by, for its log line
		}
	}
	c.mu.Unlock()
	if old != nil && old != l {
		old.Release()
	}
}

// timeServer records how long the last server tried took to dial
// (connect) and to log in on (login), for the session's log line.
func (c *Conn) timeServer(connect, login time.Duration) {
	c.mu.Lock()
	c.connDur, c.login = connect, login
	c.mu.Unlock()
}

// Info is a snapshot of a live session, for the registry and the log line.
type Info struct {
	ID uint64
	// Session is [Conn.SessionID].
	Session  string
	Frontend string
	Protocol string
	Remote   netip.AddrPort
	User     string
	// Backend is the backend of Server, the one the session was routed
	// to (for LMTP a comma list, as Server).
	Backend string
	Server  string
	TLS     bool
	// TLSVersion and TLSCipher name the client's TLS as crypto/tls does
	// ("TLS 1.3", "TLS_AES_128_GCM_SHA256"); "" in plaintext.
	TLSVersion string
	TLSCipher  string
	Relaying   bool
	Start      time.Time
	// Duration is the time from Start to the snapshot: for the snapshot
	// the session ends with, its whole length.
	Duration time.Duration
	// Connect is how long the dial of the server took (TCP, PROXY header,
	// TLS to the server); Login how long its greeting and the replayed
	// login took. Both are of the last server tried, and zero before one
	// was (LMTP dials a server per recipient and reports neither).
	Connect  time.Duration
	Login    time.Duration
	BytesIn  int64
	BytesOut int64
}

// Info returns a snapshot of the session. Safe for concurrent use.
func (c *Conn) Info() Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := Info{
		ID: c.id, Session: c.session, Frontend: c.fe.Name, Protocol: c.fe.Protocol, Remote: c.remote,
		User: c.user, Backend: c.backend, Server: c.server, TLS: c.tlsConn != nil, Relaying: c.relayingLocked(),
		Start: c.start, Duration: time.Since(c.start), Connect: c.connDur, Login: c.login,
		BytesIn: c.bytesIn.Load(), BytesOut: c.bytesOut.Load(),
	}
	if c.tlsConn != nil {
		i.TLSVersion, i.TLSCipher = tls.VersionName(c.tlsVer), tls.CipherSuiteName(c.cipher)
	}
	return i
}
