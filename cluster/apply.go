package cluster

import (
	"encoding/json"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/maildirector/maildirector/director"
)

// applyEvents applies one watch response; rev is its header revision.
func (c *Cluster) applyEvents(evs []*clientv3.Event, rev int64) {
	for _, ev := range evs {
		k, err := parseKey(strings.TrimPrefix(string(ev.Kv.Key), c.prefix))
		if err != nil {
			continue
		}
		del := ev.Type == mvccpb.DELETE
		switch k.kind {
		case kindAssign:
			c.assignEvent(k, ev.Kv, del)
		case kindServer:
			c.serverEvent(k, ev.Kv.Value, del)
		case kindFrozen:
			c.frozenEvent(k.name, del)
		case kindNode:
			c.mu.Lock()
			if del {
				delete(c.nodes, k.name)
			} else {
				var n NodeInfo
				if json.Unmarshal(ev.Kv.Value, &n) == nil {
					c.nodes[k.name] = n
				}
			}
			c.mu.Unlock()
		}
	}
	c.mu.Lock()
	c.applied = max(c.applied, rev)
	c.mu.Unlock()
}

func (c *Cluster) assignEvent(k parsedKey, kv *mvccpb.KeyValue, del bool) {
	key := k.backend + "/" + k.name
	if del {
		c.mu.Lock()
		_, had := c.assign[key]
		delete(c.assign, key)
		a := c.backends[k.backend]
		c.mu.Unlock()
		// Expired (its lease ended) or flushed: the user is placed afresh
		// at its next login, unless it has sessions here, whose server
		// stays its server (this node writes it again at its refresh).
		if had && a != nil {
			if e, ok := a.dir.Entry(k.name); ok && e.Sessions == 0 {
				a.dir.Forget(k.name)
			}
		}
		return
	}
	v, err := decodeAssignment(kv.Value)
	if err != nil {
		c.log.Warn("cluster: unreadable assignment ignored", "key", string(kv.Key), "err", err)
		return
	}
	c.mu.Lock()
	if cur := c.assign[key]; cur != nil && cur.rev >= kv.ModRevision {
		c.mu.Unlock()
		return // this node's own write, applied already
	}
	c.assign[key] = &cached{assignment: v, rev: kv.ModRevision}
	c.mu.Unlock()
	c.applyAssign(k.backend, k.name, v)
	c.markSeen(key)
}

// applyAssign puts user of backend where the fleet has it. Users with
// live sessions here on another server get OnMove, so that no user stays
// split over two servers.
func (c *Cluster) applyAssign(backend, user string, v assignment) {
	a := c.backend(backend)
	if a == nil {
		return
	}
	e, had := a.dir.Entry(user)
	if had && e.Server == v.Server && e.Moved == v.Moved {
		return
	}
	var err error
	if v.Moved {
		err = a.dir.Move(user, v.Server)
	} else {
		expire := a.userExpire
		if expire <= 0 {
			expire = time.Minute
		}
		err = a.dir.Assign(user, v.Server, time.Now().Add(expire))
	}
	if err != nil {
		// A server down or in maintenance here: the key stays in the
		// cache, and Claim asks the fleet before this node moves the
		// user anywhere.
		c.log.Debug("cluster: assignment not applied here", "backend", backend, "user", user, "server", v.Server, "err", err)
	}
	if had && e.Server != v.Server && e.Sessions > 0 && c.opts.OnMove != nil {
		c.opts.OnMove(backend, user, v.Server)
	}
}

func (c *Cluster) serverEvent(k parsedKey, value []byte, del bool) {
	key := k.backend + "/" + k.name
	var o override
	if !del && json.Unmarshal(value, &o) != nil {
		return
	}
	c.mu.Lock()
	if del {
		delete(c.overrides, key)
	} else {
		c.overrides[key] = o
	}
	a := c.backends[k.backend]
	c.mu.Unlock()
	if a != nil && !del {
		applyOverride(a.dir, k.name, o)
	}
}

func applyOverride(dir *director.Director, server string, o override) {
	if o.Weight != nil {
		dir.SetWeight(server, *o.Weight) // an error: no such server here, or out of range
	}
	if a, err := director.ParseAdminState(o.State); err == nil && o.State != "" {
		dir.SetAdmin(server, a)
	}
}

func (c *Cluster) frozenEvent(user string, del bool) {
	c.mu.Lock()
	if del {
		delete(c.frozen, user)
	} else {
		c.frozen[user] = true
	}
	c.mu.Unlock()
	h := c.opts.Holds
	if h == nil {
		return
	}
	if del {
		h.Release(user)
		return
	}
	if h.Freeze(user) && c.opts.OnFreeze != nil {
		c.opts.OnFreeze(user)
	}
}
