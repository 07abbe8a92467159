package cluster

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/maildirector/maildirector/director"
)

// Defaults for zero Options fields.
const (
	DefaultPrefix         = "/maildirector"
	DefaultDialTimeout    = 2 * time.Second
	DefaultRequestTimeout = time.Second
	DefaultHeartbeat      = 2 * time.Second
	DefaultNodeTTL        = 10 * time.Second
	DefaultRefresh        = time.Minute
	// viewPoll is how often the node looks for a change in the servers
	// its checks see down, which it publishes at once: another node may
	// be waiting for it before it moves a user.
	viewPoll = 200 * time.Millisecond
	// batchOps bounds the operations of one refresh transaction (etcd's
	// --max-txn-ops defaults to 128).
	batchOps = 100
	// unclaimQueue bounds the failed logins' claims waiting for their
	// delete; past it they expire with their lease.
	unclaimQueue = 4096
)

// Options configures a Cluster.
type Options struct {
	// Endpoints are the etcd members' client URLs or host:port. Required.
	Endpoints []string
	// Prefix is the key prefix of the fleet. Empty means DefaultPrefix.
	Prefix string
	// Node is this node's name, unique in the fleet. Required.
	Node string
	// TLS, if set, is the client TLS toward etcd (certificate, CA).
	TLS *tls.Config
	// DialTimeout bounds connecting and the full reads of a resync. Zero
	// means DefaultDialTimeout.
	DialTimeout time.Duration
	// RequestTimeout bounds a request on the login path (Claim) and the
	// heartbeat. Zero means DefaultRequestTimeout.
	RequestTimeout time.Duration
	// Heartbeat is the heartbeat period. Zero means DefaultHeartbeat.
	Heartbeat time.Duration
	// NodeTTL is the heartbeat key's lease. Zero means DefaultNodeTTL.
	NodeTTL time.Duration
	// Refresh is the expiry refresh period. Zero means DefaultRefresh.
	Refresh time.Duration
	// Holds are the process's freezes, kept in step with the fleet's.
	// Nil means freezes are not shared.
	Holds *director.Holds
	// OnMove is called (not under a lock) when the fleet placed user of
	// backend on server while this node has live sessions of the user:
	// the caller ends those that are on another server. Nil: nothing.
	OnMove func(backend, user, server string)
	// OnFreeze is called when another node froze user: the caller ends
	// the user's sessions here. Nil: nothing.
	OnFreeze func(user string)
	// Logger receives state changes (degraded, reconciled) at Warn and
	// Info. Nil means discard.
	Logger *slog.Logger
}

// attached is one backend's director.
type attached struct {
	dir        *director.Director
	userExpire time.Duration
}

// cached is what the node knows of one assignment key.
type cached struct {
	assignment
	rev  int64     // the key's mod revision
	seen time.Time // when it was applied here
}

// Cluster is one node's view of the fleet. Safe for concurrent use.
type Cluster struct {
	opts   Options
	prefix string // Options.Prefix + "/"
	cli    *clientv3.Client
	log    *slog.Logger

	degraded atomic.Bool
	writes   atomic.Uint64 // keys written (puts and deletes that took effect)
	claims   atomic.Uint64 // Claim calls that asked etcd
	resync   chan struct{} // a request failed: end the session, resync
	unclaims chan unclaim  // claims of failed logins, to delete
	claimq   chan claimReq // claims waiting for their group commit

	mu        sync.Mutex
	backends  map[string]*attached
	assign    map[string]*cached            // by "backend/user"
	overrides map[string]override           // by "backend/server"
	frozen    map[string]bool               // users
	nodes     map[string]NodeInfo           // by name, this one included
	leases    map[[2]int64]clientv3.LeaseID // by {bucket, ttl seconds}
	applied   int64                         // the revision applied
	since     time.Time                     // of the degraded state, or of the last resync
	lastErr   string
	published string // the last node value written
	started   time.Time
}

// New returns a Cluster for opts; it connects lazily (Run).
func New(opts Options) (*Cluster, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("cluster: no etcd endpoints")
	}
	if opts.Node == "" || strings.Contains(opts.Node, "/") {
		return nil, fmt.Errorf("cluster: node name %q: want a name without '/'", opts.Node)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&opts.DialTimeout, DefaultDialTimeout)
	def(&opts.RequestTimeout, DefaultRequestTimeout)
	def(&opts.Heartbeat, DefaultHeartbeat)
	def(&opts.NodeTTL, DefaultNodeTTL)
	def(&opts.Refresh, DefaultRefresh)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   opts.Endpoints,
		DialTimeout: opts.DialTimeout,
		TLS:         opts.TLS,
		// The client's own log is zap; its retries are ours to report.
		Logger: zap.NewNop(),
		// gRPC backs off up to 2 minutes between reconnects by default:
		// a node would stay degraded that long after etcd came back.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: opts.DialTimeout,
		})},
		DialKeepAliveTime:    opts.Heartbeat * 2,
		DialKeepAliveTimeout: opts.RequestTimeout * 2,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: etcd client: %w", err)
	}
	c := &Cluster{
		opts: opts, prefix: opts.Prefix + "/", cli: cli, log: log.With("node", opts.Node),
		resync:    make(chan struct{}, 1),
		unclaims:  make(chan unclaim, unclaimQueue),
		claimq:    make(chan claimReq, claimQueue),
		backends:  make(map[string]*attached),
		assign:    make(map[string]*cached),
		overrides: make(map[string]override),
		frozen:    make(map[string]bool),
		nodes:     make(map[string]NodeInfo),
		leases:    make(map[[2]int64]clientv3.LeaseID),
		since:     time.Now(), started: time.Now(),
	}
	c.degraded.Store(true) // until the first load
	c.lastErr = "not synchronised yet"
	return c, nil
}

// Close closes the etcd client. Run must have returned.
func (c *Cluster) Close() error { return c.cli.Close() }

// Node returns this node's name.
func (c *Cluster) Node() string { return c.opts.Node }

// Degraded reports whether the node works without etcd now.
func (c *Cluster) Degraded() bool { return c.degraded.Load() }

// Attach makes dir the director of backend (a new one after a reload, or
// at start): the fleet's overrides are applied to it, and to a fresh
// director the assignments too.
func (c *Cluster) Attach(backend string, dir *director.Director, userExpire time.Duration, fresh bool) {
	c.mu.Lock()
	c.backends[backend] = &attached{dir: dir, userExpire: userExpire}
	ovs := maps.Clone(c.overrides)
	var as map[string]*cached
	if fresh {
		as = maps.Clone(c.assign)
	}
	c.mu.Unlock()
	for k, o := range ovs {
		if b, s, _ := strings.Cut(k, "/"); b == backend {
			applyOverride(dir, s, o)
		}
	}
	for k, a := range as {
		if b, u, _ := strings.Cut(k, "/"); b == backend {
			c.applyAssign(backend, u, a.assignment)
		}
	}
}

// Detach forgets backend (gone from the configuration).
func (c *Cluster) Detach(backend string) {
	c.mu.Lock()
	delete(c.backends, backend)
	c.mu.Unlock()
}

func (c *Cluster) backend(name string) *attached {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.backends[name]
}

// Run keeps the node in the fleet until ctx ends: a session (load, watch,
// heartbeat, refresh) while etcd answers, the degraded state while it does
// not, a resync when it answers again.
func (c *Cluster) Run(ctx context.Context) {
	batcher := make(chan struct{})
	go c.batchClaims(ctx, batcher)
	defer func() { <-batcher }()
	for ctx.Err() == nil {
		err := c.session(ctx)
		if ctx.Err() != nil {
			return
		}
		c.setDegraded(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(c.opts.Heartbeat, time.Second)):
		}
	}
}

// fail reports a failed request: the node is degraded until the session
// starts again and resyncs.
func (c *Cluster) fail(err error) {
	c.setDegraded(err)
	select {
	case c.resync <- struct{}{}:
	default:
	}
}

func (c *Cluster) setDegraded(err error) {
	c.mu.Lock()
	c.lastErr = err.Error()
	c.mu.Unlock()
	if !c.degraded.Swap(true) {
		c.mu.Lock()
		c.since = time.Now()
		c.mu.Unlock()
		c.log.Warn("cluster degraded: etcd unreachable, placing users from the local tables", "err", err)
	}
}

// session runs one connected period; it returns why it ended.
func (c *Cluster) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Drop a resync asked before this session.
	select {
	case <-c.resync:
	default:
	}
	rctx, rcancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	lease, err := c.cli.Grant(rctx, int64(max(c.opts.NodeTTL/time.Second, 2)))
	if err != nil {
		rcancel()
		return fmt.Errorf("grant node lease: %w", err)
	}
	resp, err := c.cli.Get(rctx, c.prefix, clientv3.WithPrefix())
	rcancel()
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	// Keep the lease before anything else: a slow reconcile must not let
	// the heartbeat key expire.
	ka, err := c.cli.KeepAlive(ctx, lease.ID)
	if err != nil {
		return fmt.Errorf("keep node lease: %w", err)
	}
	c.load(resp)
	wch := c.cli.Watch(clientv3.WithRequireLeader(ctx), c.prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	if err := c.reconcile(ctx); err != nil {
		return err
	}
	if err := c.heartbeat(ctx, lease.ID, true); err != nil {
		return err
	}
	c.mu.Lock()
	c.since, c.lastErr = time.Now(), ""
	c.mu.Unlock()
	if c.degraded.Swap(false) {
		c.log.Info("cluster synchronised", "revision", resp.Header.Revision, "endpoints", strings.Join(c.opts.Endpoints, ","))
	}

	hb := time.NewTicker(c.opts.Heartbeat)
	defer hb.Stop()
	view := time.NewTicker(viewPoll)
	defer view.Stop()
	refresh := time.NewTicker(c.opts.Refresh)
	defer refresh.Stop()
	lastRefresh := time.Now()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.resync:
			return errors.New("a request to etcd failed")
		case _, ok := <-ka:
			if !ok {
				return errors.New("node lease lost")
			}
		case w, ok := <-wch:
			if !ok {
				return errors.New("watch ended")
			}
			if err := w.Err(); err != nil {
				return fmt.Errorf("watch: %w", err)
			}
			c.applyEvents(w.Events, w.Header.Revision)
		case <-hb.C:
			if err := c.heartbeat(ctx, lease.ID, true); err != nil {
				return err
			}
		case <-view.C:
			if err := c.heartbeat(ctx, lease.ID, false); err != nil {
				return err
			}
		case u := <-c.unclaims:
			if err := c.deleteUnclaimed(ctx, u); err != nil {
				return err
			}
		case now := <-refresh.C:
			if err := c.refresh(ctx, lastRefresh); err != nil {
				return err
			}
			lastRefresh = now
		}
	}
}

// heartbeat writes the node key: always with force, else only when the
// servers the node sees down changed.
func (c *Cluster) heartbeat(ctx context.Context, lease clientv3.LeaseID, force bool) error {
	info := NodeInfo{Name: c.opts.Node, Started: c.started.Unix(), Down: c.downView()}
	c.mu.Lock()
	changed := mustJSON(info.Down) != c.published
	info.Revision = c.applied
	c.mu.Unlock()
	if !force && !changed {
		return nil
	}
	info.Heartbeat = time.Now().UnixMilli()
	rctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	if _, err := c.cli.Put(rctx, c.key(kindNode, c.opts.Node), mustJSON(info), clientv3.WithLease(lease)); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	c.mu.Lock()
	c.published = mustJSON(info.Down)
	c.nodes[info.Name] = info
	c.mu.Unlock()
	return nil
}

// downView lists, by backend, the servers this node's checks see down.
func (c *Cluster) downView() map[string][]string {
	c.mu.Lock()
	bs := maps.Clone(c.backends)
	c.mu.Unlock()
	var out map[string][]string
	for _, name := range slices.Sorted(maps.Keys(bs)) {
		for _, s := range bs[name].dir.Servers() {
			if !s.Up {
				if out == nil {
					out = make(map[string][]string)
				}
				out[name] = append(out[name], s.Name)
			}
		}
	}
	return out
}

// load replaces the caches with a full read and applies it.
func (c *Cluster) load(resp *clientv3.GetResponse) {
	assign := make(map[string]*cached)
	ovs := make(map[string]override)
	frozen := make(map[string]bool)
	nodes := make(map[string]NodeInfo)
	for _, kv := range resp.Kvs {
		k, err := parseKey(strings.TrimPrefix(string(kv.Key), c.prefix))
		if err != nil {
			continue
		}
		switch k.kind {
		case kindAssign:
			if a, err := decodeAssignment(kv.Value); err == nil {
				assign[k.backend+"/"+k.name] = &cached{assignment: a, rev: kv.ModRevision}
			}
		case kindServer:
			var o override
			if json.Unmarshal(kv.Value, &o) == nil {
				ovs[k.backend+"/"+k.name] = o
			}
		case kindFrozen:
			frozen[k.name] = true
		case kindNode:
			var n NodeInfo
			if json.Unmarshal(kv.Value, &n) == nil {
				nodes[k.name] = n
			}
		}
	}
	c.mu.Lock()
	c.assign, c.overrides, c.frozen, c.nodes = assign, ovs, frozen, nodes
	c.applied = resp.Header.Revision
	bs := maps.Clone(c.backends)
	c.mu.Unlock()
	for k, o := range ovs {
		b, s, _ := strings.Cut(k, "/")
		if a := bs[b]; a != nil {
			applyOverride(a.dir, s, o)
		}
	}
	if h := c.opts.Holds; h != nil {
		for u := range frozen {
			if h.Freeze(u) && c.opts.OnFreeze != nil {
				c.opts.OnFreeze(u)
			}
		}
		// The fleet's freezes are the truth: one this node kept (its
		// state file, or a release it missed while away) goes.
		for _, u := range h.Held() {
			if !frozen[u] {
				h.Release(u)
			}
		}
	}
	for k, a := range assign {
		b, u, _ := strings.Cut(k, "/")
		c.applyAssign(b, u, a.assignment)
		c.markSeen(k)
	}
}

func (c *Cluster) markSeen(key string) {
	now := time.Now()
	c.mu.Lock()
	if e := c.assign[key]; e != nil {
		e.seen = now
	}
	c.mu.Unlock()
}

// reconcile publishes the assignments this node made alone (degraded, or
// before its first load) that etcd does not have; where another node
// placed the user elsewhere meanwhile, the fleet's answer wins here.
func (c *Cluster) reconcile(ctx context.Context) error {
	c.mu.Lock()
	bs := maps.Clone(c.backends)
	c.mu.Unlock()
	for name, a := range bs {
		var missing []director.Entry
		for _, e := range a.dir.Entries(time.Time{}) {
			c.mu.Lock()
			_, known := c.assign[name+"/"+e.User]
			c.mu.Unlock()
			if !known {
				missing = append(missing, e)
			}
		}
		if len(missing) == 0 {
			continue
		}
		n, err := c.createAll(ctx, name, a, missing)
		if err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		c.log.Info("cluster reconciled: assignments made without etcd published", "backend", name, "users", len(missing), "written", n)
	}
	return nil
}

// Status is the node's view of the fleet, for `ctl show cluster`, the
// dashboard and the metrics.
type Status struct {
	Node      string
	Endpoints []string
	Degraded  bool
	// Since is when the current state (degraded or synchronised) began.
	Since   time.Time
	LastErr string
	// Revision is the etcd revision this node applied.
	Revision int64
	// Assignments is the number of assignment keys known.
	Assignments int
	Frozen      int
	// Writes counts the keys this node wrote; Claims the new placements
	// it asked etcd about.
	Writes, Claims uint64
	Nodes          []NodeInfo
}

// Status returns the node's view now.
func (c *Cluster) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{
		Node: c.opts.Node, Endpoints: c.opts.Endpoints, Degraded: c.degraded.Load(), Since: c.since, LastErr: c.lastErr,
		Revision: c.applied, Assignments: len(c.assign), Frozen: len(c.frozen),
		Writes: c.writes.Load(), Claims: c.claims.Load(),
	}
	for _, n := range slices.Sorted(maps.Keys(c.nodes)) {
		st.Nodes = append(st.Nodes, c.nodes[n])
	}
	return st
}

// Endpoint is one etcd member's answer to a status request.
type Endpoint struct {
	Endpoint string
	Healthy  bool
	Version  string
	Leader   bool
	Revision int64
	Err      string
}

// Health asks every endpoint for its status, each within the request
// timeout.
func (c *Cluster) Health(ctx context.Context) []Endpoint {
	out := make([]Endpoint, len(c.opts.Endpoints))
	var wg sync.WaitGroup
	for i, ep := range c.opts.Endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
			defer cancel()
			out[i] = Endpoint{Endpoint: ep}
			st, err := c.cli.Status(rctx, ep)
			if err != nil {
				out[i].Err = err.Error()
				return
			}
			out[i].Healthy = st.Leader != 0
			out[i].Version = st.Version
			out[i].Leader = st.Leader == st.Header.MemberId
			out[i].Revision = st.Header.Revision
		}()
	}
	wg.Wait()
	return out
}
