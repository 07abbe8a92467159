package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/maildirector/maildirector/checks"
	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/director"
	"github.com/maildirector/maildirector/stats"
)

// backend is one running [backend.NAME]: its director, TLS to its servers
// and one checker per checked server.
type backend struct {
	dir    *director.Director
	log    *slog.Logger
	onDown func(backend, server string) // closes a server's sessions (on_marked_down)

	mu        sync.Mutex // guards the fields below, replaced by a reload that keeps the backend
	cfg       *config.Backend
	clientTLS map[string]*tls.Config // by server name; nil entries: plaintext
	checkers  map[string]*checker    // by server name
}

// checker is one server's running (or not yet started) health check.
type checker struct {
	ck   *checks.Checker
	key  string // what it probes (see checkKey): a reload that changes it replaces the checker
	stop context.CancelFunc
	done chan struct{}
}

// checkKey says what the check of s probes: the same key means the same
// probe, so a reload keeps the checker (and its state); another key builds
// a new one, so that checks always probe what sessions use (port, PROXY
// header, TLS).
func checkKey(b *config.Backend, s *config.Server) string {
	c := b.Check
	c.TLS = nil // a pointer; CheckTLS below has its meaning
	return fmt.Sprintf("%+v|%s|%s|%v|%+v", c, b.CheckAddress(s), b.CheckSendProxy(s), b.CheckTLS(s), s.TLS)
}

// backendEnv is what every backend of a build shares.
type backendEnv struct {
	log    *slog.Logger
	onDown func(backend, server string) // closes a server's sessions (on_marked_down)
	stats  *stats.Stats                 // nil in `check`
	holds  *director.Holds              // the users an operator froze
	// freezeWait is how long a frozen user's login waits for its release.
	freezeWait time.Duration
	// shared is the fleet's placement ([cluster]); nil without one.
	shared director.Shared
}

// backendBuild is a backend as a reload wants it, not applied yet: a new
// backend, or the running one (reused) with new settings and checkers.
type backendBuild struct {
	b         *backend
	reused    bool
	cfg       *config.Backend
	env       *backendEnv
	clientTLS map[string]*tls.Config
	checkers  map[string]*checker // the whole new set: kept ones and new ones
}

// buildBackend builds bc. old is the running backend of that name, or nil.
//
// The running director (sticky assignments, health, sessions) is kept when
// the servers and the director's options are unchanged; weights and admin
// states are then applied by commit. Otherwise a new director is built,
// and each server whose name and address are unchanged keeps its health.
// A server new to a running backend starts down and takes users after its
// first passing check (HAProxy's init-state "down"); at process start every
// server starts up and needs fall failed checks to go down, so a restart
// does not flap servers on one unlucky probe.
//
// Checkers are kept only when they probe exactly what the sessions will
// use (checkKey); a replaced checker starts in its server's state.
func buildBackend(bc *config.Backend, old *backend, env *backendEnv) (*backendBuild, error) {
	log, counters := env.log, env.stats
	tlsBy := make(map[string]*tls.Config)
	for _, s := range bc.Servers {
		tc, err := clientTLS(s)
		if err != nil {
			return nil, fmt.Errorf("server %s: tls: %w", s.Name, err)
		}
		tlsBy[s.Name] = tc
	}
	opts, err := directorOptions(bc)
	if err != nil {
		return nil, err
	}
	opts.Holds = env.holds
	opts.Shared = env.shared
	bb := &backendBuild{cfg: bc, env: env, clientTLS: tlsBy, checkers: make(map[string]*checker)}
	var oldState map[string]director.ServerStatus // servers of old with the same address
	if old != nil {
		oldState = old.states(bc)
	}
	if old != nil && sameServers(old.config(), bc) && sameDirectorOptions(old.config(), bc) {
		bb.b, bb.reused = old, true
	} else {
		b := &backend{log: log.With("backend", bc.Name), onDown: env.onDown, cfg: bc, clientTLS: tlsBy}
		opts.Logger = log // the director names the backend in every line
		opts.OnPassiveDown = b.passiveDown
		if b.dir, err = director.New(opts); err != nil {
			return nil, err
		}
		for _, s := range bc.Servers {
			st, known := oldState[s.Name]
			switch {
			case known && !st.Up:
				b.dir.SetHealth(s.Name, false, "down before the reload: "+st.Reason)
			case !known && old != nil && checked(bc, s):
				b.dir.SetHealth(s.Name, false, "new server: waiting for its first passing check")
			}
		}
		bb.b = b
	}

	for _, s := range bc.Servers {
		if !checked(bc, s) {
			continue
		}
		key := checkKey(bc, s)
		if bb.reused {
			if running := old.checker(s.Name); running != nil && running.key == key {
				bb.checkers[s.Name] = running
				continue
			}
		}
		copts, err := checkOptions(bc, s, tlsBy[s.Name])
		if err != nil {
			return nil, err
		}
		st, known := oldState[s.Name]
		switch {
		case known && st.Up:
			copts.Initial = checks.InitFullyUp
		case known:
			copts.Initial = checks.InitFullyDown
		case old != nil:
			copts.Initial = checks.InitDown
		}
		copts.Logger = bb.b.log
		copts.OnChange = bb.b.healthChanged
		if counters != nil {
			sv, typ, dir := counters.Server(bc.Name, s.Name), copts.Type, bb.b
			copts.OnChange = func(t checks.Transition) {
				sv.Transition(t)
				dir.healthChanged(t)
			}
			copts.OnResult = func(r checks.Result) { sv.CheckResult(typ, r) }
		}
		ck, err := checks.New(copts)
		if err != nil {
			return nil, fmt.Errorf("server %s: check: %w", s.Name, err)
		}
		bb.checkers[s.Name] = &checker{ck: ck, key: key}
	}
	return bb, nil
}

func checked(b *config.Backend, s *config.Server) bool {
	return s.Check && b.Check.Type != config.CheckTypeNone
}

// sameServers reports whether a and b list the same servers as far as the
// director is concerned (ports, PROXY headers and TLS are the targets'
// and checkers' business, rebuilt on every reload).
func sameServers(a, b *config.Backend) bool {
	return slices.EqualFunc(a.Servers, b.Servers, func(x, y *config.Server) bool {
		return x.Name == y.Name && x.Backup == y.Backup && x.MaxConn == y.MaxConn && x.Address == y.Address
	})
}

// sameDirectorOptions reports whether a and b build the same director.
func sameDirectorOptions(a, b *config.Backend) bool {
	noCheck := func(c *config.Backend) bool { return c.Check.Type == config.CheckTypeNone }
	return a.Balance == b.Balance && a.UserExpire == b.UserExpire && a.DefaultDomain == b.DefaultDomain &&
		a.RecipientDelimiter == b.RecipientDelimiter && a.StripLoginDetail == b.StripLoginDetail &&
		a.MasterUserSeparator == b.MasterUserSeparator && a.DirectorUsernameHash == b.DirectorUsernameHash &&
		a.AllBackups == b.AllBackups && a.ErrorLimit == b.ErrorLimit && noCheck(a) == noCheck(b)
}

// commit makes the build the running backend: for a reused one the new
// weights, admin states and TLS; then the checkers of the new set start and
// those it dropped stop. Call only once the reload can no longer fail.
func (bb *backendBuild) commit() {
	b := bb.b
	if bb.reused {
		for _, s := range bb.cfg.Servers {
			admin, _ := adminState(s.State) // parsed without error by buildBackend
			b.dir.SetWeight(s.Name, s.Weight)
			b.dir.SetVhostCount(s.Name, s.VhostCount)
			b.dir.SetAdmin(s.Name, admin)
		}
	}
	b.mu.Lock()
	old := b.checkers
	b.cfg, b.clientTLS, b.checkers = bb.cfg, bb.clientTLS, bb.checkers
	b.mu.Unlock()
	for name, c := range old {
		if bb.checkers[name] != c {
			c.halt()
		}
	}
	for _, c := range bb.checkers {
		if c.stop == nil {
			c.start()
		}
	}
}

func (c *checker) start() {
	ctx, cancel := context.WithCancel(context.Background())
	c.stop, c.done = cancel, make(chan struct{})
	go c.run(ctx)
}

// run checks until ctx is cancelled (halt).
func (c *checker) run(ctx context.Context) {
	defer close(c.done)
	c.ck.Run(ctx)
}

// halt stops the checker and waits for it.
func (c *checker) halt() {
	if c.stop != nil {
		c.stop()
		<-c.done
	}
}

func (b *backend) config() *config.Backend {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cfg
}

func (b *backend) checker(server string) *checker {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.checkers[server]
}

// states returns the director's view of the servers of bc that b runs
// with the same name and address.
func (b *backend) states(bc *config.Backend) map[string]director.ServerStatus {
	addr := make(map[string]string)
	for _, s := range b.config().Servers {
		addr[s.Name] = s.Address
	}
	out := make(map[string]director.ServerStatus)
	for _, st := range b.dir.Servers() {
		for _, s := range bc.Servers {
			if s.Name == st.Name && addr[s.Name] == s.Address {
				out[s.Name] = st
			}
		}
	}
	return out
}

// healthChanged feeds a check transition to the director.
func (b *backend) healthChanged(t checks.Transition) {
	b.dir.SetHealth(t.Server, t.Up, t.Reason)
	b.mu.Lock()
	shut := b.cfg.OnMarkedDown == config.OnMarkedDownShutdownSessions
	name := b.cfg.Name
	b.mu.Unlock()
	if !t.Up && shut && b.onDown != nil {
		// Not on the checker's goroutine: saying goodbye to many clients
		// must not hold up the health checks.
		go b.onDown(name, t.Server)
	}
}

// passiveDown is the director telling that real sessions failed error_limit
// times in a row: the checker goes down too and needs rise passing checks.
// A server with check = false has no checker to bring it back and is
// "always considered up": it is put back up at once (the director already
// logged the passive failure) and the next sessions keep trying it.
func (b *backend) passiveDown(server, reason string) {
	if c := b.checker(server); c != nil {
		c.ck.ForceDown(reason)
		return
	}
	b.dir.SetHealth(server, true, "not checked, so passive health does not keep it down")
}

// close stops the checkers and waits for them.
func (b *backend) close() {
	b.mu.Lock()
	running := b.checkers
	b.mu.Unlock()
	for _, c := range running {
		c.halt()
	}
}

// capabilities returns what the checks of type typ learned from the first
// server that is up (IMAP CAPABILITY, POP3 CAPA, the ManageSieve greeting),
// for frontends to advertise.
func (b *backend) capabilities(typ config.CheckType) func() []string {
	return func() []string {
		b.mu.Lock()
		cfg, running := b.cfg, b.checkers
		b.mu.Unlock()
		if cfg.Check.Type != typ {
			return nil
		}
		for _, s := range cfg.Servers {
			if c := running[s.Name]; c != nil {
				if st := c.ck.Status(); st.Up && len(st.Capabilities) > 0 {
					return st.Capabilities
				}
			}
		}
		return nil
	}
}

// pickerFor builds the picker a frontend of protocol p uses, with the
// servers' addresses and TLS as this build has them.
func (bb *backendBuild) pickerFor(p config.Protocol) (*picker, error) {
	t, err := targets(bb.cfg, p, bb.clientTLS)
	if err != nil {
		return nil, err
	}
	login := p == config.ProtocolIMAP || p == config.ProtocolPOP3 || p == config.ProtocolSubmission || p == config.ProtocolManageSieve
	return &picker{
		dir: bb.b.dir, targets: t, retries: bb.cfg.Retries,
		recipients: p == config.ProtocolLMTP,
		stay:       login && bb.cfg.LoginServerDown == config.ServerDownTempfail,
		freezeWait: bb.env.freezeWait,
	}, nil
}
