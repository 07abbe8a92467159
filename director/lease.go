package director

import (
	"fmt"
	"time"
)

// sticky is one user's entry: in the sticky table once a session of the
// user was established, in Director.pending while the user has only logins
// in progress. Leases keep a pointer to the entry they counted in, so an
// entry that was evicted or forgotten is decremented harmlessly.
type sticky struct {
	server  int       // index into Director.servers
	live    int       // the user's unreleased leases: sessions and logins in progress
	expires time.Time // when live == 0; zero means no expiry while live == 0
	// refresh says a session was established (or Move pinned the entry)
	// since the entry was last idle: the last release starts its expiry.
	// Without it the last release leaves the entry as it found it.
	refresh bool
	// inTable says e is in Director.table (not pending): it is counted in
	// its server's assigned. Change server and table membership only
	// through setServerLocked, addLocked and evicted.
	inTable bool
	// since is when the user was placed on server; active the last pick or
	// release of a lease; moved says an operator put the user there (Move)
	// and no failover has moved it since.
	since, active time.Time
	moved         bool
	// claimed says a Pick claimed the user's server with Options.Shared
	// and no session was established since: when the entry's last lease
	// ends without one, the claim is taken back (Unclaimer).
	claimed bool
}

// addLocked puts e into the sticky table as user's entry.
func (d *Director) addLocked(user string, e *sticky) {
	d.table.Add(user, e)
	if !e.inTable {
		e.inTable = true
		d.servers[e.server].assigned++
	}
}

// evicted is the sticky table's eviction callback: Remove, an expired
// entry dropped, or the least recently used one pushed out by a new one.
func (d *Director) evicted(_ string, e *sticky) {
	if e.inTable {
		e.inTable = false
		d.servers[e.server].assigned--
	}
}

// setServerLocked moves e to server i, keeping the assigned counts.
func (d *Director) setServerLocked(e *sticky, i int) {
	if e.inTable {
		d.servers[e.server].assigned--
		d.servers[i].assigned++
	}
	e.server = i
}

// expiredAt reports whether e, idle, has outlived its expiry at now.
func (e *sticky) expiredAt(now time.Time) bool {
	return e.live == 0 && !e.expires.IsZero() && !now.Before(e.expires)
}

// Lease is one placed session. Exactly one of Failed or Release takes
// effect; later calls (of either) are no-ops, so `defer lease.Release()`
// after a Failed is harmless. Only Established pins the user to the server
// in the sticky table: a lease released without it leaves no entry behind.
type Lease struct {
	// Server is the chosen server's name.
	Server string
	// Index is the server's index in Options.Servers.
	Index int
	// Reason says why: "sticky", "hash", "leastconn", "roundrobin",
	// "source" or "backup".
	Reason string
	// User is the normalised user name.
	User string

	d           *Director
	entry       *sticky // nil without a sticky entry (BalanceSource, empty user)
	recipient   bool    // Request.Recipient: counted in server.recipients, not sessions
	prev        int     // the entry's server before this Pick moved it; -1 if not moved
	established bool    // guarded by d.mu
	released    bool    // guarded by d.mu
}

// lookupLocked returns the user's entry: its sticky entry, dropped if it
// expired, else the entry of its logins in progress, else nil. It does not
// refresh the entry: only Established does.
func (d *Director) lookupLocked(user string, now time.Time) *sticky {
	if e, ok := d.table.Peek(user); ok {
		if !e.expiredAt(now) {
			return e
		}
		d.table.Remove(user)
	}
	return d.pending[user]
}

// Established reports that the server answered: its consecutive-failure
// counter restarts at zero. The first call on a lease also reports that
// the session is established (the server accepted the login, or the LMTP
// recipient), which creates or refreshes the user's sticky entry: until
// then the user is pinned only while its leases last, so failed logins and
// unknown recipients never grow the table. It does not release the lease,
// and after Release or Failed it only resets the failure counter.
func (l *Lease) Established() {
	d := l.d
	d.mu.Lock()
	d.servers[l.Index].failures = 0
	if !l.established && !l.released {
		l.established = true
		if l.entry != nil {
			l.entry.claimed = false
			d.pinLocked(l.User, l.entry)
		}
	}
	d.mu.Unlock()
}

// Answered reports that the server answered but did not accept the
// session (a rejected password, a temporary refusal, an unknown LMTP
// recipient): its consecutive-failure counter restarts at zero, and
// nothing is pinned. It does not release the lease.
func (l *Lease) Answered() {
	d := l.d
	d.mu.Lock()
	d.servers[l.Index].failures = 0
	d.mu.Unlock()
}

// pinLocked makes e, the entry of an established session of user, the
// user's sticky entry: it moves from pending into the table, or, already
// there, becomes the most recently used. An entry that was meanwhile
// forgotten, evicted or replaced by Move stays out.
func (d *Director) pinLocked(user string, e *sticky) {
	e.refresh = true
	e.expires = time.Time{}
	if _, ok := d.table.Get(user); ok {
		return // e itself, now the most recently used; or Move's entry
	}
	if d.pending[user] == e {
		delete(d.pending, user)
		d.addLocked(user, e)
	}
}

// Release ends the session: the server's and the user's live counts drop.
// When the user's last lease ends its sticky entry starts to expire if a
// session was established since the entry was last idle; otherwise the
// entry is left as Pick found it (none, or on its previous server).
// Release is idempotent and a no-op after Failed.
func (l *Lease) Release() {
	d := l.d
	d.mu.Lock()
	d.releaseLocked(l, time.Now())
	unclaim := d.unclaimLocked(l)
	d.mu.Unlock()
	unclaim()
}

// Failed reports that the server failed before the session could start
// (dial, greeting or backend error; not a rejected password). It releases
// the lease as Release does and counts toward Options.ErrorLimit. It is a
// no-op after Release or Failed.
func (l *Lease) Failed(err error) {
	d := l.d
	d.mu.Lock()
	if l.released {
		d.mu.Unlock()
		return
	}
	d.releaseLocked(l, time.Now())
	s := &d.servers[l.Index]
	s.failures++
	s.failed++
	var reason string
	if d.errorLimit > 0 && s.failures >= d.errorLimit && s.up {
		reason = fmt.Sprintf("%d consecutive connection failures", s.failures)
		if err != nil {
			reason += ": " + err.Error()
		}
		d.setHealthLocked(s, false, reason)
		s.passiveDowns++
	}
	onDown := d.onDown
	unclaim := d.unclaimLocked(l)
	d.mu.Unlock()
	unclaim()
	if reason != "" && onDown != nil {
		onDown(l.Server, reason)
	}
}

func (d *Director) releaseLocked(l *Lease, now time.Time) {
	if l.released {
		return
	}
	l.released = true
	s := &d.servers[l.Index]
	switch {
	case l.recipient && s.recipients > 0:
		s.recipients--
	case !l.recipient && s.sessions > 0:
		s.sessions--
	}
	e := l.entry
	if e == nil || e.live == 0 {
		return
	}
	e.live--
	e.active = now
	if e.live > 0 {
		return
	}
	if e.refresh {
		e.refresh = false
		if d.userExpire < 0 {
			if cur, ok := d.table.Peek(l.User); ok && cur == e {
				d.table.Remove(l.User)
			}
			return
		}
		e.expires = now.Add(d.userExpire)
		return
	}
	// No session was established since the entry was last idle: leave no
	// trace of these logins.
	if d.pending[l.User] == e {
		delete(d.pending, l.User)
		return
	}
	if cur, ok := d.table.Peek(l.User); ok && cur == e && l.prev >= 0 && e.server == l.Index {
		d.setServerLocked(e, l.prev)
	}
}
