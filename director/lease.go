package director

import (
	"fmt"
	"time"
)

// sticky is one entry of the sticky table. Leases keep a pointer to the
// entry they counted in, so an entry that was evicted or forgotten is
// decremented harmlessly.
type sticky struct {
	server  int       // index into Director.servers
	live    int       // the user's live sessions
	expires time.Time // when live == 0; zero means no expiry while live == 0
}

// Lease is one placed session. Exactly one of Failed or Release takes
// effect; later calls (of either) are no-ops, so `defer lease.Release()`
// after a Failed is harmless.
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

	d        *Director
	entry    *sticky // nil without a sticky entry
	changed  bool    // this Pick created the entry or moved it
	prev     int     // the entry's server before this Pick moved it; -1 if created
	released bool    // guarded by d.mu
}

// lookupLocked returns the user's sticky entry, dropping it if it expired.
func (d *Director) lookupLocked(user string, now time.Time) *sticky {
	e, ok := d.table.Get(user)
	if !ok {
		return nil
	}
	if e.live == 0 && !e.expires.IsZero() && !now.Before(e.expires) {
		d.table.Remove(user)
		return nil
	}
	return e
}

// Established reports that the server answered (connected, greeted, or
// accepted the login): its consecutive-failure counter restarts at zero.
// It does not release the lease.
func (l *Lease) Established() {
	d := l.d
	d.mu.Lock()
	d.servers[l.Index].failures = 0
	d.mu.Unlock()
}

// Release ends the session: the server's and the user's live counts drop,
// and when the user's last session ends its sticky entry starts to expire.
// Release is idempotent and a no-op after Failed.
func (l *Lease) Release() {
	d := l.d
	d.mu.Lock()
	d.releaseLocked(l, time.Now())
	d.mu.Unlock()
}

// Failed reports that the server failed before the session could start
// (dial, greeting or backend error; not a rejected password). It releases
// the lease, undoes the sticky entry this Pick created or moved (unless
// the user has other live sessions), and counts toward Options.ErrorLimit.
// It is a no-op after Release or Failed.
func (l *Lease) Failed(err error) {
	d := l.d
	d.mu.Lock()
	if l.released {
		d.mu.Unlock()
		return
	}
	d.releaseLocked(l, time.Now())
	if e := l.entry; l.changed && e.live == 0 && e.server == l.Index {
		if cur, ok := d.table.Peek(l.User); ok && cur == e {
			if l.prev < 0 {
				d.table.Remove(l.User)
			} else {
				e.server = l.prev
			}
		}
	}
	s := &d.servers[l.Index]
	s.failures++
	var reason string
	if d.errorLimit > 0 && s.failures >= d.errorLimit && s.up {
		reason = fmt.Sprintf("%d consecutive connection failures", s.failures)
		if err != nil {
			reason += ": " + err.Error()
		}
		d.setHealthLocked(s, false, reason)
	}
	onDown := d.onDown
	d.mu.Unlock()
	if reason != "" && onDown != nil {
		onDown(l.Server, reason)
	}
}

func (d *Director) releaseLocked(l *Lease, now time.Time) {
	if l.released {
		return
	}
	l.released = true
	if s := &d.servers[l.Index]; s.sessions > 0 {
		s.sessions--
	}
	e := l.entry
	if e == nil || e.live == 0 {
		return
	}
	e.live--
	if e.live > 0 {
		return
	}
	if d.userExpire < 0 {
		if cur, ok := d.table.Peek(l.User); ok && cur == e {
			d.table.Remove(l.User)
		}
		return
	}
	e.expires = now.Add(d.userExpire)
}
