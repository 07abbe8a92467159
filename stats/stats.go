package stats

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"

	"github.com/maildirector/maildirector/checks"
	"github.com/maildirector/maildirector/director"
	"github.com/maildirector/maildirector/proxy"
	"github.com/prometheus/client_golang/prometheus"
)

// Source is what the running service shows: its frontends, backends and
// live sessions. cmd implements it from the running configuration.
type Source interface {
	Frontends() []FrontendInfo
	Backends() []BackendInfo
	Sessions() []proxy.Info
}

// FrontendInfo describes a running frontend.
type FrontendInfo struct {
	Name, Protocol string
	// Backend names the frontend's backend; with routing rules, every
	// backend they may choose, comma-separated, its own first.
	Backend string
	Bind    []string
	MaxConn int // 0: only the global limit
}

// BackendInfo describes a running backend.
type BackendInfo struct {
	Name     string
	Director *director.Director
	Servers  []ServerInfo // in configuration order, as the director's
}

// ServerInfo describes one server of a running backend.
type ServerInfo struct {
	Name      string
	Address   string
	Check     *checks.Checker // nil: not checked
	CheckType string          // the check's type: tcp, imap, pop3, lmtp, smtp, http
}

// Options configure Stats.
type Options struct {
	Version string
	// HistoryStep is the time between two samples of the charts' history
	// (which keeps historyLen of them). Default 30s: an hour.
	HistoryStep time.Duration
	// Refresh is how often the dashboard asks for new figures. Default 2s.
	Refresh time.Duration
}

// Stats holds every counter and builds snapshots. Safe for concurrent use.
type Stats struct {
	opts  Options
	start time.Time
	host  string
	// registry holds the collectors of /metrics.
	registry *prometheus.Registry

	mu        sync.RWMutex
	src       Source
	frontends map[string]*Frontend
	servers   map[string]*Server // by "backend/server"
}

// New returns an empty Stats; call SetSource before Snapshot.
func New(opts Options) *Stats {
	if opts.HistoryStep <= 0 {
		opts.HistoryStep = 30 * time.Second
	}
	if opts.Refresh <= 0 {
		opts.Refresh = 2 * time.Second
	}
	host, _ := os.Hostname()
	s := &Stats{
		opts: opts, start: now(), host: host,
		frontends: make(map[string]*Frontend),
		servers:   make(map[string]*Server),
	}
	s.registry = s.newRegistry()
	return s
}

// SetSource sets what Snapshot shows.
func (s *Stats) SetSource(src Source) {
	s.mu.Lock()
	s.src = src
	s.mu.Unlock()
}

// SetRefresh changes the dashboard's refresh interval (a reload).
func (s *Stats) SetRefresh(d time.Duration) {
	if d <= 0 {
		d = 2 * time.Second
	}
	s.mu.Lock()
	s.opts.Refresh = d
	s.mu.Unlock()
}

// Frontend returns the counters of the frontend name, created on first
// use. Its sessions' bytes count for the servers each session was sent to
// (proxy.Info.Backend and Server).
func (s *Stats) Frontend(name string) *Frontend {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.frontends[name]
	if f == nil {
		f = &Frontend{st: s, name: name, ends: make(map[string]uint64)}
		s.frontends[name] = f
	}
	return f
}

// lookupFrontend returns the counters of the frontend name for reading:
// the running ones, or new ones (not yet wired) for a frontend that has
// not been built yet.
func (s *Stats) lookupFrontend(name string) *Frontend {
	s.mu.RLock()
	f := s.frontends[name]
	s.mu.RUnlock()
	if f != nil {
		return f
	}
	return s.Frontend(name)
}

// Server returns the counters of a backend's server, created on first use.
func (s *Stats) Server(backend, server string) *Server {
	key := backend + "/" + server
	s.mu.RLock()
	sv := s.servers[key]
	s.mu.RUnlock()
	if sv != nil {
		return sv
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if sv = s.servers[key]; sv == nil {
		sv = &Server{}
		s.servers[key] = sv
	}
	return sv
}

// Run samples the rates every second and the history every HistoryStep
// until ctx ends.
func (s *Stats) Run(ctx context.Context) {
	sec := time.NewTicker(time.Second)
	defer sec.Stop()
	hist := time.NewTicker(s.opts.HistoryStep)
	defer hist.Stop()
	s.sampleHistory() // a first point at once: the charts start drawing
	for {
		select {
		case <-ctx.Done():
			return
		case <-sec.C:
			s.sampleRates()
		case <-hist.C:
			s.sampleHistory()
		}
	}
}

func (s *Stats) sampleRates() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, f := range s.frontends {
		f.rate.sample(f.total.Load())
		f.reqRate.sample(f.requests.Load())
	}
}

// sampleHistory adds one point to every chart: each frontend's and
// server's live sessions and each server's last check latency.
func (s *Stats) sampleHistory() {
	snap, err := s.Snapshot()
	if err != nil {
		return
	}
	for _, fs := range snap.Frontends {
		f := s.lookupFrontend(fs.Name)
		f.mu.Lock()
		f.hist.add(float64(fs.Cur))
		f.mu.Unlock()
	}
	for _, b := range snap.Backends {
		for _, ss := range b.Servers {
			sv := s.Server(b.Name, ss.Name)
			sv.mu.Lock()
			sv.sessions.add(float64(ss.Cur))
			lat := -1.0 // no check: a gap in the chart
			if ss.Check != nil && !ss.Check.At.IsZero() {
				lat = ss.Check.DurationMS
			}
			sv.checkMS.add(lat)
			sv.mu.Unlock()
		}
	}
}

// errNoSource is Snapshot's error before SetSource.
var errNoSource = errors.New("stats: no source yet")
