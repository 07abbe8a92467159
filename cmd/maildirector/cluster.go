package main

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/maildirector/maildirector/cluster"
	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/director"
	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/stats"
)

// fleet is the running [cluster]: the node's membership and its Run loop.
// A reload keeps it as it is: [cluster] changes take effect at restart.
type fleet struct {
	c    *cluster.Cluster
	conf config.Cluster
	stop context.CancelFunc
	done chan struct{}
}

// joinCluster builds the node's cluster membership from cfg; it starts in
// startCluster, once the directors are attached.
func (rt *runtime) joinCluster(cfg config.Cluster) error {
	if !cfg.Enabled() {
		return nil
	}
	opts, err := clusterOptions(cfg)
	if err != nil {
		return err
	}
	opts.Holds = rt.holds
	opts.Logger = rt.log
	opts.OnMove = rt.clusterMoved
	opts.OnFreeze = rt.clusterFrozen
	c, err := cluster.New(opts)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	rt.fleet = &fleet{c: c, conf: cfg}
	return nil
}

// startCluster runs the membership and waits, up to cluster.dial_timeout,
// for the first synchronisation, so that a restarted node serves its
// users' assignments from the start; past that it serves degraded.
func (rt *runtime) startCluster() {
	f := rt.fleet
	if f == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.stop, f.done = cancel, make(chan struct{})
	go rt.runCluster(ctx)
	deadline := time.Now().Add(f.conf.DialTimeout.D())
	for f.c.Degraded() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if f.c.Degraded() {
		rt.log.Warn("cluster: not synchronised at start, serving degraded", "endpoints", f.conf.Endpoints)
	}
}

// runCluster is the membership's goroutine; it ends with stopCluster.
func (rt *runtime) runCluster(ctx context.Context) {
	defer close(rt.fleet.done)
	rt.fleet.c.Run(ctx)
}

// stopCluster ends the membership (shutdown); the heartbeat key expires
// with its lease.
func (rt *runtime) stopCluster() {
	f := rt.fleet
	if f == nil || f.stop == nil {
		return
	}
	f.stop()
	<-f.done
	f.c.Close()
}

// shared is what directors get as director.Options.Shared: nil without a
// cluster (a nil *cluster.Cluster in the interface would not be nil).
func (rt *runtime) shared() director.Shared {
	if rt.fleet == nil {
		return nil
	}
	return rt.fleet.c
}

// attachCluster hands a committed backend's director to the cluster.
func (rt *runtime) attachCluster(name string, bb *backendBuild) {
	if rt.fleet == nil {
		return
	}
	rt.fleet.c.Attach(name, bb.b.dir, bb.cfg.UserExpire.D(), !bb.reused)
}

// clusterMoved ends the user's sessions in backend that are not on server:
// the fleet placed the user there (an operator's move on another node, or
// a reconcile after etcd came back). LMTP sessions are left alone.
func (rt *runtime) clusterMoved(backend, user, server string) {
	n := rt.srv.Kick(func(i proxy.Info) bool {
		return i.User == user && i.Server != server && i.Protocol != string(config.ProtocolLMTP) && i.Backend == backend
	}, "kicked")
	if n > 0 {
		rt.log.Info("cluster: user placed elsewhere by the fleet, sessions here ended", "backend", backend, "user", user, "server", server, "kicked", n)
	}
}

// clusterFrozen ends the sessions of a user another node froze.
func (rt *runtime) clusterFrozen(user string) {
	n := rt.srv.Kick(func(i proxy.Info) bool {
		return i.User == user && i.Protocol != string(config.ProtocolLMTP)
	}, "kicked")
	rt.log.Info("cluster: user frozen by an operator on another node", "user", user, "kicked", n)
}

// fleetReady refuses an operator change while the node is degraded: it
// would reach this node only.
func (rt *runtime) fleetReady() error {
	if rt.fleet != nil && rt.fleet.c.Degraded() {
		return cluster.ErrDegraded
	}
	return nil
}

// fleetDo carries an operator change to the fleet first, when there is
// one; the caller applies it here after (the watch would too).
func (rt *runtime) fleetDo(f func(*cluster.Cluster) error) error {
	if rt.fleet == nil {
		return nil
	}
	return f(rt.fleet.c)
}

// Cluster implements stats.ClusterSource: the node's view of the fleet,
// and with withEndpoints each etcd member's health (network requests).
func (rt *runtime) Cluster(withEndpoints bool) *stats.ClusterSnapshot {
	if rt.fleet == nil {
		return nil
	}
	st := rt.fleet.c.Status()
	out := &stats.ClusterSnapshot{
		Node: st.Node, Degraded: st.Degraded, Since: st.Since, LastErr: st.LastErr, Revision: st.Revision,
		Assignments: st.Assignments, Writes: st.Writes, Claims: st.Claims, Nodes: []stats.ClusterNode{},
	}
	for _, n := range st.Nodes {
		out.Nodes = append(out.Nodes, stats.ClusterNode{
			Name: n.Name, Heartbeat: time.UnixMilli(n.Heartbeat), Started: time.Unix(n.Started, 0),
			Revision: n.Revision, Down: n.Down,
		})
	}
	if withEndpoints {
		for _, e := range rt.fleet.c.Health(context.Background()) {
			out.Endpoints = append(out.Endpoints, stats.ClusterEndpoint{
				Endpoint: e.Endpoint, Healthy: e.Healthy, Leader: e.Leader, Version: e.Version, Revision: e.Revision, Err: e.Err,
			})
		}
	}
	return out
}

// clusterReloaded tells the cluster about the backends a reload dropped
// (running: those that stay), and says when [cluster] itself changed,
// which takes a restart. Call with rt.mu held.
func (rt *runtime) clusterReloaded(conf config.Cluster, running map[string]*backend) {
	if rt.cfg != nil && !reflect.DeepEqual(rt.cfg.Cluster, conf) {
		rt.log.Warn("[cluster] changed: it takes effect at the next restart, the node keeps its current membership")
	}
	if rt.fleet == nil {
		return
	}
	for name := range rt.backends {
		if running[name] == nil {
			rt.fleet.c.Detach(name)
		}
	}
}
