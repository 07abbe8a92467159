package director

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Defaults for zero Options fields.
const (
	// DefaultUserExpire is how long a sticky entry outlives the user's last
	// session when Options.UserExpire is zero. Dovecot's director uses 15
	// minutes (director_user_expire) for the same reason: a reconnecting
	// client should find its server's caches warm.
	DefaultUserExpire = 15 * time.Minute
	// DefaultStickySize bounds the sticky table when Options.StickySize is
	// zero: about a million users, a few hundred bytes each.
	DefaultStickySize = 1 << 20
)

// ServerOptions describes one server of a backend.
type ServerOptions struct {
	// Name identifies the server in logs, Leases and the control API; it is
	// also the hash seed, so renaming a server moves its users. Usually the
	// dial address. Required, unique within the backend.
	Name string
	// Weight is the server's share of new users, 0..MaxWeight.
	// Zero means no new users (existing sticky users stay).
	Weight int
	// Backup servers take users only when no active server is usable.
	Backup bool
	// Admin is the initial administrative state; zero is AdminReady.
	Admin AdminState
	// MaxConn caps the server's live sessions; a full server takes no new
	// sessions, not even sticky ones. Zero (or negative) means unlimited.
	MaxConn int
}

// Options configures a Director.
type Options struct {
	// Name is the backend name, for logs and errors.
	Name string
	// Balance places users without a sticky entry; zero is BalanceUser.
	Balance Balance
	// UserExpire is how long a sticky entry lives after the user's last
	// session ends. Zero means DefaultUserExpire; negative means the entry is
	// forgotten as soon as the last session ends.
	UserExpire time.Duration
	// DefaultDomain is appended (after '@') to user names without '@'.
	// Empty means names are used as given (after NormalizeUser).
	DefaultDomain string
	// AllBackups spreads users over all usable backups with the balance
	// algorithm when no active server is usable. False means only the first
	// usable backup in configuration order is used.
	AllBackups bool
	// ErrorLimit is the number of consecutive Failed leases that mark a
	// server down (passive health). Zero or negative turns it off.
	ErrorLimit int
	// StickySize bounds the sticky table (least recently used entries are
	// evicted first). Zero or negative means DefaultStickySize. An evicted
	// user with live sessions only loses its pin: the next session is placed
	// by the balance algorithm, for BalanceUser usually on the same server.
	StickySize int
	// Servers are the backend's servers; at least one is required.
	Servers []ServerOptions
	// Logger receives state changes at Info and user moves at Debug.
	// Nil means discard.
	Logger *slog.Logger
	// OnPassiveDown, if set, is called when ErrorLimit marks a server down,
	// after the Director's lock is released, so that the health checker can
	// force its own state machine down too. It must not block for long.
	OnPassiveDown func(server, reason string)
}

// Request is one placement question.
type Request struct {
	// User is the login name as the client sent it; Pick normalises it.
	User string
	// Client is the client's address; BalanceSource hashes its IP.
	Client netip.AddrPort
	// Exclude names servers already tried (and failed) for this login.
	Exclude []string
	// Stay asks for the user's own server and never another: the sticky
	// server, else the one the balance algorithm picks as if every server
	// were up. When that server is down (or in maintenance) Pick fails with
	// ErrServerUnavailable instead of placing the user elsewhere, and no
	// assignment moves. LMTP uses it so that, without shared storage, two
	// servers never write one mailbox.
	Stay bool
}

// server is the mutable state of one server, guarded by Director.mu.
type server struct {
	name    string
	hash    uint64
	weight  int
	backup  bool
	admin   AdminState
	maxConn int

	up     bool
	reason string

	sessions int    // live leases
	picks    uint64 // leases handed out, ever
	failures int    // consecutive Failed leases
	rrCur    int    // smooth weighted round robin "current weight"
}

// sticky is one entry of the sticky table. Leases keep a pointer to the
// entry they counted in, so an entry that was evicted or forgotten is
// decremented harmlessly.
type sticky struct {
	server  int       // index into Director.servers
	live    int       // the user's live sessions
	expires time.Time // when live == 0; zero means no expiry while live == 0
}

// Director places users on the servers of one backend. All methods are
// safe for concurrent use.
type Director struct {
	name       string
	balance    Balance
	userExpire time.Duration
	domain     string
	allBackups bool
	errorLimit int
	log        *slog.Logger
	onDown     func(server, reason string)

	mu      sync.Mutex
	servers []server
	byName  map[string]int
	table   *simplelru.LRU[string, *sticky]
	rr      int // tie-break rotation for leastconn
	// assumeUp counts every server as up while homeLocked chooses.
	assumeUp bool
}

// New validates opts and returns a Director with every server up.
func New(opts Options) (*Director, error) {
	var errs []error
	if opts.Balance < BalanceUser || opts.Balance > BalanceSource {
		errs = append(errs, fmt.Errorf("balance: %w: %d", ErrUnknownBalance, int(opts.Balance)))
	}
	if len(opts.Servers) == 0 {
		errs = append(errs, errors.New("no servers"))
	}
	d := &Director{
		name:       opts.Name,
		balance:    opts.Balance,
		userExpire: opts.UserExpire,
		domain:     opts.DefaultDomain,
		allBackups: opts.AllBackups,
		errorLimit: max(opts.ErrorLimit, 0),
		log:        opts.Logger,
		onDown:     opts.OnPassiveDown,
		servers:    make([]server, len(opts.Servers)),
		byName:     make(map[string]int, len(opts.Servers)),
	}
	if d.userExpire == 0 {
		d.userExpire = DefaultUserExpire
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	for i, so := range opts.Servers {
		switch _, dup := d.byName[so.Name]; {
		case so.Name == "":
			errs = append(errs, fmt.Errorf("server[%d]: missing name", i))
		case dup:
			errs = append(errs, fmt.Errorf("server[%d]: duplicate name %q", i, so.Name))
		}
		if so.Weight < 0 || so.Weight > MaxWeight {
			errs = append(errs, fmt.Errorf("server[%d]: %w %d: want 0..%d", i, ErrInvalidWeight, so.Weight, MaxWeight))
		}
		if so.Admin < AdminReady || so.Admin > AdminMaint {
			errs = append(errs, fmt.Errorf("server[%d]: %w: %d", i, ErrUnknownAdminState, int(so.Admin)))
		}
		d.byName[so.Name] = i
		d.servers[i] = server{
			name:    so.Name,
			hash:    serverHash(so.Name),
			weight:  so.Weight,
			backup:  so.Backup,
			admin:   so.Admin,
			maxConn: max(so.MaxConn, 0),
			up:      true,
			reason:  "initial state",
		}
	}
	size := opts.StickySize
	if size <= 0 {
		size = DefaultStickySize
	}
	table, err := simplelru.NewLRU[string, *sticky](size, nil)
	if err != nil {
		errs = append(errs, fmt.Errorf("sticky table: %w", err))
	}
	d.table = table
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("director %s: %w", opts.Name, err)
	}
	return d, nil
}

// Name returns the backend name.
func (d *Director) Name() string { return d.name }

// Balance returns the balance algorithm.
func (d *Director) Balance() Balance { return d.balance }

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

// Pick places one new session of req.User and counts it as live on the
// chosen server until the Lease is released. It returns an error wrapping
// ErrNoServer when no server can take the session.
//
// A sticky entry is honoured while its server is up, not in maintenance,
// under MaxConn and not excluded (a backup's entry only while no active
// server takes users); otherwise the user is placed afresh and the entry
// moves to the new server.
func (d *Director) Pick(req Request) (*Lease, error) {
	user := NormalizeUser(req.User, d.domain)
	useTable := d.balance != BalanceSource && user != ""
	now := time.Now()

	d.mu.Lock()
	var entry *sticky
	if useTable {
		entry = d.lookupLocked(user, now)
	}
	idx, reason := -1, ""
	switch {
	case req.Stay:
		idx, reason = d.homeLocked(entry, user, req.Client)
		if idx >= 0 && !d.stickyOKLocked(idx, nil) {
			name := d.servers[idx].name
			d.mu.Unlock()
			return nil, fmt.Errorf("director %s: %q belongs to server %s: %w", d.name, user, name, ErrServerUnavailable)
		}
	case entry != nil && d.stickyOKLocked(entry.server, req.Exclude):
		idx, reason = entry.server, "sticky"
	default:
		idx, reason = d.chooseLocked(user, req.Client, req.Exclude, true)
	}
	if idx < 0 {
		d.mu.Unlock()
		return nil, fmt.Errorf("director %s: pick server for %q: %w", d.name, user, ErrNoServer)
	}
	l := &Lease{Server: d.servers[idx].name, Index: idx, Reason: reason, User: user, d: d, prev: -1}
	if useTable {
		switch {
		case entry == nil:
			entry = &sticky{server: idx}
			d.table.Add(user, entry)
			l.changed = true
		case entry.server != idx:
			l.changed, l.prev = true, entry.server
			d.log.Debug("user moved", "backend", d.name, "user", user,
				"from", d.servers[entry.server].name, "to", d.servers[idx].name, "reason", reason)
			entry.server = idx
		}
		entry.live++
		entry.expires = time.Time{}
		l.entry = entry
	}
	s := &d.servers[idx]
	s.sessions++
	s.picks++
	d.mu.Unlock()
	d.log.Debug("pick", "backend", d.name, "user", user, "server", l.Server, "reason", reason)
	return l, nil
}

// homeLocked is the user's own server for Request.Stay: its sticky server,
// else the choice of the balance algorithm with every server counted as up.
func (d *Director) homeLocked(entry *sticky, user string, client netip.AddrPort) (int, string) {
	if entry != nil {
		return entry.server, "sticky"
	}
	d.assumeUp = true
	defer func() { d.assumeUp = false }()
	return d.chooseLocked(user, client, nil, false)
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

// excluded reports whether name is in exclude.
func excluded(name string, exclude []string) bool {
	for _, x := range exclude {
		if x == name {
			return true
		}
	}
	return false
}

// hasRoom reports whether s can take one more session (call with Director.mu held).
func (s *server) hasRoom() bool { return s.maxConn == 0 || s.sessions < s.maxConn }

// newUsersLocked reports whether server i may take a new (non-sticky) user.
func (d *Director) newUsersLocked(i int, exclude []string) bool {
	s := &d.servers[i]
	return (s.up || d.assumeUp) && s.admin == AdminReady && s.weight > 0 && s.hasRoom() && !excluded(s.name, exclude)
}

// stickyOKLocked reports whether a sticky entry on server i is honoured:
// the server is up, not in maintenance (drain and weight 0 keep their
// users), has room and is not excluded. A backup keeps its users only while
// no active server takes new users.
func (d *Director) stickyOKLocked(i int, exclude []string) bool {
	s := &d.servers[i]
	if !s.up || s.admin == AdminMaint || !s.hasRoom() || excluded(s.name, exclude) {
		return false
	}
	return !s.backup || !d.anyLocked(false, exclude)
}

// anyLocked reports whether any server of the given kind (backup or
// active) takes new users.
func (d *Director) anyLocked(backup bool, exclude []string) bool {
	for i := range d.servers {
		if d.servers[i].backup == backup && d.newUsersLocked(i, exclude) {
			return true
		}
	}
	return false
}

// chooseLocked places a user without a usable sticky entry: actives by the
// balance algorithm, else backups. It returns -1 when nothing is usable.
// With commit false it has no side effects (round robin state stays), which
// Where needs; the leastconn and roundrobin answers are then predictions.
func (d *Director) chooseLocked(user string, client netip.AddrPort, exclude []string, commit bool) (int, string) {
	if i := d.balanceLocked(false, user, client, exclude, commit); i >= 0 {
		return i, d.reasonName()
	}
	if !d.allBackups {
		for i := range d.servers {
			if d.servers[i].backup && d.newUsersLocked(i, exclude) {
				return i, "backup"
			}
		}
		return -1, ""
	}
	if i := d.balanceLocked(true, user, client, exclude, commit); i >= 0 {
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

// balanceLocked runs the balance algorithm over the usable servers whose
// backup flag equals backup.
func (d *Director) balanceLocked(backup bool, user string, client netip.AddrPort, exclude []string, commit bool) int {
	switch d.balance {
	case BalanceLeastConn:
		return d.leastConnLocked(backup, exclude, commit)
	case BalanceRoundRobin:
		return d.roundRobinLocked(backup, exclude, commit)
	case BalanceSource:
		return d.hrwLocked(backup, sourceHash(client), exclude)
	default:
		return d.hrwLocked(backup, keyHash(user), exclude)
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
func (d *Director) hrwLocked(backup bool, key uint64, exclude []string) int {
	best, bestScore := -1, 0.0
	for i := range d.servers {
		s := &d.servers[i]
		if s.backup != backup || !d.newUsersLocked(i, exclude) {
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
func (d *Director) leastConnLocked(backup bool, exclude []string, commit bool) int {
	n := len(d.servers)
	start := d.rr % n
	if commit {
		d.rr = (d.rr + 1) % n
	}
	best := -1
	for k := range n {
		i := (start + k) % n
		s := &d.servers[i]
		if s.backup != backup || !d.newUsersLocked(i, exclude) {
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
func (d *Director) roundRobinLocked(backup bool, exclude []string, commit bool) int {
	best, total := -1, 0
	bestCur := 0
	for i := range d.servers {
		s := &d.servers[i]
		if s.backup != backup || !d.newUsersLocked(i, exclude) {
			continue
		}
		cur := s.rrCur + s.weight
		if commit {
			s.rrCur = cur
		}
		total += s.weight
		if best < 0 || cur > bestCur {
			best, bestCur = i, cur
		}
	}
	if best >= 0 && commit {
		d.servers[best].rrCur -= total
	}
	return best
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

// lookupServer returns the index of the named server.
func (d *Director) lookupServer(name string) (int, error) {
	i, ok := d.byName[name]
	if !ok {
		return -1, fmt.Errorf("director %s: server %q: %w", d.name, name, ErrUnknownServer)
	}
	return i, nil
}

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

// ServerStatus is a snapshot of one server.
type ServerStatus struct {
	Name    string
	Index   int
	Weight  int
	Backup  bool
	Admin   AdminState
	MaxConn int
	// Up is the health; Reason says why it is what it is.
	Up     bool
	Reason string
	// Sessions is the number of live leases, Picks the number handed out
	// ever, Failures the current run of consecutive Failed leases.
	Sessions int
	Picks    uint64
	Failures int
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
			Up: s.up, Reason: s.reason, Sessions: s.sessions, Picks: s.picks, Failures: s.failures,
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
	// "sticky: expires in 3m0s", "hash: no assignment yet".
	Reason string
	// Sessions is the user's live sessions (from the sticky entry).
	Sessions int
	// Expires is when the idle sticky entry expires; zero while the user
	// has live sessions or has no entry.
	Expires time.Time
}

// Where reports where user's next session would go and why, without
// changing anything but expired-entry cleanup.
func (d *Director) Where(user string) Placement {
	user = NormalizeUser(user, d.domain)
	p := Placement{User: user}
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	var e *sticky
	if d.balance != BalanceSource && user != "" {
		if v, ok := d.table.Peek(user); ok {
			if v.live == 0 && !v.expires.IsZero() && !now.Before(v.expires) {
				d.table.Remove(user)
			} else {
				e = v
			}
		}
	}
	if e != nil {
		p.Sessions, p.Expires = e.live, e.expires
		if d.stickyOKLocked(e.server, nil) {
			p.Server = d.servers[e.server].name
			switch {
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
	i, how := d.chooseLocked(user, netip.AddrPort{}, nil, false)
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

// Move pins user to server: new sessions go there, and the entry lives
// like any other (it starts to expire now if the user has no live
// session). Existing sessions are the caller's business (kick them).
func (d *Director) Move(user, name string) error {
	user = NormalizeUser(user, d.domain)
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
	e, ok := d.table.Get(user)
	if !ok {
		e = &sticky{}
		d.table.Add(user, e)
	}
	from := "(none)"
	if ok {
		from = d.servers[e.server].name
	}
	e.server = i
	if e.live == 0 {
		e.expires = time.Time{}
		if d.userExpire > 0 {
			e.expires = time.Now().Add(d.userExpire)
		}
	}
	d.log.Info("user moved", "backend", d.name, "user", user, "from", from, "to", name, "reason", "admin move")
	return nil
}

// Forget drops user's sticky entry; the next session is placed afresh.
// Live sessions are not affected.
func (d *Director) Forget(user string) {
	user = NormalizeUser(user, d.domain)
	d.mu.Lock()
	d.table.Remove(user)
	d.mu.Unlock()
}

// HashOrder returns the servers that take new users in the user's
// rendezvous-hash preference order: usable actives first, then usable
// backups (in hash order with AllBackups, else configuration order). It
// ignores the sticky table; Pick's answer comes first, HashOrder says where
// to go next (LMTP redelivery, retries).
func (d *Director) HashOrder(user string) []string {
	key := keyHash(NormalizeUser(user, d.domain))
	type scored struct {
		i      int
		backup bool
		score  float64
	}
	d.mu.Lock()
	list := make([]scored, 0, len(d.servers))
	for i := range d.servers {
		if !d.newUsersLocked(i, nil) {
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
