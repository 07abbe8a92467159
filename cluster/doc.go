// Package cluster shares placement among several maildirector nodes through
// etcd: sticky user → server assignments with their expiry, operator moves
// and freezes, server admin states and weights, and each node's heartbeat.
//
// Every node keeps the whole shared state in memory (its directors' sticky
// tables and a small cache of etcd revisions), kept current by one watch on
// the key prefix, so that a login of a known user reads only local memory.
// etcd is written when a user gets a new server (a compare-and-swap through
// director.Shared, so that racing nodes agree), when an operator changes
// something, and for expiry refreshes, batched once per Options.Refresh.
//
// When etcd cannot be reached the node is degraded: placement goes on from
// the local tables and hashing (never a failed login because of etcd), and
// when etcd answers again the node reloads the shared state, publishes the
// assignments it made alone, and adopts the fleet's answer where they differ.
//
//	c, err := cluster.New(cluster.Options{Endpoints: eps, Node: "mx1", Holds: holds})
//	opts.Shared = c           // director.Options, for every backend
//	dir, _ := director.New(opts)
//	c.Attach("imap", dir, 15*time.Minute)
//	go c.Run(ctx)
//
// Keys under Options.Prefix (docs/cluster.md has the sizes):
//
//	a/BACKEND/USER     assignment: {"s":server,"m":moved,"n":node,"b":bucket}, on a bucket lease
//	s/BACKEND/SERVER   operator override: {"state":"maint","weight":50}
//	f/USER             freeze (value: the node that froze)
//	n/NODE             heartbeat: node info, on the node's own lease
package cluster
