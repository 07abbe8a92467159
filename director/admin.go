package director

import (
	"fmt"
	"time"
)

// SetHealth records the health of a server, as reported by the health
// checker. Up resets the passive failure counter. Users are not moved
// actively: sticky users of a down server move on their next login.
func (d *Director) SetHealth(name string, up bool, reason string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, err := d.lookupServer(name)
	if err != nil {
		return err
	}
	s := &d.servers[i]
	if up {
		s.failures = 0
	}
	d.setHealthLocked(s, up, reason)
	return nil
}

func healthName(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

func (d *Director) setHealthLocked(s *server, up bool, reason string) {
	if s.up != up {
		d.log.Info("server state change", "backend", d.name, "server", s.name,
			"from", healthName(s.up), "to", healthName(up), "reason", reason)
		s.changed = time.Now()
	}
	s.up, s.reason = up, reason
}

// SetAdmin sets a server's administrative state.
func (d *Director) SetAdmin(name string, a AdminState) error {
	if a < AdminReady || a > AdminMaint {
		return fmt.Errorf("director %s: set admin state of %q: %w: %d", d.name, name, ErrUnknownAdminState, int(a))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	i, err := d.lookupServer(name)
	if err != nil {
		return err
	}
	s := &d.servers[i]
	if s.admin != a {
		d.log.Info("server state change", "backend", d.name, "server", s.name,
			"from", s.admin.String(), "to", a.String(), "reason", "admin")
		s.changed = time.Now()
	}
	s.admin = a
	return nil
}

// SetWeight sets a server's weight, 0..MaxWeight. Sticky users stay; only
// users without an entry are placed by the new weights.
func (d *Director) SetWeight(name string, w int) error {
	if w < 0 || w > MaxWeight {
		return fmt.Errorf("director %s: set weight of %q: %w %d: want 0..%d", d.name, name, ErrInvalidWeight, w, MaxWeight)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	i, err := d.lookupServer(name)
	if err != nil {
		return err
	}
	s := &d.servers[i]
	if s.weight != w {
		d.log.Info("server weight change", "backend", d.name, "server", s.name, "from", s.weight, "to", w)
	}
	s.weight = w
	s.rrCur = 0
	return nil
}

// SetVhostCount sets a server's points on the ring under BalanceDirector
// (0..MaxVhostCount; 0 takes no new users), as `doveadm director add HOST
// COUNT` does. Sticky users stay. It is a no-op under the other
// algorithms, which place by weight.
func (d *Director) SetVhostCount(name string, n int) error {
	if n < 0 || n > MaxVhostCount {
		return fmt.Errorf("director %s: set vhost count of %q: %d: want 0..%d", d.name, name, n, MaxVhostCount)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	i, err := d.lookupServer(name)
	if err != nil {
		return err
	}
	s := &d.servers[i]
	if d.balance != BalanceDirector || len(s.vhosts) == n {
		return nil
	}
	d.log.Info("server vhost count change", "backend", d.name, "server", s.name, "from", len(s.vhosts), "to", n)
	s.vhosts = vhostPoints(s.ip, n)
	d.rings = nil
	return nil
}

// Assign restores an assignment made elsewhere, such as a Dovecot
// director's (maildirector import-director): user is pinned to server as
// if its last session there had just ended, until expires, when the entry
// expires like any other; a later session refreshes it as usual. Unlike
// Move it is no operator's move (Placement.Moved stays false). An expires
// in the past, or a server that is down or in maintenance, changes nothing
// and returns an error. user is a login name.
func (d *Director) Assign(user, name string, expires time.Time) error {
	user = d.names.normalize(user, false)
	if user == "" {
		return fmt.Errorf("director %s: assign: empty user name", d.name)
	}
	now := time.Now()
	if !expires.After(now) {
		return fmt.Errorf("director %s: assign %q to %s: expired at %s", d.name, user, name, expires.Format(time.RFC3339))
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	i, err := d.lookupServer(name)
	if err != nil {
		return err
	}
	if s := &d.servers[i]; !s.up || s.admin == AdminMaint {
		return fmt.Errorf("director %s: assign %q to %s: %w", d.name, user, name, ErrServerUnavailable)
	}
	e, _ := d.pinEntryLocked(user)
	d.setServerLocked(e, i)
	e.since, e.active, e.moved = now, now, false
	if e.live == 0 {
		e.expires = expires
	} else {
		e.refresh = true // expires once the live leases end
	}
	return nil
}

// Move pins user to server: new sessions go there, and the entry lives
// like any other (it starts to expire now if the user has no live
// session). Existing sessions are the caller's business (kick them).
// Here, as in Forget, Where and HashOrder, user is a login name (see
// Request.User).
func (d *Director) Move(user, name string) error {
	user = d.names.normalize(user, false)
	if user == "" {
		return fmt.Errorf("director %s: move: empty user name", d.name)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	i, err := d.lookupServer(name)
	if err != nil {
		return err
	}
	if s := &d.servers[i]; !s.up || s.admin == AdminMaint {
		return fmt.Errorf("director %s: move %q to %s: %w", d.name, user, name, ErrServerUnavailable)
	}
	e, had := d.pinEntryLocked(user)
	from := "(none)"
	if had {
		from = d.servers[e.server].name
	}
	d.setServerLocked(e, i)
	e.since, e.moved = time.Now(), true
	if e.live == 0 {
		e.expires = time.Time{}
		if d.userExpire > 0 {
			e.expires = time.Now().Add(d.userExpire)
		}
	} else {
		e.refresh = true // expires once the live leases end
	}
	d.log.Info("user moved", "backend", d.name, "user", user, "from", from, "to", name, "reason", "admin move")
	return nil
}

// Forget drops user's sticky entry; the next session is placed afresh.
// Live sessions are not affected.
func (d *Director) Forget(user string) {
	user = d.names.normalize(user, false)
	d.mu.Lock()
	d.table.Remove(user)
	delete(d.pending, user)
	d.mu.Unlock()
}

// Flush forgets every sticky entry on server name (doveadm director
// flush): those users are placed afresh at their next login. Live sessions
// are not affected; the caller may kick them. It returns the users.
func (d *Director) Flush(name string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i, err := d.lookupServer(name)
	if err != nil {
		return nil, err
	}
	var users []string
	for _, u := range d.table.Keys() {
		if e, ok := d.table.Peek(u); ok && e.server == i {
			d.table.Remove(u)
			users = append(users, u)
		}
	}
	if len(users) > 0 {
		d.log.Info("server flushed", "backend", d.name, "server", name, "users", len(users))
	}
	return users, nil
}

// pinEntryLocked returns user's entry in the sticky table: the one there,
// else the entry of the user's logins in progress (they follow the new
// placement), else a new one. had says the user had an entry already.
func (d *Director) pinEntryLocked(user string) (e *sticky, had bool) {
	if e, ok := d.table.Get(user); ok {
		return e, true
	}
	e, had = d.pending[user]
	if had {
		delete(d.pending, user)
	} else {
		e = &sticky{}
	}
	d.addLocked(user, e)
	return e, had
}
