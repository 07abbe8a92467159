package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/maildirector/maildirector/director"
)

var _ director.Shared = (*Cluster)(nil)

// ErrServesElsewhere is Claim's refusal: the user's server is still up
// for another node, whose sessions of the user may be live there.
var ErrServesElsewhere = errors.New("the user's server is up for another node")

// claimAttempts bounds the compare-and-swap retries of one Claim (each
// lost race reads the winner, so a second attempt rarely loses again).
const claimAttempts = 3

// Claim implements director.Shared: the compare-and-swap of a new
// placement. A user the fleet already placed on a server usable here goes
// there; one whose server is unusable here moves only if no other live
// node sees that server up (nor is it in maintenance for the fleet);
// otherwise the login is refused, so that one user never has sessions on
// two servers. Degraded, the local choice stands at once.
func (c *Cluster) Claim(backend, user, server string, usable func(string) bool) (string, error) {
	if c.degraded.Load() {
		return server, nil
	}
	key := backend + "/" + user
	c.mu.Lock()
	cur := c.assign[key]
	c.mu.Unlock()
	for range claimAttempts {
		cmp := clientv3.Compare(clientv3.CreateRevision(c.key(kindAssign, backend, user)), "=", 0)
		if cur != nil {
			if cur.Server == server {
				return server, nil
			}
			if usable(cur.Server) {
				return cur.Server, nil
			}
			if n := c.servesElsewhere(backend, cur.Server); n != "" {
				return "", fmt.Errorf("%w: %s for node %s", ErrServesElsewhere, cur.Server, n)
			}
			cmp = clientv3.Compare(clientv3.ModRevision(c.key(kindAssign, backend, user)), "=", cur.rev)
		}
		c.claims.Add(1)
		won, winner, err := c.put(backend, user, assignment{Server: server, Node: c.opts.Node}, cmp)
		if err != nil {
			c.fail(err)
			return server, nil
		}
		if won {
			return server, nil
		}
		cur = winner // nil: deleted meanwhile
	}
	return server, nil
}

// put writes one assignment if cmp holds, else reads the key: won, or the
// key's current value (nil if none).
func (c *Cluster) put(backend, user string, v assignment, cmp clientv3.Cmp) (bool, *cached, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.RequestTimeout)
	lease, bucket, err := c.bucketLease(ctx, c.backend(backend))
	cancel()
	if err != nil {
		return false, nil, err
	}
	v.Bucket = bucket
	return c.submit(claimReq{backend: backend, user: user, key: c.key(kindAssign, backend, user), v: v, lease: lease, cmp: cmp})
}

// servesElsewhere names a live node other than this one that sees server
// of backend up, unless the fleet has the server in maintenance; "" if
// none.
func (c *Cluster) servesElsewhere(backend, server string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o, ok := c.overrides[backend+"/"+server]; ok && o.State == director.AdminMaint.String() {
		return ""
	}
	// A node counts while its heartbeat key lives (its lease, node_ttl):
	// no clock of another node is compared with this one's.
	for name, n := range c.nodes {
		if name == c.opts.Node {
			continue
		}
		down := false
		for _, s := range n.Down[backend] {
			down = down || s == server
		}
		if !down {
			return name
		}
	}
	return ""
}

// bucketLease returns the lease of the current expiry bucket for a's
// user_expire: keys written now live user_expire past the bucket's end.
func (c *Cluster) bucketLease(ctx context.Context, a *attached) (clientv3.LeaseID, int64, error) {
	ref := c.opts.Refresh
	bucket := time.Now().UnixNano() / int64(ref)
	expire := time.Duration(0)
	if a != nil {
		expire = max(a.userExpire, 0)
	}
	ttl := int64((expire + 2*ref + time.Second - 1) / time.Second)
	id := [2]int64{bucket, ttl}
	c.mu.Lock()
	l, ok := c.leases[id]
	c.mu.Unlock()
	if ok {
		return l, bucket, nil
	}
	resp, err := c.cli.Grant(ctx, ttl)
	if err != nil {
		return 0, 0, fmt.Errorf("grant assignment lease: %w", err)
	}
	c.mu.Lock()
	for k := range c.leases {
		if k[0] < bucket {
			delete(c.leases, k) // etcd ends them by their TTL
		}
	}
	c.leases[id] = resp.ID
	c.mu.Unlock()
	return resp.ID, bucket, nil
}

// createAll writes the entries etcd lacks, in batches; an entry another
// node wrote meanwhile is adopted from it. It returns the keys written.
func (c *Cluster) createAll(ctx context.Context, backend string, a *attached, entries []director.Entry) (int, error) {
	type answer struct {
		e      director.Entry
		won    bool
		winner *cached
		err    error
	}
	answers := make(chan answer, len(entries))
	// Each waits in the claim queue, so that they are committed batchOps
	// to a transaction; at most claimQueue/2 at once.
	sem := make(chan struct{}, claimQueue/2)
	for _, e := range entries {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		sem <- struct{}{}
		go c.createOne(backend, e, sem, func(won bool, winner *cached, err error) { answers <- answer{e, won, winner, err} })
	}
	written := 0
	var firstErr error
	for range entries {
		a := <-answers
		switch {
		case a.err != nil:
			firstErr = cmp.Or(firstErr, a.err)
		case a.won:
			written++
		case a.winner != nil:
			c.applyAssign(backend, a.e.User, a.winner.assignment)
		}
	}
	return written, firstErr
}

// createOne claims e's server for a user etcd lacks, answers, and frees
// its place in sem.
func (c *Cluster) createOne(backend string, e director.Entry, sem chan struct{}, answer func(bool, *cached, error)) {
	defer func() { <-sem }()
	create := clientv3.Compare(clientv3.CreateRevision(c.key(kindAssign, backend, e.User)), "=", 0)
	answer(c.put(backend, e.User, assignment{Server: e.Server, Moved: e.Moved, Node: c.opts.Node}, create))
}

// refresh writes again, with the current bucket's lease, the assignments
// in use here since last whose key is in an older bucket: sessions live
// now, or logins since the last refresh. One transaction per batchOps keys,
// each guarded by its mod revision so that a concurrent move wins.
func (c *Cluster) refresh(ctx context.Context, last time.Time) error {
	c.mu.Lock()
	bs := make(map[string]*attached, len(c.backends))
	for k, v := range c.backends {
		bs[k] = v
	}
	c.mu.Unlock()
	for name, a := range bs {
		rctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
		lease, bucket, err := c.bucketLease(rctx, a)
		cancel()
		if err != nil {
			return err
		}
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		var keys []string
		var vals []assignment
		var missing []director.Entry
		flush := func() error {
			if len(ops) == 0 {
				return nil
			}
			if err := c.refreshBatch(ctx, name, cmps, ops, keys, vals); err != nil {
				return err
			}
			cmps, ops, keys, vals = nil, nil, nil, nil
			return nil
		}
		for _, e := range a.dir.Entries(last) {
			key := name + "/" + e.User
			c.mu.Lock()
			cur := c.assign[key]
			var v assignment
			var rev int64
			stale := false
			if cur != nil {
				v, rev = cur.assignment, cur.rev
				stale = cur.Server == e.Server && cur.Bucket < bucket && (e.Sessions > 0 || e.Active.After(cur.seen))
			}
			c.mu.Unlock()
			if cur == nil {
				missing = append(missing, e)
				continue
			}
			if !stale {
				continue
			}
			k := c.key(kindAssign, name, e.User)
			v.Bucket = bucket
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", rev))
			ops = append(ops, clientv3.OpPut(k, mustJSON(v), clientv3.WithLease(lease)))
			keys, vals = append(keys, key), append(vals, v)
			if len(ops) == batchOps {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
		// Entries etcd lacks (expired there while in use here, or placed
		// while a request failed): written again.
		if _, err := c.createAll(ctx, name, a, missing); err != nil {
			return err
		}
	}
	return nil
}

// refreshBatch commits one batch; if a compare failed (another node wrote
// one of the keys meanwhile) the batch is dropped: the watch brings the
// newer values, and the next refresh writes what is still stale.
func (c *Cluster) refreshBatch(ctx context.Context, backend string, cmps []clientv3.Cmp, ops []clientv3.Op, keys []string, vals []assignment) error {
	rctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	resp, err := c.cli.Txn(rctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("refresh: %w", err)
	}
	if !resp.Succeeded {
		return nil
	}
	c.writes.Add(uint64(len(ops)))
	now := time.Now()
	c.mu.Lock()
	for i, k := range keys {
		if old := c.assign[k]; old == nil || old.rev < resp.Header.Revision {
			c.assign[k] = &cached{assignment: vals[i], rev: resp.Header.Revision, seen: now}
		}
	}
	c.mu.Unlock()
	return nil
}

var _ director.Unclaimer = (*Cluster)(nil)

// unclaim is an assignment key this node claimed for a login that ended
// without a session, to delete if nobody wrote it since.
type unclaim struct {
	key string
	rev int64
}

// Unclaim implements director.Unclaimer: the key this node wrote for user
// is deleted (in the background, guarded by its revision) if it still
// holds this node's claim of server.
func (c *Cluster) Unclaim(backend, user, server string) {
	if c.degraded.Load() {
		return
	}
	key := backend + "/" + user
	c.mu.Lock()
	cur := c.assign[key]
	if cur == nil || cur.Node != c.opts.Node || cur.Server != server || cur.Moved {
		c.mu.Unlock()
		return
	}
	delete(c.assign, key)
	c.mu.Unlock()
	select {
	case c.unclaims <- unclaim{key: c.key(kindAssign, backend, user), rev: cur.rev}:
	default: // full: the key expires with its lease
	}
}

// deleteUnclaimed deletes one unclaimed key if its revision is unchanged.
func (c *Cluster) deleteUnclaimed(ctx context.Context, u unclaim) error {
	rctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	resp, err := c.cli.Txn(rctx).If(clientv3.Compare(clientv3.ModRevision(u.key), "=", u.rev)).Then(clientv3.OpDelete(u.key)).Commit()
	if err != nil {
		return fmt.Errorf("unclaim %s: %w", u.key, err)
	}
	if resp.Succeeded {
		c.writes.Add(1)
	}
	return nil
}
