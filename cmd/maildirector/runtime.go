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
	"github.com/maildirector/maildirector/protocols/smtp"
	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/tlsutil"
)

// runtime is the running service: the engine, one director and its checkers
// per backend, and the configuration snapshot they were built from.
type runtime struct {
	log *slog.Logger
	srv *proxy.Server

	mu       sync.Mutex // serialises reloads
	cfg      *config.Config
	backends map[string]*backend
	lmtp     []*smtp.LMTP // running LMTP frontends, whose server pools need closing
	// pendingLMTP collects the LMTP frontends an apply builds.
	pendingLMTP []*smtp.LMTP
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

// apply builds everything cfg needs and swaps it in. On error nothing
// changes: the running frontends and backends stay as they were.
func (rt *runtime) apply(cfg *config.Config) error {
	rt.mu.Lock()
	defer rt.mu.Unlock()

	builds := make(map[string]*backendBuild, len(cfg.Backends))
	rt.pendingLMTP = nil
	abort := func() {
		rt.pendingLMTP = nil
		for _, bb := range builds {
			if !bb.reused {
				bb.b.close()
			}
		}
	}
	for _, name := range cfg.BackendNames() {
		bb, err := rt.buildBackend(cfg, cfg.Backends[name])
		if err != nil {
			abort()
			return fmt.Errorf("backend.%s: %w", name, err)
		}
		builds[name] = bb
	}
	frontends := make([]proxy.Frontend, 0, len(cfg.Frontends))
	for _, name := range cfg.FrontendNames() {
		f := cfg.Frontends[name]
		fe, err := rt.buildFrontend(cfg, f, builds[f.Backend])
		if err != nil {
			abort()
			return fmt.Errorf("frontend.%s: %w", name, err)
		}
		frontends = append(frontends, fe)
	}
	if err := rt.srv.Configure(frontends); err != nil {
		abort()
		return err
	}
	// Past the last check that can fail: only now do running backends
	// change, so a failed reload leaves everything as it was.
	backends := make(map[string]*backend, len(builds))
	for name, bb := range builds {
		bb.commit()
		backends[name] = bb.b
	}
	for name, old := range rt.backends {
		if backends[name] != old {
			old.close()
		}
	}
	for _, bb := range builds {
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
		bb.b.dir.SetWeight(s.Name, s.Weight)
		bb.b.dir.SetAdmin(s.Name, adminState(s.State))
	}
	bb.b.mu.Lock()
	bb.b.cfg, bb.b.clientTLS = bb.cfg, bb.clientTLS
	bb.b.mu.Unlock()
}

// buildBackend returns the backend for bc: the running one when its server
// list is unchanged (so sticky assignments and health survive a reload;
// weights and states are updated in place by commit), else a new one.
func (rt *runtime) buildBackend(cfg *config.Config, bc *config.Backend) (*backendBuild, error) {
	clientTLS := make(map[string]*tls.Config)
	for _, s := range bc.Servers {
		if !s.TLS.Enabled {
			continue
		}
		tc, err := tlsutil.NewClientConfig(tlsutil.ClientOptions{
			Verify: s.TLS.Verify, CAFile: s.TLS.CA, ServerName: serverName(s),
		})
		if err != nil {
			return nil, fmt.Errorf("server %s: tls: %w", s.Name, err)
		}
		clientTLS[s.Name] = tc
	}
	if old := rt.backends[bc.Name]; old != nil && sameServers(old.cfg, bc) && sameDirectorOptions(old.cfg, bc) {
		return &backendBuild{b: old, reused: true, cfg: bc, clientTLS: clientTLS}, nil
	}
	b := &backend{cfg: bc, clientTLS: clientTLS, checkers: make(map[string]*checks.Checker), onDown: rt.closeServerSessions}
	balance, err := director.ParseBalance(string(bc.Balance))
	if err != nil {
		return nil, err
	}
	opts := director.Options{
		Name:          bc.Name,
		Balance:       balance,
		UserExpire:    bc.UserExpire.D(),
		DefaultDomain: bc.DefaultDomain,
		AllBackups:    bc.AllBackups,
		ErrorLimit:    bc.ErrorLimit,
		Logger:        rt.log, // the director names the backend in every line
		OnPassiveDown: b.passiveDown,
	}
	if bc.Check.Type == config.CheckTypeNone {
		// Passive health marks a server down until its checks pass again;
		// without checks nothing would ever bring it back ("none": servers
		// are always up), as HAProxy's observe needs check.
		opts.ErrorLimit = 0
	}
	if bc.UserExpire == 0 {
		opts.UserExpire = -1 // 0 in the config: forget users as soon as their last session ends
	}
	for _, s := range bc.Servers {
		opts.Servers = append(opts.Servers, director.ServerOptions{
			Name: s.Name, Weight: s.Weight, Backup: s.Backup, Admin: adminState(s.State), MaxConn: s.MaxConn,
		})
	}
	if b.dir, err = director.New(opts); err != nil {
		return nil, err
	}
	if err := b.buildChecks(cfg, rt.log); err != nil {
		return nil, err
	}
	return &backendBuild{b: b, cfg: bc, clientTLS: clientTLS}, nil
}

func serverName(s *config.Server) string {
	if s.TLS.ServerName != "" {
		return s.TLS.ServerName
	}
	return s.Host()
}

func adminState(s config.ServerState) director.AdminState {
	a, _ := director.ParseAdminState(string(s))
	return a
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
func (b *backend) buildChecks(cfg *config.Config, log *slog.Logger) error {
	c := b.cfg.Check
	if c.Type == config.CheckTypeNone {
		return nil
	}
	typ, err := checks.ParseType(string(c.Type))
	if err != nil {
		return fmt.Errorf("check.type: %w", err)
	}
	for _, s := range b.cfg.Servers {
		if !s.Check {
			continue
		}
		ph, err := checks.ParseProxyHeader(string(b.cfg.CheckSendProxy(s)))
		if err != nil {
			return fmt.Errorf("check.send_proxy: %w", err)
		}
		var tc *tls.Config
		if c.TLS {
			tc = b.clientTLS[s.Name]
			if tc == nil {
				// Checks over TLS to a server reached in plaintext by the
				// frontends: verify nothing, as HAProxy's "check-ssl verify none".
				tc = &tls.Config{InsecureSkipVerify: true, ServerName: serverName(s)}
			}
		}
		name := s.Name
		ck, err := checks.New(checks.Options{
			Server:       name,
			Type:         typ,
			Address:      b.cfg.CheckAddress(s),
			Inter:        c.Inter.D(),
			FastInter:    c.FastInter.D(),
			DownInter:    c.DownInter.D(),
			Timeout:      c.Timeout.D(),
			Spread:       c.Inter.D(),
			Rise:         c.Rise,
			Fall:         c.Fall,
			TLS:          tc,
			Proxy:        ph,
			User:         c.User,
			Password:     c.Password,
			SelectInbox:  c.SelectInbox,
			HTTPMethod:   c.HTTPMethod,
			HTTPPath:     c.HTTPPath,
			HTTPHost:     c.HTTPHost,
			ExpectStatus: c.ExpectStatus,
			Logger:       log.With("backend", b.cfg.Name),
			OnChange:     b.healthChanged,
		})
		if err != nil {
			return fmt.Errorf("server %s: check: %w", name, err)
		}
		b.checkers[name] = ck
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
func (bb *backendBuild) pickerFor(p config.Protocol) *picker {
	targets := make(map[string]proxy.Target, len(bb.cfg.Servers))
	for _, s := range bb.cfg.Servers {
		mode, _ := proxy.ParseProxyMode(string(s.SendProxy))
		targets[s.Name] = proxy.Target{
			Server:  s.Name,
			Address: s.DialAddress(p),
			Proxy:   mode,
			TLS:     bb.clientTLS[s.Name],
			XClient: s.XClient,
		}
	}
	return &picker{dir: bb.b.dir, targets: targets, recipients: p == config.ProtocolLMTP}
}

func timeouts(t config.Timeouts) proxy.Timeouts {
	return proxy.Timeouts{
		Handshake:   t.Handshake.D(),
		PreAuth:     t.Preauth.D(),
		Connect:     t.Connect.D(),
		ServerLogin: t.ServerLogin.D(),
		Idle:        t.Idle.D(),
	}
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
