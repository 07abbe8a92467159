package director

import (
	"fmt"
	"time"
)

// ServerStatus is a snapshot of one server.
type ServerStatus struct {
	Name    string
	Index   int
	Weight  int
	Backup  bool
	Admin   AdminState
	MaxConn int
	// VhostCount is the server's points on the ring (BalanceDirector);
	// zero under the other algorithms.
	VhostCount int
	// Up is the health; Reason says why it is what it is.
	Up     bool
	Reason string
	// Sessions is the number of live leases of logins, Recipients of LMTP
	// recipients (not sessions: see Request.Recipient), Picks the number of
	// leases handed out ever, Failures the current run of consecutive
	// Failed leases.
	Sessions   int
	Recipients int
	Picks      uint64
	Failures   int
	// Changed is when Up or Admin last changed (the start, before any).
	Changed time.Time
	// Assigned is the number of users pinned to the server (sticky
	// entries, expired ones not yet dropped included); Failed counts the
	// Failed leases ever, PassiveDowns the times they took it down.
	Assigned     int
	Failed       uint64
	PassiveDowns uint64
}

// Servers returns a snapshot of every server, in configuration order.
func (d *Director) Servers() []ServerStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]ServerStatus, len(d.servers))
	for i := range d.servers {
		s := &d.servers[i]
		out[i] = ServerStatus{
			Name: s.name, Index: i, Weight: s.weight, Backup: s.backup, Admin: s.admin, MaxConn: s.maxConn,
			Up: s.up, Reason: s.reason, Sessions: s.sessions, Recipients: s.recipients, Picks: s.picks, Failures: s.failures,
			Changed: s.changed, Assigned: s.assigned, Failed: s.failed, PassiveDowns: s.passiveDowns,
			VhostCount: len(s.vhosts),
		}
	}
	return out
}

// StickyLen returns the number of entries in the sticky table, expired
// ones not yet looked up included.
func (d *Director) StickyLen() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.table.Len()
}

// Placement answers "where is user X and why".
type Placement struct {
	// User is the normalised user name.
	User string
	// Server is where the user's next session would go; empty when no
	// server is usable or the balance algorithm decides only at login.
	Server string
	// Reason explains Server, e.g. "sticky: 2 live sessions",
	// "sticky: expires in 3m0s", "hash: no assignment yet", or for a user
	// none of whose sessions is established yet "pending: 1 login in
	// progress, not established yet".
	Reason string
	// Sessions is the user's unreleased leases: live sessions and logins in
	// progress.
	Sessions int
	// Expires is when the idle sticky entry expires; zero while the user
	// has live sessions or has no entry.
	Expires time.Time
	// Since is when the user was placed on the sticky server; Moved says
	// an operator put the user there (Move). Zero without an entry.
	Since time.Time
	Moved bool
	// Hashed is where the balance algorithm alone would place the user now
	// (BalanceUser, BalanceDirector); empty for the others or when no
	// server is usable.
	Hashed string
	// Frozen says an operator froze the user (Holds): no session or
	// delivery goes anywhere until the user is released.
	Frozen bool
}

// Where reports where user's next session would go and why, without
// changing anything but expired-entry cleanup. user is a login name.
func (d *Director) Where(user string) Placement {
	hashName := d.hashName(user, false)
	user = d.names.normalize(user, false)
	p := Placement{User: user}
	now := time.Now()
	p.Frozen = user != "" && d.holds.held(user) != nil
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.hashes() && user != "" {
		if i, _ := d.chooseLocked(choice{user: user, hashName: hashName}); i >= 0 {
			p.Hashed = d.servers[i].name
		}
	}
	var e *sticky
	if d.balance != BalanceSource && user != "" {
		e = d.lookupLocked(user, now)
	}
	if e != nil {
		p.Sessions = e.live
		if e.live == 0 {
			p.Expires = e.expires
		}
		if d.pending[user] != e {
			p.Since, p.Moved = e.since, e.moved
		}
		if d.stickyOKLocked(e.server, choice{}) {
			p.Server = d.servers[e.server].name
			switch {
			case d.pending[user] == e && e.live == 1:
				p.Reason = "pending: 1 login in progress, not established yet"
			case d.pending[user] == e:
				p.Reason = fmt.Sprintf("pending: %d logins in progress, none established yet", e.live)
			case e.live == 1:
				p.Reason = "sticky: 1 live session"
			case e.live > 1:
				p.Reason = fmt.Sprintf("sticky: %d live sessions", e.live)
			case e.expires.IsZero():
				p.Reason = "sticky: pinned until the next session ends"
			default:
				p.Reason = "sticky: expires in " + e.expires.Sub(now).Round(time.Second).String()
			}
			return p
		}
	}
	prefix := d.reasonName() + ": no assignment yet"
	if e != nil {
		prefix = fmt.Sprintf("%s: sticky server %s is %s", d.reasonName(), d.servers[e.server].name, d.unusableWhyLocked(e.server))
	}
	switch d.balance {
	case BalanceSource:
		p.Reason = "source: decided by the client address at login"
		return p
	case BalanceLeastConn, BalanceRoundRobin:
		p.Reason = prefix + " (decided at login)"
		return p
	}
	i, how := d.chooseLocked(choice{user: user, hashName: hashName})
	if i < 0 {
		p.Reason = prefix + "; no usable server"
		return p
	}
	p.Server = d.servers[i].name
	if how == "backup" {
		prefix += "; backup: no active server usable"
	}
	p.Reason = prefix
	return p
}

// unusableWhyLocked says in a word why a sticky entry on server i is not
// honoured.
func (d *Director) unusableWhyLocked(i int) string {
	s := &d.servers[i]
	switch {
	case !s.up:
		return "down"
	case s.admin == AdminMaint:
		return "in maintenance"
	case !s.hasRoom():
		return "full"
	case s.backup:
		return "a backup and an active server is usable"
	}
	return "unusable"
}

// Assignment is one user's sticky entry.
type Assignment struct {
	User     string
	Sessions int       // live sessions and logins in progress
	Since    time.Time // when the user was placed on the server
	Active   time.Time // the last session start or end
	Expires  time.Time // when idle: when the entry expires; zero otherwise
	Moved    bool      // an operator moved the user there
}

// Users lists the sticky entries on server name, most recently used first.
func (d *Director) Users(name string) ([]Assignment, error) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	i, err := d.lookupServer(name)
	if err != nil {
		return nil, err
	}
	var out []Assignment
	keys := d.table.Keys() // oldest first
	for j := len(keys) - 1; j >= 0; j-- {
		e, ok := d.table.Peek(keys[j])
		if !ok || e.server != i || e.expiredAt(now) {
			continue
		}
		a := Assignment{User: keys[j], Sessions: e.live, Since: e.since, Active: e.active, Moved: e.moved}
		if e.live == 0 {
			a.Expires = e.expires
		}
		out = append(out, a)
	}
	return out, nil
}
