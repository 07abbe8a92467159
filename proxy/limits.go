package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Limits protect a frontend from a single client: how many connections
// one client address may hold and open, and the failed-login penalty of
// one address and of one user name (as Dovecot's auth_penalty). The zero
// value limits nothing, and so does each zero field: the configuration
// (config's [global.limits]) holds the defaults a deployment gets.
type Limits struct {
	// MaxPerClient caps one client's live connections.
	MaxPerClient int
	// MaxRate caps one client's new connections per RateWindow (which
	// must be set with it).
	MaxRate    int
	RateWindow time.Duration
	// IPv6Prefix is the prefix length that counts as one IPv6 client (a
	// host usually gets a /64); zero means 64. IPv4 clients count per
	// address.
	IPv6Prefix int
	// Exempt networks (monitoring, webmail servers) have no per-client
	// limit and no penalty.
	Exempt []netip.Prefix
	// PenaltyInit is the delay before the answer to the first failed
	// login of a client or a user; it doubles with each further failure
	// of either, up to PenaltyMax.
	PenaltyInit, PenaltyMax time.Duration
	// BlockAfter failed logins from one client (with no success between
	// them, forgotten after BlockFor without a failure), its logins are
	// refused for BlockFor.
	BlockAfter int
	BlockFor   time.Duration
	// TableSize bounds the clients and the users tracked, each (the least
	// recently seen go first), so that an attacker cannot fill memory;
	// zero means 65536.
	TableSize int
}

// active reports whether l limits anything.
func (l *Limits) active() bool {
	return l.MaxPerClient > 0 || l.MaxRate > 0 || l.PenaltyInit > 0 || l.BlockAfter > 0
}

func (l *Limits) tableSize() int {
	if l.TableSize <= 0 {
		return 65536
	}
	return l.TableSize
}

func (l *Limits) ipv6Prefix() int {
	if l.IPv6Prefix <= 0 || l.IPv6Prefix > 128 {
		return 64
	}
	return l.IPv6Prefix
}

// ErrBlocked is a login refused because its client failed too many logins
// lately. It wraps ErrUnavailable: login frontends answer with their
// temporary failure.
var ErrBlocked = fmt.Errorf("%w: too many failed logins from this address, try again later", ErrUnavailable)

// Refuser is implemented by a frontend's Handler that has words for a
// connection the engine refuses (a per-client limit) before the handler
// runs: IMAP "* BYE ...", POP3 "-ERR [SYS/TEMP] ...", SMTP "421 4.7.0 ...".
// A handler without it gets the connection closed without a word.
type Refuser interface {
	Refusal(why string) string
}

// client is one client's entry in a guard's table.
type client struct {
	live     int       // connections admitted and not finished
	winStart time.Time // the rate window
	winCount int
	failures int // failed logins since the last expiry
	lastFail time.Time
	blocked  time.Time // logins refused until then
}

// user is one user name's entry: its failed logins.
type user struct {
	failures int
	lastFail time.Time
}

// guard keeps one frontend's per-client and per-user tables. A reload keeps
// it by frontend name; its limits are the frontend's latest.
type guard struct {
	mu      sync.Mutex
	limits  Limits
	clients *simplelru.LRU[netip.Prefix, *client]
	users   *simplelru.LRU[string, *user]
}

func newGuard(l Limits) *guard {
	g := &guard{limits: l}
	g.clients, _ = simplelru.NewLRU[netip.Prefix, *client](l.tableSize(), nil)
	g.users, _ = simplelru.NewLRU[string, *user](l.tableSize(), nil)
	return g
}

// setLimits applies a reload's limits; the tables stay (resized).
func (g *guard) setLimits(l Limits) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.limits = l
	g.clients.Resize(l.tableSize())
	g.users.Resize(l.tableSize())
}

// key is the client a connection counts against, and whether it is exempt.
func (g *guard) key(a netip.Addr) (netip.Prefix, bool) {
	a = a.Unmap()
	for _, p := range g.limits.Exempt {
		if p.Contains(a) {
			return netip.Prefix{}, false
		}
	}
	bits := 32
	if a.Is6() {
		bits = g.limits.ipv6Prefix()
	}
	p, err := a.Prefix(bits)
	return p, err == nil
}

// admit counts a new connection from a; it returns why it is refused, or
// "". An admitted connection is released with leave.
func (g *guard) admit(a netip.Addr, now time.Time) (why string, admitted bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k, ok := g.key(a)
	if !ok {
		return "", false
	}
	c, _ := g.clients.Get(k)
	if c == nil {
		c = &client{}
		g.clients.Add(k, c)
	}
	l := &g.limits
	if now.Sub(c.winStart) >= l.RateWindow {
		c.winStart, c.winCount = now, 0
	}
	c.winCount++
	switch {
	case l.MaxPerClient > 0 && c.live >= l.MaxPerClient:
		return "Too many connections from your address", false
	case l.MaxRate > 0 && c.winCount > l.MaxRate:
		return "Too many new connections from your address, slow down", false
	}
	c.live++
	return "", true
}

// leave releases an admitted connection of a.
func (g *guard) leave(a netip.Addr) {
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if k, ok := g.key(a); ok {
		if c, _ := g.clients.Peek(k); c != nil && c.live > 0 {
			c.live--
		}
	}
}

// blocked reports whether logins from a are refused now.
func (g *guard) blocked(a netip.Addr, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	k, ok := g.key(a)
	if !ok || g.limits.BlockAfter <= 0 {
		return false
	}
	c, _ := g.clients.Peek(k)
	return c != nil && now.Before(c.blocked)
}

// failed records a failed login of name from a and returns how long to
// wait before the answer: PenaltyInit doubled for each earlier failure of
// the client or of the user, whichever has more, up to PenaltyMax.
func (g *guard) failed(a netip.Addr, name string, now time.Time) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	k, ok := g.key(a)
	if !ok {
		return 0
	}
	l := &g.limits
	expire := l.BlockFor
	n := 0
	if c, _ := g.clients.Get(k); c != nil {
		if expire > 0 && now.Sub(c.lastFail) > expire {
			c.failures = 0
		}
		c.failures++
		c.lastFail = now
		if l.BlockAfter > 0 && c.failures >= l.BlockAfter {
			c.blocked = now.Add(expire)
		}
		n = c.failures
	}
	if name != "" {
		u, _ := g.users.Get(name)
		if u == nil {
			u = &user{}
			g.users.Add(name, u)
		}
		if expire > 0 && now.Sub(u.lastFail) > expire {
			u.failures = 0
		}
		u.failures++
		u.lastFail = now
		n = max(n, u.failures)
	}
	return penalty(l.PenaltyInit, l.PenaltyMax, n)
}

// succeeded forgets the user's failures.
func (g *guard) succeeded(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.users.Remove(name)
}

// penalty is init doubled n-1 times, at most max (when set); none for
// n < 1 or no init.
func penalty(init, max time.Duration, n int) time.Duration {
	if n < 1 || init <= 0 {
		return 0
	}
	d := init
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if max > 0 && d > max {
		d = max
	}
	return d
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

var errRefused = errors.New("refused by a per-client limit")

// admit counts c against its client's limits (after prepare: the client
// is the one a trusted PROXY header named). Over a limit the client is
// told so in its protocol's words and the session ends as refused.
func (c *Conn) admit() error {
	g := c.fe.guard
	if g == nil {
		return nil
	}
	why, ok := g.admit(c.remote.Addr(), time.Now())
	c.admitted = ok
	if why == "" {
		return nil
	}
	if r, ok := c.fe.Handler.(Refuser); ok {
		c.sock.SetWriteDeadline(time.Now().Add(goodbyeTimeout))
		c.WriteString(r.Refusal(why))
	}
	if c.srv.refusedLog.allow(time.Now()) {
		c.Logger().Warn("connection refused by a per-client limit (logged once a second)", "why", why)
	}
	return fmt.Errorf("%w: %s", errRefused, why)
}
