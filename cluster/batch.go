package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Group commit of claims. Every claim is one compare-and-swap, and etcd
// answers a write only once a quorum has it on disk (fsync): one claim at
// a time, a node would place new users at the pace of its members' disks.
// Claims are queued instead, and one goroutine commits whatever is queued
// as one transaction (each claim's comparison and put), while the previous
// transaction was on its way new claims queue up: the more logins wait,
// the larger the batch, with no timer adding latency. If any comparison
// fails (two nodes raced on a user, rare), the batch is committed again
// claim by claim, so each gets its own answer.

// claimReq is one queued claim.
type claimReq struct {
	backend, user string
	key           string // the etcd key
	v             assignment
	lease         clientv3.LeaseID
	cmp           clientv3.Cmp
	done          chan claimRes // buffered: the batcher never blocks on it
}

// claimRes is a claim's answer: won, or the key's current value (nil if
// none), or an error.
type claimRes struct {
	won    bool
	winner *cached
	err    error
}

// claimQueue bounds the queued claims; a full queue is answered with an
// error (the login goes on with the local answer).
const claimQueue = 4096

var errQueueFull = errors.New("claim queue full")

// submit queues one claim and waits for its answer, at most the request
// timeout plus the time of the batch before it.
func (c *Cluster) submit(r claimReq) (bool, *cached, error) {
	r.done = make(chan claimRes, 1)
	select {
	case c.claimq <- r:
	default:
		return false, nil, errQueueFull
	}
	t := time.NewTimer(2 * c.opts.RequestTimeout)
	defer t.Stop()
	select {
	case res := <-r.done:
		return res.won, res.winner, res.err
	case <-t.C:
		return false, nil, fmt.Errorf("claim %s: no answer within %s", r.key, 2*c.opts.RequestTimeout)
	}
}

// batchClaims commits queued claims until ctx ends, then closes done;
// Run starts it.
func (c *Cluster) batchClaims(ctx context.Context, done chan struct{}) {
	defer close(done)
	for {
		var batch []claimReq
		select {
		case <-ctx.Done():
			return
		case r := <-c.claimq:
			batch = append(batch, r)
		}
	drain:
		for len(batch) < batchOps {
			select {
			case r := <-c.claimq:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		c.commitClaims(ctx, batch)
	}
}

// commitClaims commits one batch: together when every comparison holds,
// else one by one. Claims of one key twice in a batch go one by one too
// (etcd refuses a key twice in one transaction).
func (c *Cluster) commitClaims(ctx context.Context, batch []claimReq) {
	if len(batch) > 1 {
		seen := make(map[string]bool, len(batch))
		var together, alone []claimReq
		for _, r := range batch {
			if seen[r.key] {
				alone = append(alone, r)
				continue
			}
			seen[r.key] = true
			together = append(together, r)
		}
		if len(together) > 1 {
			if c.commitTogether(ctx, together) {
				together = nil
			}
		}
		batch = append(together, alone...)
	}
	for _, r := range batch {
		won, winner, err := c.commitOne(ctx, r)
		r.done <- claimRes{won: won, winner: winner, err: err}
	}
}

// commitTogether commits claims as one transaction; it reports false,
// answering nobody, when a comparison failed.
func (c *Cluster) commitTogether(ctx context.Context, batch []claimReq) bool {
	cmps := make([]clientv3.Cmp, len(batch))
	ops := make([]clientv3.Op, len(batch))
	for i, r := range batch {
		cmps[i] = r.cmp
		ops[i] = clientv3.OpPut(r.key, mustJSON(r.v), clientv3.WithLease(r.lease))
	}
	rctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	resp, err := c.cli.Txn(rctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		for _, r := range batch {
			r.done <- claimRes{err: fmt.Errorf("claim: %w", err)}
		}
		return true
	}
	if !resp.Succeeded {
		return false
	}
	c.writes.Add(uint64(len(batch)))
	for _, r := range batch {
		c.stored(r.backend+"/"+r.user, r.v, resp.Header.Revision)
		r.done <- claimRes{won: true}
	}
	return true
}

// commitOne commits one claim: put if its comparison holds, else read the
// key's current value.
func (c *Cluster) commitOne(ctx context.Context, r claimReq) (bool, *cached, error) {
	rctx, cancel := context.WithTimeout(ctx, c.opts.RequestTimeout)
	defer cancel()
	resp, err := c.cli.Txn(rctx).If(r.cmp).Then(clientv3.OpPut(r.key, mustJSON(r.v), clientv3.WithLease(r.lease))).Else(clientv3.OpGet(r.key)).Commit()
	if err != nil {
		return false, nil, fmt.Errorf("claim %s: %w", r.key, err)
	}
	key := r.backend + "/" + r.user
	if resp.Succeeded {
		c.writes.Add(1)
		c.stored(key, r.v, resp.Header.Revision)
		return true, nil, nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return false, nil, nil
	}
	w, err := decodeAssignment(kvs[0].Value)
	if err != nil {
		return false, nil, nil
	}
	cur := &cached{assignment: w, rev: kvs[0].ModRevision}
	c.mu.Lock()
	if old := c.assign[key]; old == nil || old.rev < cur.rev {
		c.assign[key] = cur
	}
	c.mu.Unlock()
	return false, cur, nil
}

// stored records this node's own write of key at rev in the cache.
func (c *Cluster) stored(key string, v assignment, rev int64) {
	c.mu.Lock()
	if old := c.assign[key]; old == nil || old.rev < rev {
		c.assign[key] = &cached{assignment: v, rev: rev, seen: time.Now()}
	}
	c.mu.Unlock()
}
