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
	Timeouts       Timeouts
	// Retries is how many other servers a session is tried on after a
	// server fails before it answered (HAProxy's retries with redispatch):
	// [Conn.Connect] and LMTP's per-recipient redelivery use it. Zero: 2;
	// negative: none, only the first server is tried.
	Retries int
	// Stats receives the frontend's session events; nil: none.
	Stats Recorder
	// Graceful: the handler ends its sessions itself, after the work in
	// flight, once their context is cancelled (HTTP: after the response
	// being sent; an idle keep-alive connection at once). [Server.Shutdown]
	// then only cancels their context until its grace is over, instead of
	// ending them at once as it does sessions that have not logged in.
	Graceful bool

	sem chan struct{}
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
}

// Server runs frontends: it owns their listeners, their connections and the relay.
type Server struct {
	log   *slog.Logger
	sem   chan struct{} // global maxconn; nil: unlimited
	relay *relay

	nextID atomic.Uint64

	// Warnings about conditions that hit every connection, one a second.
	maxConnLog, proxyHeaderLog rateLimit

	mu        sync.Mutex
	listeners map[string]*listener     // by normalised address
	sems      map[string]chan struct{} // per-frontend maxconn slots, kept across reloads
	conns     map[*Conn]struct{}
	stopping  bool
	wg        sync.WaitGroup // accept loops and connection goroutines
	drained   chan struct{}  // closed when conns becomes empty during shutdown
}

type listener struct {
	addr string
	ln   net.Listener
	fe   atomic.Pointer[Frontend]
	done chan struct{}
}

// New returns a Server with no listeners; call Configure.
func New(opts Options) *Server {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		log:       log,
		listeners: make(map[string]*listener),
		sems:      make(map[string]chan struct{}),
		conns:     make(map[*Conn]struct{}),
	}
	if opts.MaxConn > 0 {
		s.sem = make(chan struct{}, opts.MaxConn)
	}
	s.relay = newRelay(s)
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
	oldSems := s.sems
	s.mu.Unlock()
	sems := make(map[string]chan struct{})
	for i := range frontends {
		fe := &frontends[i]
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
		ln, err := net.Listen(network(key), key)
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
		l := &listener{addr: key, ln: ln, done: make(chan struct{})}
		l.fe.Store(want[key])
		s.listeners[key] = l
		s.wg.Add(1)
		go s.acceptLoop(l)
	}
	s.sems = sems
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
	for {
		fe := l.fe.Load()
		if !s.acquireSlot(s.sem, l, "global.maxconn") {
			return
		}
		if !s.acquireSlot(fe.sem, l, "frontend."+fe.Name+".maxconn") {
			release(s.sem)
			return
		}
		nc, err := l.ln.Accept()
		if err != nil {
			release(fe.sem)
			release(s.sem)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("accept failed", "addr", l.addr, "err", err)
			time.Sleep(50 * time.Millisecond) // EMFILE and friends: do not spin
			continue
		}
		// Serve with the frontend as it is now (a reload may have come
		// while this loop waited for a slot); the slot taken is released
		// into the semaphore it came from.
		s.startConn(l.fe.Load(), fe.sem, nc.(*net.TCPConn))
	}
}

// acquireSlot takes a slot of sem for the next connection on l, waiting
// (the connection waits in the kernel's backlog, as behind HAProxy's
// maxconn) when none is free; a full limit is logged, once a second, since
// the clients waiting in the backlog see nothing but a slow connect. It
// returns false when l is closed.
func (s *Server) acquireSlot(sem chan struct{}, l *listener, key string) bool {
	if sem == nil {
		return true
	}
	select {
	case sem <- struct{}{}:
		return true
	default:
	}
	if s.maxConnLog.allow(time.Now()) {
		s.log.Warn("maxconn reached: new connections wait in the listen backlog", "limit", key, "max", cap(sem), "addr", l.addr)
	}
	return acquire(sem, l.done)
}

func acquire(sem chan struct{}, done <-chan struct{}) bool {
	if sem == nil {
		return true
	}
	select {
	case sem <- struct{}{}:
		return true
	case <-done:
		return false
	}
}

func release(sem chan struct{}) {
	if sem != nil {
		<-sem
	}
}

func (s *Server) startConn(fe *Frontend, sem chan struct{}, tc *net.TCPConn) {
	sock, err := newSockConn(tc)
	if err != nil {
		tc.Close()
		release(sem)
		release(s.sem)
		return
	}
	remote := addrPort(tc.RemoteAddr())
	c := &Conn{
		id:     s.nextID.Add(1),
		srv:    s,
		fe:     fe,
		start:  time.Now(),
		remote: remote,
		local:  addrPort(tc.LocalAddr()),
		sock:   sock,
		sem:    sem,
	}
	ctx, ok := c.register()
	if !ok {
		tc.Close()
		release(sem)
		release(s.sem)
		return
	}
	go s.serveConn(ctx, c)
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// serveConn runs the handler for c; it exits when the handler returns. A
// session handed to the relay lives on there without this goroutine.
func (s *Server) serveConn(ctx context.Context, c *Conn) {
	defer s.wg.Done()
	c.r = getReader(clientReader{c})
	err := s.prepare(ctx, c)
	if err == nil {
		err = s.runHandler(ctx, c)
	}
	if c.handlerReturned() {
		return // the relay owns c now and ends it
	}
	c.finish(err)
}

// addConn registers c as live, with its goroutine counted in wg, unless the
// server is stopping.
func (s *Server) addConn(c *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
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
	return nil
}

// Shutdown stops accepting, ends sessions that have not logged in yet with
// their goodbye (IMAP "* BYE", SMTP "421"), lets relayed sessions and
// those of graceful frontends ([Frontend.Graceful]) finish until ctx is done, then closes them, telling the client goodbye where the
// server is not in the middle of sending. It returns ctx.Err() if sessions
// had to be force-closed.
func (s *Server) Shutdown(ctx context.Context) error {
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
		switch {
		case c.fe.Graceful:
			c.drain(EndShutdown)
		case !c.relaying():
			c.stop(EndShutdown)
		}
	}
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
		for _, c := range s.liveConns() {
			c.stop(EndShutdown)
		}
	}
	s.wg.Wait()
	s.relay.close()
	return err
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	s.stopping = true
	for key, l := range s.listeners {
		l.close()
		delete(s.listeners, key)
	}
	s.mu.Unlock()
}

// close stops the accept loop, also while it waits for a free slot.
func (l *listener) close() {
	close(l.done)
	l.ln.Close()
}
