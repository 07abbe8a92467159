package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrDegraded is an operator change refused while etcd is unreachable: it
// would reach this node only, which is what the cluster is there to
// prevent.
var ErrDegraded = errors.New("cluster degraded: etcd unreachable, operator changes are refused until it answers")

// opTimeout bounds an operator's request: longer than a login's.
func (c *Cluster) opTimeout() time.Duration { return max(c.opts.RequestTimeout, 5*time.Second) }

func (c *Cluster) do(ops ...clientv3.Op) error {
	if c.degraded.Load() {
		return ErrDegraded
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opTimeout())
	defer cancel()
	if _, err := c.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		c.fail(err)
		return fmt.Errorf("cluster: %w", err)
	}
	c.writes.Add(uint64(len(ops)))
	return nil
}

// Move records an operator's move of user (normalised) of backend to
// server for the whole fleet; every node applies it from its watch.
func (c *Cluster) Move(backend, user, server string) error {
	if c.degraded.Load() {
		return ErrDegraded
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.opTimeout())
	defer cancel()
	lease, bucket, err := c.bucketLease(ctx, c.backend(backend))
	if err != nil {
		c.fail(err)
		return fmt.Errorf("cluster: %w", err)
	}
	v := assignment{Server: server, Moved: true, Node: c.opts.Node, Bucket: bucket}
	return c.do(clientv3.OpPut(c.key(kindAssign, backend, user), mustJSON(v), clientv3.WithLease(lease)))
}

// Forget deletes the assignments of users of backend (a flush).
func (c *Cluster) Forget(backend string, users []string) error {
	for len(users) > 0 {
		n := min(len(users), batchOps)
		ops := make([]clientv3.Op, 0, n)
		for _, u := range users[:n] {
			ops = append(ops, clientv3.OpDelete(c.key(kindAssign, backend, u)))
		}
		if err := c.do(ops...); err != nil {
			return err
		}
		users = users[n:]
	}
	return nil
}

// SetServer records an operator's admin state and/or weight of server of
// backend for the fleet (nil/"" leaves that part as it is).
func (c *Cluster) SetServer(backend, server, state string, weight *int) error {
	c.mu.Lock()
	o := c.overrides[backend+"/"+server]
	c.mu.Unlock()
	if state != "" {
		o.State = state
	}
	if weight != nil {
		o.Weight = weight
	}
	return c.do(clientv3.OpPut(c.key(kindServer, backend, server), mustJSON(o)))
}

// Freeze freezes user (normalised) on every node.
func (c *Cluster) Freeze(user string) error {
	return c.do(clientv3.OpPut(c.key(kindFrozen, user), c.opts.Node))
}

// Release lifts user's freeze on every node.
func (c *Cluster) Release(user string) error {
	return c.do(clientv3.OpDelete(c.key(kindFrozen, user)))
}
