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
	"github.com/maildirector/maildirector/protocols/lmtp"
	"github.com/maildirector/maildirector/proxy"
)

// runtime is the running service: the engine, one director and its checkers
// per backend, and the configuration snapshot they were built from.
type runtime struct {
	log *slog.Logger
	srv *proxy.Server

	mu       sync.Mutex // serialises reloads
	cfg      *config.Config
	backends map[string]*backend
	lmtp     []*lmtp.Frontend // running LMTP frontends, whose server pools need closing
	// pendingLMTP collects the LMTP frontends an apply builds.
	pendingLMTP []*lmtp.Frontend
}

// backend is one [backend.NAME]: its director, TLS to its servers and checkers.
type backend struct {
	mu        sync.Mutex // guards cfg, replaced by a reload that keeps the backend
	cfg       *config.Backend
	dir       *director.Director
	clientTLS map[string]*tls.Config // by server name; nil entries: plaintext
	checkers  map[string]*checks.Checker
	stop      context.CancelFunc           // ends the checkers
	onDown    func(backend, server string) // closes a server's sessions (on_marked_down)
	wg        sync.WaitGroup
}

func newRuntime(cfg *config.Config, log *slog.Logger) (*runtime, error) {
	rt := &runtime{
		log:      log,
		srv:      proxy.New(proxy.Options{Logger: log, MaxConn: cfg.Global.MaxConn}),
		backends: make(map[string]*backend),
	}
	if err := rt.apply(cfg); err != nil {
		rt.srv.Close()
		return nil, err
	}
	return rt, nil
}

// build is everything a configuration needs, built but not running: the
// frontends with their handlers and the backends with their directors and
// checkers (not started). `check` builds and aborts, so it refuses exactly
// what `run` and a reload refuse, short of binding the listeners.
type build struct {
	backends  map[string]*backendBuild
	frontends []proxy.Frontend
}

// build builds cfg against the running backends (which a reload may keep).
// On error nothing is left running. Call with rt.mu held.
func (rt *runtime) buildLocked(cfg *config.Config) (*build, error) {
	b := &build{backends: make(map[string]*backendBuild, len(cfg.Backends))}
	rt.pendingLMTP = nil
	for _, name := range cfg.BackendNames() {
		bb, err := rt.buildBackend(cfg.Backends[name])
		if err != nil {
			rt.abortLocked(b)
			return nil, fmt.Errorf("backend.%s: %w", name, err)
		}
		b.backends[name] = bb
	}
	for _, name := range cfg.FrontendNames() {
		f := cfg.Frontends[name]
		fe, err := rt.buildFrontend(f, b.backends[f.Backend])
		if err != nil {
			rt.abortLocked(b)
			return nil, fmt.Errorf("frontend.%s: %w", name, err)
		}
		b.frontends = append(b.frontends, fe)
	}
	return b, nil
}

// abortLocked drops a build that will not run.
func (rt *runtime) abortLocked(b *build) {
	for _, h := range rt.pendingLMTP {
		h.Close()
	}
	rt.pendingLMTP = nil
	for _, bb := range b.backends {
		if !bb.reused {
			bb.b.close()
		}
	}
}

// apply builds everything cfg needs and swaps it in. On error nothing
// changes: the running frontends and backends stay as they were.
func (rt *runtime) apply(cfg *config.Config) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()

	b, err := rt.buildLocked(cfg)
	if err != nil {
		return err
	}
	if err := rt.srv.Configure(b.frontends); err != nil {
		rt.abortLocked(b)
		return err
	}
	// Past the last check that can fail: only now do running backends
	// change, so a failed reload leaves everything as it was.
	backends := make(map[string]*backend, len(b.backends))
	for name, bb := range b.backends {
		bb.commit()
		backends[name] = bb.b
	}
	for name, old := range rt.backends {
		if backends[name] != old {
			old.close()
		}
	}
	for _, bb := range b.backends {
		if !bb.reused {
			bb.b.startChecks(rt.log)
		}
	}
	rt.swapLMTPLocked()
	rt.cfg, rt.backends = cfg, backends
	return nil
}

// backendBuild is a backend as a reload wants it, not applied yet: a new
// backend, or a running one (reused) with the new settings to apply.
type backendBuild struct {
	b         *backend
	reused    bool
	cfg       *config.Backend
	clientTLS map[string]*tls.Config
}

// commit applies the new settings to a reused backend: weights, states,
// TLS to servers and the options read at run time.
func (bb *backendBuild) commit() {
	if !bb.reused {
		return
	}
	for _, s := range bb.cfg.Servers {
		admin, _ := adminState(s.State) // parsed without error by buildBackend
		bb.b.dir.SetWeight(s.Name, s.Weight)
		bb.b.dir.SetAdmin(s.Name, admin)
	}
	bb.b.mu.Lock()
	bb.b.cfg, bb.b.clientTLS = bb.cfg, bb.clientTLS
	bb.b.mu.Unlock()
}

// buildBackend returns the backend for bc: the running one when its server
// list is unchanged (so sticky assignments and health survive a reload;
// weights and states are updated in place by commit), else a new one.
func (rt *runtime) buildBackend(bc *config.Backend) (*backendBuild, error) {
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
	if old := rt.backends[bc.Name]; old != nil && sameServers(old.cfg, bc) && sameDirectorOptions(old.cfg, bc) {
		return &backendBuild{b: old, reused: true, cfg: bc, clientTLS: tlsBy}, nil
	}
	b := &backend{cfg: bc, clientTLS: tlsBy, checkers: make(map[string]*checks.Checker), onDown: rt.closeServerSessions}
	opts.Logger = rt.log // the director names the backend in every line
	opts.OnPassiveDown = b.passiveDown
	if b.dir, err = director.New(opts); err != nil {
		return nil, err
	}
	if err := b.buildChecks(rt.log); err != nil {
		return nil, err
	}
	return &backendBuild{b: b, cfg: bc, clientTLS: tlsBy}, nil
}

func sameServers(a, b *config.Backend) bool {
	return slices.EqualFunc(a.Servers, b.Servers, func(x, y *config.Server) bool {
		return x.Name == y.Name && x.Backup == y.Backup && x.MaxConn == y.MaxConn &&
			x.Address == y.Address && x.Check == y.Check
	})
}

func sameDirectorOptions(a, b *config.Backend) bool {
	return a.Balance == b.Balance && a.UserExpire == b.UserExpire && a.DefaultDomain == b.DefaultDomain &&
		a.AllBackups == b.AllBackups && a.ErrorLimit == b.ErrorLimit && a.Check == b.Check
}

// buildChecks creates one checker per checked server; they start with startChecks.
func (b *backend) buildChecks(log *slog.Logger) error {
	if b.cfg.Check.Type == config.CheckTypeNone {
		return nil
	}
	for _, s := range b.cfg.Servers {
		if !s.Check {
			continue
		}
		opts, err := checkOptions(b.cfg, s, b.clientTLS[s.Name])
		if err != nil {
			return err
		}
		opts.Logger = log.With("backend", b.cfg.Name)
		opts.OnChange = b.healthChanged
		ck, err := checks.New(opts)
		if err != nil {
			return fmt.Errorf("server %s: check: %w", s.Name, err)
		}
		b.checkers[s.Name] = ck
	}
	return nil
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
	if ck := b.checkers[server]; ck != nil {
		ck.ForceDown(reason)
		return
	}
	b.dir.SetHealth(server, true, "not checked, so passive health does not keep it down")
}

func (b *backend) startChecks(log *slog.Logger) {
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	for _, ck := range b.checkers {
		b.wg.Add(1)
		go b.runChecker(ctx, ck)
	}
}

func (b *backend) runChecker(ctx context.Context, ck *checks.Checker) {
	defer b.wg.Done()
	ck.Run(ctx)
}

// close stops the checkers and waits for them.
func (b *backend) close() {
	if b.stop != nil {
		b.stop()
	}
	b.wg.Wait()
}

// capabilities returns what the checks of type typ learned from the first
// server that is up (IMAP CAPABILITY, POP3 CAPA), for frontends to advertise.
func (b *backend) capabilities(typ config.CheckType) func() []string {
	if b.cfg.Check.Type != typ {
		return nil
	}
	return func() []string {
		b.mu.Lock()
		servers := b.cfg.Servers
		b.mu.Unlock()
		for _, s := range servers {
			if ck := b.checkers[s.Name]; ck != nil {
				if st := ck.Status(); st.Up && len(st.Capabilities) > 0 {
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
	return &picker{dir: bb.b.dir, targets: t}, nil
}

// shutdown stops accepting, lets sessions finish for grace, then closes them,
// and stops the checkers.
func (rt *runtime) shutdown(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	err := rt.srv.Shutdown(ctx)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	for _, b := range rt.backends {
		b.close()
	}
	for _, h := range rt.lmtp {
		h.Close()
	}
	return err
}
