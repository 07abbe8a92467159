package director

import (
	"errors"
	"fmt"
	"time"
)

// Shared is a placement shared with other nodes (package cluster backs it
// with etcd). A Director with Options.Shared asks it before a user without
// a usable sticky entry takes a server, so that nodes racing on one user
// agree on one server; everything else (a sticky login, Established,
// Release) stays local. The other direction, changes made elsewhere, comes
// in through Assign, Move, Forget, SetAdmin, SetWeight and Holds.
type Shared interface {
	// Claim asks the fleet to place user (normalised) of backend on
	// server, this node's choice. It returns the server the fleet holds
	// for the user: server itself when the claim won or when the fleet
	// cannot be asked (degraded: the local answer stands); another server
	// when another node placed the user first. usable reports whether a
	// server can take the user's session on this node. An error means the
	// user must not move now (its server still serves it elsewhere): the
	// login fails with ErrServerUnavailable and the client retries. Claim
	// is called without the Director's lock held and must not block for
	// longer than its own request timeout.
	Claim(backend, user, server string, usable func(server string) bool) (string, error)
}

// Unclaimer is implemented by a Shared that takes back the claim of a
// login that ended without a session (a rejected password, a dead
// server), so that failed logins of unknown names leave nothing in the
// fleet's store. Unclaim must not block: it is called when a lease ends.
type Unclaimer interface {
	Unclaim(backend, user, server string)
}

// unclaimLocked returns what takes back the claim of l's entry once the
// lock is released: something only when a Pick claimed the entry's server,
// no session was established on it, and l was its last lease (the entry
// is gone). Otherwise a no-op.
func (d *Director) unclaimLocked(l *Lease) func() {
	u, ok := d.shared.(Unclaimer)
	e := l.entry
	if !ok || e == nil || !e.claimed || !l.released || d.lookupLocked(l.User, time.Now()) != nil {
		return func() {}
	}
	e.claimed = false
	server := d.servers[e.server].name
	return func() { u.Unclaim(d.name, l.User, server) }
}

// ErrShared wraps a Shared placement's refusal.
var ErrShared = errors.New("the fleet keeps the user on its server")

// claim settles a new placement l with the fleet (Options.Shared): it keeps
// l, moves it to the server the fleet holds for the user, or releases it
// and fails. Call without d.mu held.
func (d *Director) claim(l *Lease, req Request) (*Lease, error) {
	c := choice{exclude: req.Exclude, recipient: req.Recipient}
	usable := func(name string) bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		i, ok := d.byName[name]
		return ok && d.stickyOKLocked(i, c)
	}
	won, err := d.shared.Claim(d.name, l.User, l.Server, usable)
	if err == nil && won == l.Server {
		d.mu.Lock()
		if l.entry != nil && !l.released {
			l.entry.claimed = true
		}
		d.mu.Unlock()
		return l, nil
	}
	if err == nil {
		err = d.rebind(l, won, c)
	}
	if err != nil {
		l.Release()
		return nil, fmt.Errorf("director %s: %q: %w: %w", d.name, l.User, ErrServerUnavailable, err)
	}
	return l, nil
}

// rebind moves the fresh lease l (and the user's entry with it) to the
// server another node placed the user on.
func (d *Director) rebind(l *Lease, name string, c choice) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, ok := d.byName[name]
	if !ok {
		return fmt.Errorf("%w: server %q of another node is not in this backend", ErrShared, name)
	}
	if l.released || !d.stickyOKLocked(i, c) {
		return fmt.Errorf("%w: %s, not usable here", ErrShared, name)
	}
	old, s := &d.servers[l.Index], &d.servers[i]
	if l.recipient {
		old.recipients--
		s.recipients++
	} else {
		old.sessions--
		s.sessions++
	}
	if e := l.entry; e != nil && e.server == l.Index {
		d.setServerLocked(e, i)
	}
	d.log.Debug("user placed by another node", "backend", d.name, "user", l.User, "from", l.Server, "to", name)
	l.Server, l.Index, l.Reason = name, i, "cluster"
	return nil
}

// Entry is one user's sticky entry as Shared's owner sees it.
type Entry struct {
	User   string // normalised
	Server string
	// Sessions are the user's live leases on this node.
	Sessions int
	// Moved says an operator put the user there.
	Moved bool
	// Active is the last pick or release of one of the user's leases.
	Active time.Time
}

// Entry returns user's entry in the sticky table, or with live logins its
// pending one; ok is false without either. user is normalised already.
func (d *Director) Entry(user string) (e Entry, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.lookupLocked(user, time.Now())
	if s == nil {
		return Entry{}, false
	}
	return Entry{User: user, Server: d.servers[s.server].name, Sessions: s.live, Moved: s.moved, Active: s.active}, true
}

// Entries lists the sticky table's entries that have live sessions or
// were active after since (all of them for a zero since), in no order.
func (d *Director) Entries(since time.Time) []Entry {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []Entry
	for _, u := range d.table.Keys() {
		s, ok := d.table.Peek(u)
		if !ok || s.expiredAt(now) || (s.live == 0 && !since.IsZero() && !s.active.After(since)) {
			continue
		}
		out = append(out, Entry{User: u, Server: d.servers[s.server].name, Sessions: s.live, Moved: s.moved, Active: s.active})
	}
	return out
}
