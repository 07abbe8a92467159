package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
)

// Handler serves one client connection. The engine closes c after ServeConn
// returns, unless ServeConn handed c to the relay with [Conn.Relay]. The
// returned error feeds the session's log line; ctx is cancelled when the
// engine wants the session to end (shutdown), and the client's pending read
// fails at the same moment.
type Handler interface {
	ServeConn(ctx context.Context, c *Conn) error
}

// HandlerFunc adapts a function to [Handler].
type HandlerFunc func(ctx context.Context, c *Conn) error

// ServeConn calls f(ctx, c).
func (f HandlerFunc) ServeConn(ctx context.Context, c *Conn) error { return f(ctx, c) }

// Timeouts bound each phase of a session. A zero field takes the default
// named next to it; a negative one means no deadline for that phase.
type Timeouts struct {
	Handshake   time.Duration // TLS handshake; default 10s
	PreAuth     time.Duration // client idle before login; default 60s
	Connect     time.Duration // server dial, PROXY header and TLS to the server; default 5s
	ServerLogin time.Duration // server greeting and login reply; default 30s
	// Idle closes a relayed session after this long without a byte either
	// way; default 1h. IMAP needs at least 30 minutes (RFC 3501 section 5.4:
	// the autologout timer is at least 30 minutes, and IDLE lasts hours).
	Idle time.Duration
	// LoginDeadline bounds the whole time from accept to login, however
	// active the client is: every pre-login read and handshake ends by
	// then, so a client sending a byte now and then cannot hold a slot
	// (Dovecot's login processes allow 3 minutes). Zero means none: the
	// frontends without a login (LMTP, tcp) have none.
	LoginDeadline time.Duration
}

// orDefault resolves a duration option: zero is def, negative is none
// (returned as a negative value, which SetPhase reads as no deadline).
func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func (t Timeouts) handshake() time.Duration   { return orDefault(t.Handshake, 10*time.Second) }
func (t Timeouts) preAuth() time.Duration     { return orDefault(t.PreAuth, 60*time.Second) }
func (t Timeouts) connect() time.Duration     { return orDefault(t.Connect, 5*time.Second) }
func (t Timeouts) serverLogin() time.Duration { return orDefault(t.ServerLogin, 30*time.Second) }
func (t Timeouts) idle() time.Duration        { return orDefault(t.Idle, time.Hour) }

// Frontend is one front door: its listen addresses and how its connections
// are served. Configure takes a fresh slice on every reload and sets the
// Frontend's slot semaphore; it is not modified after that.
type Frontend struct {
	Name     string   // for logs and stats; a reload keeps maxconn slots by name
	Protocol string   // imap, pop3, submission, lmtp, tcp: for logs
	Addrs    []string // host:port each
	Handler  Handler
	// TLS holds the certificates for implicit TLS and STARTTLS; nil: none.
	TLS *tls.Config
	// ImplicitTLS: the TLS handshake happens before the handler runs (993, 995, 465).
	ImplicitTLS bool
	// TrustedProxies are the networks whose PROXY v1/v2 header is required
	// and honoured; a connection from elsewhere is never parsed for one.
	TrustedProxies []netip.Prefix
	MaxConn        int // 0: only the server's limit
	// Reserve is how many sessions this frontend may have beyond the
	// server's MaxConn, in slots no other frontend can take: a flood on
	// one frontend cannot lock another out (the MTA's LMTP). They are used
	// once the server's slots are all taken. Zero: none.
	Reserve int
	// BacklogWait is how long a full frontend (no slot free) lets new
	// connections wait in the listen backlog; past it they are accepted
	// and refused in the protocol's words (see [Refuser]) until a slot
	// frees. Zero: they wait.
	BacklogWait time.Duration
	Timeouts    Timeouts
	// Limits are the per-client limits and the failed-login penalty.
	Limits Limits
	// Retries is how many other servers a session is tried on after a
	// server fails before it answered (HAProxy's retries with redispatch):
	// [Conn.Connect] and LMTP's per-recipient redelivery use it. Zero: 2;
	// negative: none, only the first server is tried.
	Retries int
	// Splice: after login, a direction whose reads fill the relay's 16 KiB
	// buffer moves on by splice(2) through a pipe (HAProxy's
	// splice-auto) instead of read and write. It halves the CPU per GiB of
	// bulk transfers from a fast server, but measured against Dovecot on
	// loopback (bench, FETCH of 10 MiB) it moved 14% less than read and
	// write, which match HAProxy; off by default, as in HAProxy.
	Splice bool
	// Stats receives the frontend's session events; nil: none.
	Stats Recorder

	sem     chan struct{}
	reserve chan struct{} // Reserve slots; kept across reloads by Name
	guard   *guard        // kept across reloads by Name
}

// defaultRetries is Frontend.Retries when zero, as HAProxy's default retries.
const defaultRetries = 2

func (f *Frontend) retries() int {
	switch {
	case f.Retries < 0:
		return 0
	case f.Retries == 0:
		return defaultRetries
	}
	return f.Retries
}

// Options configure a Server. The zero value works.
type Options struct {
	Logger  *slog.Logger // nil: discard
	MaxConn int          // sessions over all frontends; 0: unlimited
	// Listen opens the listening socket of a new address ("tcp4", "tcp6"
	// or "tcp", and the normalised address); nil: [Listen]. cmd passes
	// one that first takes a socket inherited from systemd or from the
	// process being upgraded.
	Listen func(network, address string) (net.Listener, error)
}

// Server runs frontends: it owns their listeners, their connections and the relay.
type Server struct {
	log     *slog.Logger
	sem     chan struct{} // global maxconn; nil: unlimited
	relay   *relay
	workers *workers // the goroutines that serve connections until the relay takes them

	listen func(network, address string) (net.Listener, error) // Options.Listen, or net.Listen

	nextID atomic.Uint64
	// sessionPrefix begins every session id of this process (see
	// [Conn.SessionID]): random, so that ids of two processes (an upgrade,
	// a fleet of maildirectors) never collide in Dovecot's logs.
	sessionPrefix string

	// Warnings about conditions that hit every connection, one a second.
	maxConnLog, proxyHeaderLog, acceptLog, refusedLog rateLimit

	mu        sync.Mutex
	listeners map[string]*listener     // by normalised address
	sems      map[string]chan struct{} // per-frontend maxconn slots, kept across reloads
	reserves  map[string]chan struct{} // per-frontend reserved slots, kept across reloads
	guards    map[string]*guard        // per-frontend client tables, kept across reloads
	conns     map[*Conn]struct{}
	stopping  bool
	sealed    bool           // stopping, and the accept loops ended: no new session registers
	wg        sync.WaitGroup // accept loops and connection goroutines
	drained   chan struct{}  // closed when conns becomes empty during shutdown
}

type listener struct {
	addr string
	ln   net.Listener
	acc  acceptor // takes ln's connections
	fe   atomic.Pointer[Frontend]
	done chan struct{}
	gone chan struct{} // closed when acceptLoop has returned
}

// New returns a Server with no listeners; call Configure.
func New(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:           log,
		sessionPrefix: newSessionPrefix(),
		listen:        opts.Listen,
		listeners:     make(map[string]*listener),
		sems:          make(map[string]chan struct{}),
		reserves:      make(map[string]chan struct{}),
		guards:        make(map[string]*guard),
		conns:         make(map[*Conn]struct{}),
	}
	if opts.MaxConn > 0 {
		s.sem = make(chan struct{}, opts.MaxConn)
	}
	if s.listen == nil {
		s.listen = Listen
	}
	s.relay = newRelay(s)
	s.workers = newWorkers()
	return s
}

// Configure makes the server's listeners match frontends: addresses that
// stay keep their open socket (and its backlog) and serve new connections
// with the new Frontend; new addresses are opened; addresses no longer named
// are closed. Live sessions keep the Frontend they started with. If any new
// address cannot be opened, nothing changes and the error says which.
func (s *Server) Configure(frontends []Frontend) error {
	want := make(map[string]*Frontend)
	s.mu.Lock()
	oldSems, oldReserves, oldGuards := s.sems, s.reserves, s.guards
	s.mu.Unlock()
	sems := make(map[string]chan struct{})
	reserves := make(map[string]chan struct{})
	guards := make(map[string]*guard)
	for i := range frontends {
		fe := &frontends[i]
		if fe.Limits.active() {
			// A reload keeps the frontend's client tables: a client
			// over its limit stays over it.
			if g := oldGuards[fe.Name]; g != nil {
				g.setLimits(fe.Limits)
				fe.guard = g
			} else {
				fe.guard = newGuard(fe.Limits)
			}
			guards[fe.Name] = fe.guard
		}
		if fe.MaxConn > 0 {
			// Live sessions hold slots of the semaphore they started
			// with: keep it while the limit is unchanged, so a reload
			// does not hand out a fresh set of slots.
			if old := oldSems[fe.Name]; old != nil && cap(old) == fe.MaxConn {
				fe.sem = old
			} else {
				fe.sem = make(chan struct{}, fe.MaxConn)
			}
			sems[fe.Name] = fe.sem
		}
		if fe.Reserve > 0 {
			if old := oldReserves[fe.Name]; old != nil && cap(old) == fe.Reserve {
				fe.reserve = old
			} else {
				fe.reserve = make(chan struct{}, fe.Reserve)
			}
			reserves[fe.Name] = fe.reserve
		}
		for _, a := range fe.Addrs {
			key, err := normalizeAddr(a)
			if err != nil {
				return fmt.Errorf("frontend %s: %w", fe.Name, err)
			}
			if other, dup := want[key]; dup {
				return fmt.Errorf("frontend %s: address %s already used by frontend %s", fe.Name, a, other.Name)
			}
			want[key] = fe
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return errors.New("server is shutting down")
	}
	opened := make(map[string]net.Listener)
	for key := range want {
		if _, ok := s.listeners[key]; ok {
			continue
		}
		ln, err := s.listen(network(key), key)
		if err != nil {
			for _, l := range opened {
				l.Close()
			}
			return fmt.Errorf("listen %s: %w", key, err)
		}
		opened[key] = ln
	}
	for key, l := range s.listeners {
		if fe, ok := want[key]; ok {
			l.fe.Store(fe)
			continue
		}
		l.close()
		delete(s.listeners, key)
	}
	for key, ln := range opened {
		l := &listener{addr: key, ln: ln, acc: newAcceptor(ln), done: make(chan struct{}), gone: make(chan struct{})}
		l.fe.Store(want[key])
		s.listeners[key] = l
		s.wg.Add(1)
		go s.acceptLoop(l)
	}
	s.sems, s.reserves, s.guards = sems, reserves, guards
	return nil
}

// Addrs returns the bound listen addresses (useful with port 0 in tests),
// keyed by the configured address.
func (s *Server) Addrs() map[string]net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]net.Addr, len(s.listeners))
	for key, l := range s.listeners {
		m[key] = l.ln.Addr()
	}
	return m
}

// Listeners returns the open listening sockets keyed by normalised
// address, for handing them to a new process (an upgrade). The Server goes
// on using them: the caller must not close them.
func (s *Server) Listeners() map[string]net.Listener {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]net.Listener, len(s.listeners))
	for key, l := range s.listeners {
		m[key] = l.ln
	}
	return m
}

// ListenerAddr returns the bound address of the first listener of the
// named frontend, or nil.
func (s *Server) ListenerAddr(frontend string) net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		if l.fe.Load().Name == frontend {
			return l.ln.Addr()
		}
	}
	return nil
}

// network picks tcp4 or tcp6 from the address, so that "0.0.0.0:143" and
// "[::]:143" are two sockets (the IPv6 one v6-only) rather than a dual-stack
// socket that makes the second bind fail.
func network(addr string) string {
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is6() {
		return "tcp6"
	}
	if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is4() {
		return "tcp4"
	}
	return "tcp"
}

func normalizeAddr(a string) (string, error) {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", a, err)
	}
	if host == "" {
		return net.JoinHostPort("", port), nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
	}
	return net.JoinHostPort(host, port), nil
}

// acceptLoop accepts until the listener is closed (Configure or Shutdown).
// It waits for a free slot before accepting, so that when maxconn is reached
// new connections wait in the kernel's backlog, as with HAProxy.
func (s *Server) acceptLoop(l *listener) {
	defer s.wg.Done()
	defer close(l.gone)
	var fullSince time.Time // when the frontend was last found full; zero: it is not
	for {
		fe := l.fe.Load()
		var deadline time.Time
		if fe.BacklogWait > 0 {
			if fullSince.IsZero() {
				fullSince = time.Now()
			}
			deadline = fullSince.Add(fe.BacklogWait)
		}
		sl, res := s.takeSlots(l, fe, deadline)
		if res == closing {
			return
		}
		sock, remote, local, err := l.acc.accept()
		if err != nil {
			sl.release()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE, ENFILE and friends: the sessions that are open go
			// on; this loop backs off instead of spinning, and says so
			// once a second, not on every try.
			if s.acceptLog.allow(time.Now()) {
				s.log.Warn("accept failed, retrying (sessions already open are served)", "addr", l.addr, "err", err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if res == waitedTooLong {
			// Full for longer than the frontend's backlog_wait: refuse
			// in the protocol's words rather than let clients wait on.
			if s.refusedLog.allow(time.Now()) {
				s.log.Warn("maxconn reached for longer than backlog_wait: new connections are refused", "frontend", fe.Name, "addr", l.addr, "backlog_wait", fe.BacklogWait)
			}
			go s.refuse(fe, sock)
			continue
		}
		fullSince = time.Time{}
		// Serve with the frontend as it is now (a reload may have come
		// while this loop waited for a slot); the slots taken are
		// released into the semaphores they came from.
		s.startConn(l.fe.Load(), sl, sock, remote, local)
	}
}

// acquireSlot takes a slot of sem for the next connection on l, waiting
// (the connection waits in the kernel's backlog, as behind HAProxy's
// maxconn) when none is free; a full limit is logged, once a second, since
// the clients waiting in the backlog see nothing but a slow connect. It
// returns false when l is closed.

func release(sem chan struct{}) {
	if sem != nil {
		<-sem
	}
}

func (s *Server) startConn(fe *Frontend, sl slots, tc socket, remote, local netip.AddrPort) {
	parkIn(tc, s.relay)
	sock, err := newSockConn(tc)
	if err != nil {
		tc.Close()
		sl.release()
		return
	}
	id := s.nextID.Add(1)
	c := &Conn{
		id:      id,
		session: s.sessionPrefix + "-" + strconv.FormatUint(id, 10),
		srv:     s,
		fe:      fe,
		start:   time.Now(),
		remote:  remote,
		local:   local,
		sock:    sock,
		slots:   sl,
	}
	ctx, ok := c.register()
	if !ok {
		tc.Close()
		sl.release()
		return
	}
	s.workers.serve(s, ctx, c)
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// serveConn runs the handler for c, on a worker goroutine (workers.go); it
// returns when the handler returns. A session handed to the relay lives on
// there without this goroutine.
func (s *Server) serveConn(ctx context.Context, c *Conn) {
	defer s.wg.Done()
	c.r = getReader(clientReader{c})
	err := s.prepare(ctx, c)
	if err == nil {
		err = c.admit()
	}
	if err == nil {
		err = s.runHandler(ctx, c)
	}
	if c.handlerReturned() {
		return // the relay owns c now and ends it
	}
	c.finish(err)
}

// addConn registers c as live, with its goroutine counted in wg, unless the
// server is stopping and its accept loops have ended (sealed).
func (s *Server) addConn(c *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sealed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// removeConn forgets a finished c and tells a waiting Shutdown when the
// last session is gone.
func (s *Server) removeConn(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.drained != nil && len(s.conns) == 0 {
		close(s.drained)
		s.drained = nil
	}
	s.mu.Unlock()
}

// runHandler runs the frontend's handler; a panic in it ends this session
// only, logged with its stack, instead of the whole process.
func (s *Server) runHandler(ctx context.Context, c *Conn) (err error) {
	defer func() {
		if p := recover(); p != nil {
			c.Logger().Error("handler panic", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panic: %v", p)
		}
	}()
	return c.fe.Handler.ServeConn(ctx, c)
}

// prepare reads a PROXY header from trusted upstreams and does the
// implicit TLS handshake, then builds the connection's logger.
func (s *Server) prepare(ctx context.Context, c *Conn) error {
	if trusted(c.fe.TrustedProxies, c.remote.Addr()) {
		c.SetPhase(PhaseHandshake)
		h, err := proxyproto.Read(c.r)
		if err != nil {
			// A balancer in trusted_proxies must send a header; without
			// one the client is dropped before the greeting, so say why
			// (once a second: a balancer misconfigured hits every
			// connection).
			err = fmt.Errorf("no valid PROXY header from trusted proxy %s: %w", c.remote, err)
			if s.proxyHeaderLog.allow(time.Now()) {
				c.Logger().Warn("connection dropped: a source in trusted_proxies must send a PROXY v1 or v2 header", "err", err)
			}
			return err
		}
		if src, dst, ok := h.TCPAddrs(); ok && h.Command.IsProxy() {
			c.mu.Lock() // Info reads them from other goroutines
			c.remote = addrPort(src)
			c.local = addrPort(dst)
			c.proxied = true
			c.mu.Unlock()
		}
	}
	if c.fe.ImplicitTLS {
		if n := c.r.Buffered(); n > 0 {
			b, _ := c.r.Peek(n)
			c.sock.prefix = append([]byte(nil), b...)
		}
		if err := c.handshake(ctx); err != nil {
			return err
		}
	}
	c.SetPhase(PhaseGreeting)
	return nil
}

func trusted(nets []netip.Prefix, a netip.Addr) bool {
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Sessions returns a snapshot of the live sessions.
func (s *Server) Sessions() []Info {
	s.mu.Lock()
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	out := make([]Info, len(conns))
	for i, c := range conns {
		out[i] = c.Info()
	}
	return out
}

// Kick ends every live session for which match returns true, with reason
// in its log line ([EndKicked] or [EndServerDown]; any other reason is
// logged as EndKicked, for the set is a metrics label), and returns how
// many.
func (s *Server) Kick(match func(Info) bool, reason string) int {
	n := 0
	for _, c := range s.liveConns() {
		if match(c.Info()) {
			c.stop(reason)
			n++
		}
	}
	return n
}

func (s *Server) liveConns() []*Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	conns := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// Close closes every listener and ends every session now. It returns once
// their handlers have returned; a handler may finish work it must not
// abandon first (an LMTP delivery already under way, which cut short could
// deliver a message twice).
func (s *Server) Close() error {
	s.closeListeners()
	for _, c := range s.liveConns() {
		c.stop(EndShutdown)
	}
	s.wg.Wait()
	s.relay.close()
	s.workers.close()
	return nil
}

// Shutdown stops accepting and ends every session at a clean point of its
// protocol, telling the client goodbye: a session that has not logged in
// yet at once (IMAP "* BYE", POP3 "-ERR", SMTP "421"); one whose frontend
// drains itself ([Conn.SetDrain]: LMTP) after the transaction in progress;
// a relayed session that asked for it ([Conn.EndAtPause]) at the first
// pause after a server reply. Sessions still open when ctx is done are
// closed, with the goodbye where the server is not in the middle of
// sending, and Shutdown returns ctx.Err(); else nil once the last session
// has ended.
func (s *Server) Shutdown(ctx context.Context) error { return s.shutdown(ctx, false) }

// Handover is Shutdown for a process whose listening sockets a new process
// has taken over (an upgrade): the listeners close here and stay open
// there, and a session still logging in may finish its login before it is
// ended like the others, so that no login fails because of the upgrade.
func (s *Server) Handover(ctx context.Context) error { return s.shutdown(ctx, true) }

// drainEvery is how often a graceful shutdown looks for relayed sessions
// at a pause.
const drainEvery = 100 * time.Millisecond

func (s *Server) shutdown(ctx context.Context, letLogin bool) error {
	s.closeListeners()
	s.mu.Lock()
	drained := make(chan struct{})
	if len(s.conns) == 0 {
		close(drained)
	} else {
		s.drained = drained
	}
	s.mu.Unlock()
	for _, c := range s.liveConns() {
		c.beginShutdown(letLogin)
	}
	t := time.NewTicker(drainEvery)
	defer t.Stop()
	var err error
wait:
	for {
		s.relay.endPaused(time.Now())
		select {
		case <-drained:
			break wait
		case <-ctx.Done():
			err = ctx.Err()
			for _, c := range s.liveConns() {
				c.stop(EndShutdown)
			}
			break wait
		case <-t.C:
		}
	}
	s.wg.Wait()
	s.relay.close()
	s.workers.close()
	return err
}

// closeListeners closes every listener and waits for the accept loops to
// end, so that a connection accepted just before is a live session, ended
// as the others are (at an upgrade's handover it still logs in), not
// closed unseen; then no new session registers.
func (s *Server) closeListeners() {
	s.mu.Lock()
	s.stopping = true
	var closed []*listener
	for key, l := range s.listeners {
		l.close()
		delete(s.listeners, key)
		closed = append(closed, l)
	}
	s.mu.Unlock()
	for _, l := range closed {
		<-l.gone
	}
	s.mu.Lock()
	s.sealed = true
	s.mu.Unlock()
}

// close stops the accept loop, also while it waits for a free slot.
func (l *listener) close() {
	close(l.done)
	l.ln.Close()
	l.acc.close()
}
