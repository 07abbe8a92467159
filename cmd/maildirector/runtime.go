package main

import (
	"context"
	"fmt"
	"log/slog"
	goruntime "runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/director"
	httpfe "github.com/maildirector/maildirector/protocols/http"
	"github.com/maildirector/maildirector/protocols/lmtp"
	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/stats"
)

// runtime is the running service: the engine, one director and its checkers
// per backend, and the configuration snapshot they were built from.
type runtime struct {
	log   *slog.Logger
	srv   *proxy.Server
	stats *stats.Stats // nil in `check`
	// holds are the users an operator froze, shared by every director.
	holds *director.Holds
	// state is what operators changed at run time, applied after every
	// reload (and saved to control.state_file).
	state   *runState
	ctlSock *controlSocket // nil when control.socket is unset
	// fleet is the node's [cluster] membership; nil without one.
	fleet   *fleet
	path    string // the configuration file
	level   *slog.LevelVar
	started time.Time
	// statsLn is the [stats] listener; nil when none is configured.
	statsLn *statsListener
	// stopStats ends the statistics' sampling.
	stopStats context.CancelFunc

	// inh holds the listening sockets given at start (systemd socket
	// activation, an upgrade) until the first configuration takes them.
	inh    *inherited
	notify *notifier
	// handover is closed when a new process has taken the listening
	// sockets over (HandOver): this one drains and exits.
	handover  chan struct{}
	upgrading atomic.Bool // a `ctl upgrade` waits for its new process

	mu         sync.Mutex // serialises reloads
	handedOver bool       // handover is closed
	cfg        *config.Config
	backends   map[string]*backend
	lmtp       []*lmtp.Frontend // running LMTP frontends, whose server pools need closing
	// pendingLMTP collects the LMTP frontends an apply builds.
	pendingLMTP []*lmtp.Frontend
	// http are the running HTTP frontends (their client connections and
	// server pools end when a reload replaces them); pendingHTTP those an
	// apply builds.
	http, pendingHTTP []*httpfe.Frontend
}

// newRuntime starts serving cfg. Listening sockets come from inh where it
// has one for the address (nil: none), else they are opened.
func newRuntime(cfg *config.Config, log *slog.Logger, path string, level *slog.LevelVar, inh *inherited) (*runtime, error) {
	state, err := loadState(cfg.Control.StateFile)
	if err != nil {
		return nil, err
	}
	rt := &runtime{
		log: log, path: path, level: level, started: time.Now(), state: state,
		inh: inh, notify: newNotifier(log), handover: make(chan struct{}),
		srv:      proxy.New(proxy.Options{Logger: log, MaxConn: cfg.Global.MaxConn, Listen: inh.listen}),
		stats:    stats.New(stats.Options{Version: version, Refresh: cfg.Stats.Refresh.D()}),
		holds:    director.NewHolds(),
		backends: make(map[string]*backend),
	}
	rt.stats.SetSource(rt)
	for _, u := range state.Frozen {
		rt.holds.Freeze(u)
	}
	if err := rt.joinCluster(cfg.Cluster); err != nil {
		rt.srv.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	rt.stopStats = cancel
	go rt.stats.Run(ctx)
	if err := rt.apply(cfg); err != nil {
		cancel()
		rt.srv.Close()
		return nil, err
	}
	rt.startCluster()
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
	rt.pendingLMTP, rt.pendingHTTP = nil, nil
	env := &backendEnv{log: rt.log, onDown: rt.closeServerSessions, stats: rt.stats, holds: rt.holds, freezeWait: cfg.Control.FreezeWait.D(), shared: rt.shared()}
	for _, name := range cfg.BackendNames() {
		bb, err := buildBackend(cfg.Backends[name], rt.backends[name], env)
		if err != nil {
			rt.abortLocked(b)
			return nil, fmt.Errorf("backend.%s: %w", name, err)
		}
		b.backends[name] = bb
	}
	for _, name := range cfg.FrontendNames() {
		f := cfg.Frontends[name]
		fe, err := rt.buildFrontend(f, b.backends)
		if err != nil {
			rt.abortLocked(b)
			return nil, fmt.Errorf("frontend.%s: %w", name, err)
		}
		b.frontends = append(b.frontends, fe)
	}
	return b, nil
}

// abortLocked drops a build that will not run.
func (rt *runtime) abortLocked(*build) {
	for _, h := range rt.pendingLMTP {
		h.Close()
	}
	rt.pendingLMTP = nil
	for _, h := range rt.pendingHTTP {
		h.Close()
	}
	rt.pendingHTTP = nil
	// Nothing else of a build runs before commit: directors hold no
	// goroutine and checkers start in commit.
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
	statsLn, err := rt.statsListenerLocked(cfg.Stats)
	if err != nil {
		rt.abortLocked(b)
		return err
	}
	if err := rt.srv.Configure(b.frontends); err != nil {
		if statsLn != rt.statsLn {
			statsLn.close()
		}
		rt.abortLocked(b)
		return err
	}
	if statsLn != rt.statsLn {
		rt.statsLn.close()
		rt.statsLn = statsLn
	}
	setThreads(cfg.Global.Threads)
	if rt.stats != nil && !sameSocket(rt.ctlSock.cfg(), cfg.Control) {
		// A changed socket setting reopens it; a failure leaves none
		// (the reload itself already took effect) and says so.
		rt.ctlSock.close()
		rt.ctlSock = nil
		if rt.ctlSock, err = rt.openControl(cfg.Control); err != nil {
			rt.log.Error("control socket not open", "err", err)
		}
	}
	rt.stats.SetRefresh(cfg.Stats.Refresh.D())
	// Past the last check that can fail: only now do running backends
	// change, so a failed reload leaves everything as it was.
	backends := make(map[string]*backend, len(b.backends))
	for name, old := range rt.backends {
		if bb := b.backends[name]; bb == nil || bb.b != old {
			old.close()
		}
	}
	for name, bb := range b.backends {
		bb.commit()
		backends[name] = bb.b
		if rt.state != nil {
			rt.state.applyTo(name, bb.b.dir, !bb.reused, bb.cfg.UserExpire.D())
		}
		rt.attachCluster(name, bb)
	}
	rt.clusterReloaded(cfg.Cluster, backends)
	rt.swapLMTPLocked()
	rt.cfg, rt.backends = cfg, backends
	return nil
}

// shutdown stops accepting, ends every session at a clean point of its
// protocol within grace (closing what is left then), and stops the
// checkers. After a handover (an upgrade) the sessions still
// logging in finish their login first (proxy.Server.Handover).
func (rt *runtime) shutdown(grace time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	rt.mu.Lock()
	handedOver := rt.handedOver
	rt.mu.Unlock()
	var err error
	if handedOver {
		err = rt.srv.Handover(ctx)
	} else {
		err = rt.srv.Shutdown(ctx)
	}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.stopStats()
	rt.stopCluster()
	rt.statsLn.close()
	rt.ctlSock.close()
	for _, b := range rt.backends {
		b.close()
	}
	for _, h := range rt.lmtp {
		h.Close()
	}
	for _, h := range rt.http {
		h.Close()
	}
	return err
}

// setThreads applies global.threads: n threads run Go code at once, or
// Go's default (one per usable CPU) for 0.
func setThreads(n int) {
	if n > 0 {
		goruntime.GOMAXPROCS(n)
	} else {
		goruntime.SetDefaultGOMAXPROCS()
	}
}
