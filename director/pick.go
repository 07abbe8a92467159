package director

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Pick places one new session of req.User and counts it as live on the
// chosen server until the Lease is released (an LMTP recipient's lease as
// a recipient, not as a session: see Request.Recipient). It returns an
// error wrapping ErrNoServer when no server can take the session.
//
// A sticky entry is honoured while its server is up, not in maintenance,
// under MaxConn and not excluded (a backup's entry only while no active
// server takes users); otherwise the user is placed afresh and the entry
// moves to the new server. A user without an entry gets one outside the
// sticky table, shared by its concurrent logins so that they all land on
// one server whatever the balance algorithm; it enters the table when a
// session is established (Lease.Established) and vanishes when the last
// lease ends without one, as a move does not outlive such leases either.
func (d *Director) Pick(req Request) (*Lease, error) {
	user := d.names.normalize(req.User, req.Recipient)
	hashName := d.hashName(req.User, req.Recipient)
	useTable := d.balance != BalanceSource && user != ""
	now := time.Now()
	if ch := d.holds.held(user); ch != nil && user != "" {
		return nil, &HeldError{User: user, Released: ch}
	}

	d.mu.Lock()
	var entry *sticky
	if useTable {
		entry = d.lookupLocked(user, now)
	}
	idx, reason := -1, ""
	switch {
	case req.Stay:
		idx, reason = d.homeLocked(entry, user, hashName, req)
		if idx >= 0 && !d.stickyOKLocked(idx, choice{recipient: req.Recipient}) {
			name := d.servers[idx].name
			d.mu.Unlock()
			return nil, fmt.Errorf("director %s: %q belongs to server %s: %w", d.name, user, name, ErrServerUnavailable)
		}
	case entry != nil && d.stickyOKLocked(entry.server, choice{exclude: req.Exclude, recipient: req.Recipient}):
		idx, reason = entry.server, "sticky"
	default:
		idx, reason = d.chooseLocked(choice{user: user, hashName: hashName, client: req.Client, exclude: req.Exclude, commit: true, recipient: req.Recipient})
	}
	if idx < 0 {
		d.mu.Unlock()
		return nil, fmt.Errorf("director %s: pick server for %q: %w", d.name, user, ErrNoServer)
	}
	l := &Lease{Server: d.servers[idx].name, Index: idx, Reason: reason, User: user, d: d, prev: -1, recipient: req.Recipient}
	if useTable {
		switch {
		case entry == nil:
			entry = &sticky{server: idx, since: now}
			d.pending[user] = entry
		case entry.server != idx:
			l.prev = entry.server
			d.log.Debug("user moved", "backend", d.name, "user", user,
				"from", d.servers[entry.server].name, "to", d.servers[idx].name, "reason", reason)
			d.setServerLocked(entry, idx)
			entry.since, entry.moved = now, false
		}
		entry.live++
		entry.active = now
		l.entry = entry
	}
	s := &d.servers[idx]
	if req.Recipient {
		s.recipients++
	} else {
		s.sessions++
	}
	s.picks++
	d.mu.Unlock()
	if d.shared != nil && l.entry != nil && reason != "sticky" {
		var err error
		if l, err = d.claim(l, req); err != nil {
			return nil, err
		}
	}
	d.log.Debug("pick", "backend", d.name, "user", user, "server", l.Server, "reason", l.Reason)
	return l, nil
}

// homeLocked is the user's own server for Request.Stay: its sticky server,
// else the choice of the balance algorithm with every server counted as up.
func (d *Director) homeLocked(entry *sticky, user, hashName string, req Request) (int, string) {
	if entry != nil {
		return entry.server, "sticky"
	}
	return d.chooseLocked(choice{user: user, hashName: hashName, client: req.Client, assumeUp: true, recipient: req.Recipient})
}

// hashName is the name BalanceDirector hashes for user (a login name, or
// with recipient an LMTP recipient): normalised but in the case the client
// wrote it, since director_username_hash decides about case (%Lu or %u).
// It is "" under the other algorithms, which hash the normalised name.
func (d *Director) hashName(user string, recipient bool) string {
	if d.balance != BalanceDirector {
		return ""
	}
	return d.names.asGiven(user, recipient)
}

// choice is one placement question as the balance algorithms see it. It
// lives for one call, so whatever mode a request needs travels here and
// never on the Director.
type choice struct {
	user string // normalised user name: the BalanceUser key
	// hashName is the user name as given (Director.hashName): the
	// BalanceDirector key, which director_username_hash expands.
	hashName string
	client   netip.AddrPort // the BalanceSource key
	exclude  []string       // servers already tried
	// commit lets the call advance the round-robin and leastconn rotation;
	// false for predictions (Where, Request.Stay's home server).
	commit bool
	// assumeUp counts every server as up: Request.Stay asks for the user's
	// own server whatever its health.
	assumeUp bool
	// recipient places an LMTP recipient (Request.Recipient), which a
	// server's MaxConn does not refuse.
	recipient bool
}

// excluded reports whether name is in exclude.
func excluded(name string, exclude []string) bool {
	for _, x := range exclude {
		if x == name {
			return true
		}
	}
	return false
}

// hasRoom reports whether s can take one more session (call with
// Director.mu held). Only sessions fill a server: LMTP recipients' leases
// are not counted (Request.Recipient).
func (s *server) hasRoom() bool { return s.maxConn == 0 || s.sessions < s.maxConn }

// roomFor reports whether s can take what c places: a recipient always,
// a session while s has room.
func (s *server) roomFor(c choice) bool { return c.recipient || s.hasRoom() }

// newUsersLocked reports whether server i may take a new (non-sticky) user
// for c: up (or c.assumeUp), ready, weighted, with room, not excluded.
func (d *Director) newUsersLocked(i int, c choice) bool {
	s := &d.servers[i]
	return (s.up || c.assumeUp) && s.admin == AdminReady && s.weight > 0 && s.roomFor(c) && !excluded(s.name, c.exclude)
}

// stickyOKLocked reports whether a sticky entry on server i is honoured
// for c (its exclude and recipient fields): the server is up, not in
// maintenance (drain and weight 0 keep their users), has room and is not
// excluded. A backup keeps its users only while no active server takes
// new users.
func (d *Director) stickyOKLocked(i int, c choice) bool {
	s := &d.servers[i]
	if !s.up || s.admin == AdminMaint || !s.roomFor(c) || excluded(s.name, c.exclude) {
		return false
	}
	return !s.backup || !d.anyLocked(false, choice{exclude: c.exclude, recipient: c.recipient})
}

// anyLocked reports whether any server of the given kind (backup or
// active) takes new users for c (its exclude and recipient fields).
func (d *Director) anyLocked(backup bool, c choice) bool {
	for i := range d.servers {
		if d.servers[i].backup == backup && d.newUsersLocked(i, c) {
			return true
		}
	}
	return false
}

// chooseLocked places a user without a usable sticky entry: actives by the
// balance algorithm, else backups. It returns -1 when nothing is usable.
// With commit false it has no side effects (round robin state stays), which
// Where needs; the leastconn and roundrobin answers are then predictions.
func (d *Director) chooseLocked(c choice) (int, string) {
	if i := d.balanceLocked(false, c); i >= 0 {
		return i, d.reasonName()
	}
	if !d.allBackups {
		for i := range d.servers {
			if d.servers[i].backup && d.newUsersLocked(i, c) {
				return i, "backup"
			}
		}
		return -1, ""
	}
	if i := d.balanceLocked(true, c); i >= 0 {
		return i, "backup"
	}
	return -1, ""
}

func (d *Director) reasonName() string {
	if d.balance == BalanceUser {
		return "hash"
	}
	return d.balance.String()
}

// hashes reports whether the balance algorithm places a user by its name
// alone (BalanceUser, BalanceDirector), so that Where can predict it.
func (d *Director) hashes() bool { return d.balance == BalanceUser || d.balance == BalanceDirector }

// balanceLocked runs the balance algorithm over the usable servers whose
// backup flag equals backup.
func (d *Director) balanceLocked(backup bool, c choice) int {
	switch d.balance {
	case BalanceLeastConn:
		return d.leastConnLocked(backup, c)
	case BalanceRoundRobin:
		return d.roundRobinLocked(backup, c)
	case BalanceSource:
		return d.hrwLocked(backup, sourceHash(c.client), c)
	case BalanceDirector:
		return d.directorLocked(backup, c)
	default:
		return d.hrwLocked(backup, keyHash(c.user), c)
	}
}

// sourceHash is the placement key of a client: its IP address without the
// port, IPv4-mapped IPv6 addresses folded into IPv4.
func sourceHash(client netip.AddrPort) uint64 {
	b := client.Addr().Unmap().As16()
	return mix64(fnv1a64Bytes(b[:]))
}

// hrwLocked returns the usable server with the highest rendezvous score
// for key; ties (practically impossible) go to the lower index.
func (d *Director) hrwLocked(backup bool, key uint64, c choice) int {
	best, bestScore := -1, 0.0
	for i := range d.servers {
		s := &d.servers[i]
		if s.backup != backup || !d.newUsersLocked(i, c) {
			continue
		}
		if sc := hrwScore(s.hash, key, s.weight); best < 0 || sc > bestScore {
			best, bestScore = i, sc
		}
	}
	return best
}

// leastConnLocked returns the usable server with the lowest
// sessions/weight. The scan starts at a rotating offset so that ties are
// broken round robin.
func (d *Director) leastConnLocked(backup bool, c choice) int {
	n := len(d.servers)
	start := d.rr % n
	if c.commit {
		d.rr = (d.rr + 1) % n
	}
	best := -1
	for k := range n {
		i := (start + k) % n
		s := &d.servers[i]
		if s.backup != backup || !d.newUsersLocked(i, c) {
			continue
		}
		// s.sessions/s.weight < b.sessions/b.weight, without division.
		if best < 0 || s.sessions*d.servers[best].weight < d.servers[best].sessions*s.weight {
			best = i
		}
	}
	return best
}

// roundRobinLocked is smooth weighted round robin (as in nginx): every
// usable server gains its weight, the richest wins and pays the total. Over
// any window of Σweight picks each server is chosen weight times, and the
// picks are interleaved rather than bunched.
func (d *Director) roundRobinLocked(backup bool, c choice) int {
	best, total := -1, 0
	bestCur := 0
	for i := range d.servers {
		s := &d.servers[i]
		if s.backup != backup || !d.newUsersLocked(i, c) {
			continue
		}
		cur := s.rrCur + s.weight
		if c.commit {
			s.rrCur = cur
		}
		total += s.weight
		if best < 0 || cur > bestCur {
			best, bestCur = i, cur
		}
	}
	if best >= 0 && c.commit {
		d.servers[best].rrCur -= total
	}
	return best
}

// HashOrder returns the servers that take new users in the user's
// preference order: usable actives first, then usable backups (in hash
// order with AllBackups, else configuration order). The order is the
// rendezvous-hash one, or under BalanceDirector the order in which the
// ring offers servers to the user. It ignores the sticky table; Pick's
// answer comes first, HashOrder says where to go next (LMTP redelivery,
// retries). user is a login name.
func (d *Director) HashOrder(user string) []string {
	if d.balance == BalanceDirector {
		return d.ringOrder(user)
	}
	key := keyHash(d.names.normalize(user, false))
	type scored struct {
		i      int
		backup bool
		score  float64
	}
	d.mu.Lock()
	list := make([]scored, 0, len(d.servers))
	for i := range d.servers {
		if !d.newUsersLocked(i, choice{}) {
			continue
		}
		s := &d.servers[i]
		sc := hrwScore(s.hash, key, s.weight)
		if s.backup && !d.allBackups {
			sc = -float64(i) // configuration order, after no active
		}
		list = append(list, scored{i, s.backup, sc})
	}
	slices.SortStableFunc(list, func(a, b scored) int {
		if a.backup != b.backup {
			if a.backup {
				return 1
			}
			return -1
		}
		return cmp.Compare(b.score, a.score)
	})
	out := make([]string, len(list))
	for k, x := range list {
		out[k] = d.servers[x.i].name
	}
	d.mu.Unlock()
	return out
}

// ringOrder is HashOrder under BalanceDirector.
func (d *Director) ringOrder(user string) []string {
	c := choice{hashName: d.hashName(user, false)}
	d.mu.Lock()
	defer d.mu.Unlock()
	order := d.ringOrderLocked(false, c)
	if d.allBackups {
		order = append(order, d.ringOrderLocked(true, c)...)
	} else {
		for i := range d.servers {
			if d.servers[i].backup && d.newUsersLocked(i, c) {
				order = append(order, i)
			}
		}
	}
	out := make([]string, len(order))
	for k, i := range order {
		out[k] = d.servers[i].name
	}
	return out
}
