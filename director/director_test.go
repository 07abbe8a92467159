package director

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// newDirector builds a Director or fails the test.
func newDirector(t testing.TB, opts Options) *Director {
	t.Helper()
	d, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

// servers builds active ServerOptions named s0, s1, ... with the weights.
func servers(weights ...int) []ServerOptions {
	out := make([]ServerOptions, len(weights))
	for i, w := range weights {
		out[i] = ServerOptions{Name: fmt.Sprintf("s%d", i), Weight: w}
	}
	return out
}

// pick calls Pick and fails the test on error.
func pick(t testing.TB, d *Director, user string) *Lease {
	t.Helper()
	l, err := d.Pick(Request{User: user})
	if err != nil {
		t.Fatalf("Pick(%q): %v", user, err)
	}
	return l
}

// hashServer is where user goes without a sticky entry, everything usable.
func hashServer(t testing.TB, d *Director, user string) string {
	t.Helper()
	order := d.HashOrder(user)
	if len(order) == 0 {
		t.Fatalf("HashOrder(%q) is empty", user)
	}
	return order[0]
}

// userOn returns a user whose hash server is server.
func userOn(t testing.TB, d *Director, server string) string {
	t.Helper()
	for i := range 10000 {
		u := fmt.Sprintf("user%d@example.com", i)
		if hashServer(t, d, u) == server {
			return u
		}
	}
	t.Fatalf("no user hashes to %s in 10000 tries", server)
	return ""
}

// status returns the snapshot of the named server.
func status(t testing.TB, d *Director, name string) ServerStatus {
	t.Helper()
	for _, s := range d.Servers() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no server %q", name)
	return ServerStatus{}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"ok", Options{Servers: servers(1, 2)}, ""},
		{"no servers", Options{}, "no servers"},
		{"empty name", Options{Servers: []ServerOptions{{Weight: 1}}}, "server[0]: missing name"},
		{"duplicate", Options{Servers: []ServerOptions{{Name: "a"}, {Name: "a"}}}, `server[1]: duplicate name "a"`},
		{"weight high", Options{Servers: servers(1001)}, "server[0]: invalid weight 1001"},
		{"weight negative", Options{Servers: servers(-1)}, "server[0]: invalid weight -1"},
		{"balance", Options{Balance: 9, Servers: servers(1)}, "unknown balance"},
		{"admin", Options{Servers: []ServerOptions{{Name: "a", Admin: 7}}}, "unknown admin state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("got error %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseBalance(t *testing.T) {
	tests := []struct {
		in      string
		want    Balance
		wantErr bool
	}{
		{"", BalanceUser, false},
		{"user", BalanceUser, false},
		{"LeastConn", BalanceLeastConn, false},
		{" roundrobin ", BalanceRoundRobin, false},
		{"source", BalanceSource, false},
		{"random", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseBalance(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrUnknownBalance) {
					t.Errorf("got error %v, want ErrUnknownBalance", err)
				}
				return
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if back, _ := ParseBalance(got.String()); back != got {
				t.Errorf("String round trip: got %v, want %v", back, got)
			}
		})
	}
}

func TestParseAdminState(t *testing.T) {
	tests := []struct {
		in      string
		want    AdminState
		wantErr bool
	}{
		{"", AdminReady, false},
		{"ready", AdminReady, false},
		{"DRAIN", AdminDrain, false},
		{"maint", AdminMaint, false},
		{"down", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseAdminState(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrUnknownAdminState) {
					t.Errorf("got error %v, want ErrUnknownAdminState", err)
				}
				return
			}
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if back, _ := ParseAdminState(got.String()); back != got {
				t.Errorf("String round trip: got %v, want %v", back, got)
			}
		})
	}
}

func TestNormalizeUser(t *testing.T) {
	tests := []struct {
		name, user, domain, want string
	}{
		{"plain", "alice", "", "alice"},
		{"lower", "Alice@Example.COM", "", "alice@example.com"},
		{"trim", "  bob@example.com\t", "", "bob@example.com"},
		{"domain", "bob", "example.com", "bob@example.com"},
		{"domain lowered", "Bob", "Example.Com", "bob@example.com"},
		{"has domain", "bob@other.org", "example.com", "bob@other.org"},
		{"empty", "", "example.com", ""},
		{"spaces only", "   ", "example.com", ""},
		{"non-ASCII kept", "ÉLODIE@x.fr", "", "Élodie@x.fr"},
		{"inner space kept", "a b", "", "a b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NormalizeUser(tt.user, tt.domain); got != tt.want {
				t.Errorf("NormalizeUser(%q, %q): got %q, want %q", tt.user, tt.domain, got, tt.want)
			}
		})
	}
}

func TestPickSameUserSameServer(t *testing.T) {
	d := newDirector(t, Options{Servers: servers(100, 100, 200), UserExpire: -1})
	for i := range 200 {
		u := fmt.Sprintf("user%d", i)
		first := pick(t, d, u)
		first.Release()
		for range 3 {
			l := pick(t, d, u)
			l.Release()
			if l.Server != first.Server {
				t.Fatalf("user %s: got %s, want %s", u, l.Server, first.Server)
			}
			if l.Reason != "hash" {
				t.Fatalf("user %s: got reason %q, want hash", u, l.Reason)
			}
		}
	}
}

func TestDeterminismAcrossInstances(t *testing.T) {
	// Two nodes with the same configuration, servers listed in a different
	// order, must agree on every user.
	a := newDirector(t, Options{Servers: servers(100, 100, 200)})
	rev := servers(100, 100, 200)
	slices.Reverse(rev)
	b := newDirector(t, Options{Servers: rev})
	for i := range 2000 {
		u := fmt.Sprintf("user%d@example.com", i)
		la, lb := pick(t, a, u), pick(t, b, u)
		if la.Server != lb.Server {
			t.Fatalf("user %s: instance a got %s, instance b got %s", u, la.Server, lb.Server)
		}
	}
}

// TestGolden pins a few placements. If it fails, the hash changed: every
// user of every deployment would move on upgrade. Do not update the table
// unless that is intended and announced.
func TestGolden(t *testing.T) {
	d := newDirector(t, Options{
		DefaultDomain: "example.com",
		Servers: []ServerOptions{
			{Name: "10.0.0.1:143", Weight: 100},
			{Name: "10.0.0.2:143", Weight: 100},
			{Name: "10.0.0.3:143", Weight: 200},
		},
	})
	tests := []struct{ user, want string }{
		{"alice@example.com", "10.0.0.3:143"},
		{"bob@example.com", "10.0.0.2:143"},
		{"carol@example.org", "10.0.0.1:143"},
		{"dave", "10.0.0.3:143"},
		{"eve@example.net", "10.0.0.3:143"},
		{"frank@example.com", "10.0.0.3:143"},
		{"grace", "10.0.0.3:143"},
		{"heidi@example.com", "10.0.0.1:143"},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			if got := hashServer(t, d, tt.user); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
	if got, want := keyHash("alice@example.com"), uint64(0x6e3f9f795974c45c); got != want {
		t.Errorf("keyHash: got %#x, want %#x", got, want)
	}
}

func TestHashDistribution(t *testing.T) {
	weights := []int{100, 100, 200}
	d := newDirector(t, Options{Servers: servers(weights...)})
	const n = 100000
	counts := map[string]int{}
	for i := range n {
		counts[hashServer(t, d, fmt.Sprintf("u%d@example.org", i))]++
	}
	total := 0
	for _, w := range weights {
		total += w
	}
	for i, w := range weights {
		name := fmt.Sprintf("s%d", i)
		want := float64(w) / float64(total)
		got := float64(counts[name]) / n
		if math.Abs(got-want) > 0.05*want {
			t.Errorf("%s: got share %.4f, want %.4f ±5%%", name, got, want)
		}
	}
}

func TestMembershipChangeMovesFewUsers(t *testing.T) {
	const n = 50000
	base := servers(100, 100, 200)
	old := newDirector(t, Options{Servers: base})

	t.Run("add", func(t *testing.T) {
		added := append(slices.Clone(base), ServerOptions{Name: "new", Weight: 100})
		d := newDirector(t, Options{Servers: added})
		moved := 0
		for i := range n {
			u := fmt.Sprintf("u%d", i)
			before, after := hashServer(t, old, u), hashServer(t, d, u)
			if before == after {
				continue
			}
			moved++
			if after != "new" {
				t.Fatalf("user %s moved %s → %s, want moves only to new", u, before, after)
			}
		}
		got, want := float64(moved)/n, 100.0/500
		if math.Abs(got-want) > 0.1*want {
			t.Errorf("got %.4f of users moved, want %.4f ±10%%", got, want)
		}
	})
	t.Run("remove", func(t *testing.T) {
		d := newDirector(t, Options{Servers: base[1:]})
		for i := range n {
			u := fmt.Sprintf("u%d", i)
			before, after := hashServer(t, old, u), hashServer(t, d, u)
			if before != "s0" && before != after {
				t.Fatalf("user %s moved %s → %s, want only users of s0 to move", u, before, after)
			}
		}
	})
}

func TestStickyKeepsUserAcrossWeightChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDirector(t, Options{Servers: servers(100, 100, 100), UserExpire: 10 * time.Minute})
		u := userOn(t, d, "s1")
		l := pick(t, d, u)
		if err := d.SetWeight("s1", 0); err != nil {
			t.Fatal(err)
		}
		l2 := pick(t, d, u)
		if l2.Server != "s1" || l2.Reason != "sticky" {
			t.Fatalf("live user after weight change: got %s (%s), want s1 (sticky)", l2.Server, l2.Reason)
		}
		l.Release()
		l2.Release()

		time.Sleep(9 * time.Minute)
		l3 := pick(t, d, u)
		l3.Release()
		if l3.Server != "s1" {
			t.Fatalf("idle user before expiry: got %s, want s1", l3.Server)
		}
		time.Sleep(10*time.Minute + time.Second)
		l4 := pick(t, d, u)
		l4.Release()
		if l4.Server == "s1" || l4.Reason != "hash" {
			t.Fatalf("after expiry: got %s (%s), want another server by hash", l4.Server, l4.Reason)
		}
	})
}

func TestStickySurvivesServerComingBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDirector(t, Options{Servers: servers(100, 100, 100)})
		u := userOn(t, d, "s2")
		if err := d.SetHealth("s2", false, "check failed"); err != nil {
			t.Fatal(err)
		}
		l := pick(t, d, u)
		away := l.Server
		if away == "s2" {
			t.Fatalf("got s2 while it is down")
		}
		if err := d.SetHealth("s2", true, "check passed"); err != nil {
			t.Fatal(err)
		}
		l2 := pick(t, d, u)
		if l2.Server != away || l2.Reason != "sticky" {
			t.Fatalf("after s2 came back: got %s (%s), want %s (sticky)", l2.Server, l2.Reason, away)
		}
		l.Release()
		l2.Release()
		l2.Release() // idempotent
		if got := d.Where(u); got.Reason != "sticky: expires in 15m0s" {
			t.Errorf("Where after release: got reason %q, want %q", got.Reason, "sticky: expires in 15m0s")
		}
		time.Sleep(DefaultUserExpire)
		l3 := pick(t, d, u)
		l3.Release()
		if l3.Server != "s2" {
			t.Fatalf("after expiry: got %s, want s2 (hash)", l3.Server)
		}
	})
}

func TestNegativeUserExpireForgets(t *testing.T) {
	d := newDirector(t, Options{Servers: servers(1, 1), UserExpire: -1})
	l1, l2 := pick(t, d, "a"), pick(t, d, "a")
	l1.Release()
	if got := d.StickyLen(); got != 1 {
		t.Fatalf("with one live session: got %d entries, want 1", got)
	}
	l2.Release()
	if got := d.StickyLen(); got != 0 {
		t.Fatalf("after last release: got %d entries, want 0", got)
	}
}

func TestServerStates(t *testing.T) {
	tests := []struct {
		name string
		set  func(d *Director) error
		// sticky: does a user with a live session on s0 stay there?
		// fresh: does a new user hashing to s0 land there?
		sticky, fresh bool
	}{
		{"ready", func(d *Director) error { return nil }, true, true},
		{"drain", func(d *Director) error { return d.SetAdmin("s0", AdminDrain) }, true, false},
		{"weight 0", func(d *Director) error { return d.SetWeight("s0", 0) }, true, false},
		{"maint", func(d *Director) error { return d.SetAdmin("s0", AdminMaint) }, false, false},
		{"down", func(d *Director) error { return d.SetHealth("s0", false, "test") }, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDirector(t, Options{Servers: servers(100, 100, 100)})
			users := []string{}
			for i := 0; len(users) < 2 && i < 10000; i++ {
				if u := fmt.Sprintf("u%d", i); hashServer(t, d, u) == "s0" {
					users = append(users, u)
				}
			}
			live := pick(t, d, users[0])
			if err := tt.set(d); err != nil {
				t.Fatal(err)
			}
			l := pick(t, d, users[0])
			if got := l.Server == "s0"; got != tt.sticky {
				t.Errorf("sticky user: got %s, want on s0 = %v", l.Server, tt.sticky)
			}
			f := pick(t, d, users[1])
			if got := f.Server == "s0"; got != tt.fresh {
				t.Errorf("new user: got %s, want on s0 = %v", f.Server, tt.fresh)
			}
			live.Release()
			l.Release()
			f.Release()
		})
	}
}

func TestMovedStickyFollowsToNewServer(t *testing.T) {
	d := newDirector(t, Options{Servers: servers(100, 100)})
	u := userOn(t, d, "s0")
	l := pick(t, d, u)
	if err := d.SetAdmin("s0", AdminMaint); err != nil {
		t.Fatal(err)
	}
	l2 := pick(t, d, u)
	if err := d.SetAdmin("s0", AdminReady); err != nil {
		t.Fatal(err)
	}
	l3 := pick(t, d, u)
	if l2.Server != "s1" || l3.Server != "s1" || l3.Reason != "sticky" {
		t.Errorf("got %s then %s (%s), want s1 then s1 (sticky)", l2.Server, l3.Server, l3.Reason)
	}
	for _, x := range []*Lease{l, l2, l3} {
		x.Release()
	}
}

func TestBackups(t *testing.T) {
	opts := func(all bool) Options {
		return Options{AllBackups: all, Servers: []ServerOptions{
			{Name: "a1", Weight: 100},
			{Name: "a2", Weight: 100},
			{Name: "b1", Weight: 100, Backup: true},
			{Name: "b2", Weight: 100, Backup: true},
		}}
	}
	down := func(t *testing.T, d *Director, names ...string) {
		t.Helper()
		for _, n := range names {
			if err := d.SetHealth(n, false, "test"); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Run("unused while an active is usable", func(t *testing.T) {
		d := newDirector(t, opts(false))
		down(t, d, "a1")
		for i := range 200 {
			if l := pick(t, d, fmt.Sprint(i)); l.Server != "a2" {
				t.Fatalf("got %s, want a2", l.Server)
			}
		}
	})
	t.Run("first backup", func(t *testing.T) {
		d := newDirector(t, opts(false))
		down(t, d, "a1", "a2")
		for i := range 200 {
			if l := pick(t, d, fmt.Sprint(i)); l.Server != "b1" || l.Reason != "backup" {
				t.Fatalf("got %s (%s), want b1 (backup)", l.Server, l.Reason)
			}
		}
		down(t, d, "b1")
		if l := pick(t, d, "x"); l.Server != "b2" {
			t.Fatalf("with b1 down: got %s, want b2", l.Server)
		}
	})
	t.Run("all backups", func(t *testing.T) {
		d := newDirector(t, opts(true))
		down(t, d, "a1", "a2")
		seen := map[string]int{}
		for i := range 200 {
			l := pick(t, d, fmt.Sprint(i))
			if l.Reason != "backup" {
				t.Fatalf("got reason %q, want backup", l.Reason)
			}
			seen[l.Server]++
		}
		if seen["b1"] == 0 || seen["b2"] == 0 || len(seen) != 2 {
			t.Fatalf("got %v, want users on both b1 and b2 only", seen)
		}
	})
	t.Run("sticky backup user returns to active", func(t *testing.T) {
		d := newDirector(t, opts(false))
		down(t, d, "a1", "a2")
		l := pick(t, d, "u")
		if l.Server != "b1" {
			t.Fatalf("got %s, want b1", l.Server)
		}
		if err := d.SetHealth("a1", true, "back"); err != nil {
			t.Fatal(err)
		}
		if l2 := pick(t, d, "u"); l2.Server != "a1" {
			t.Fatalf("after a1 came back: got %s, want a1", l2.Server)
		}
	})
	t.Run("no server", func(t *testing.T) {
		d := newDirector(t, opts(false))
		down(t, d, "a1", "a2", "b1", "b2")
		_, err := d.Pick(Request{User: "u"})
		if !errors.Is(err, ErrNoServer) {
			t.Fatalf("got error %v, want ErrNoServer", err)
		}
	})
}

func TestExclude(t *testing.T) {
	d := newDirector(t, Options{Servers: servers(100, 100, 100)})
	u := "alice@example.com"
	order := d.HashOrder(u)
	if len(order) != 3 {
		t.Fatalf("HashOrder: got %v, want 3 servers", order)
	}
	for k := range order {
		l, err := d.Pick(Request{User: u, Exclude: order[:k]})
		if err != nil {
			t.Fatalf("exclude %v: %v", order[:k], err)
		}
		if l.Server != order[k] {
			t.Errorf("exclude %v: got %s, want %s", order[:k], l.Server, order[k])
		}
		// The login failed on this server: the retry excludes it.
		l.Failed(errors.New("dial: connection refused"))
	}
	if _, err := d.Pick(Request{User: u, Exclude: order}); !errors.Is(err, ErrNoServer) {
		t.Errorf("all excluded: got error %v, want ErrNoServer", err)
	}
	if p := d.Where(u); p.Sessions != 0 || p.Reason != "hash: no assignment yet" {
		t.Errorf("after failed picks: got %+v, want no sticky entry", p)
	}
}

func TestMaxConn(t *testing.T) {
	d := newDirector(t, Options{Servers: []ServerOptions{
		{Name: "s0", Weight: 100, MaxConn: 1},
		{Name: "s1", Weight: 100},
	}})
	a := userOn(t, d, "s0")
	l := pick(t, d, a)
	if l.Server != "s0" {
		t.Fatalf("first user: got %s, want s0", l.Server)
	}
	// s0 is full: another session of any user goes elsewhere.
	if l2 := pick(t, d, a); l2.Server != "s1" {
		t.Fatalf("second session on full server: got %s, want s1", l2.Server)
	}
	if got := status(t, d, "s0").Sessions; got != 1 {
		t.Errorf("s0 sessions: got %d, want 1", got)
	}
}

func TestLeastConn(t *testing.T) {
	t.Run("equal weights spread", func(t *testing.T) {
		d := newDirector(t, Options{Balance: BalanceLeastConn, Servers: servers(1, 1, 1)})
		for i := range 30 {
			l := pick(t, d, fmt.Sprint(i))
			if l.Reason != "leastconn" {
				t.Fatalf("got reason %q, want leastconn", l.Reason)
			}
		}
		for _, s := range d.Servers() {
			if s.Sessions != 10 {
				t.Errorf("%s: got %d sessions, want 10", s.Name, s.Sessions)
			}
		}
	})
	t.Run("weighted", func(t *testing.T) {
		d := newDirector(t, Options{Balance: BalanceLeastConn, Servers: servers(100, 200)})
		for i := range 300 {
			pick(t, d, fmt.Sprint(i))
		}
		if s0, s1 := status(t, d, "s0").Sessions, status(t, d, "s1").Sessions; s0 != 100 || s1 != 200 {
			t.Errorf("got %d/%d sessions, want 100/200", s0, s1)
		}
	})
	t.Run("ties rotate", func(t *testing.T) {
		d := newDirector(t, Options{Balance: BalanceLeastConn, Servers: servers(1, 1, 1)})
		for i := range 30 {
			pick(t, d, fmt.Sprint(i)).Release()
		}
		for _, s := range d.Servers() {
			if s.Picks != 10 {
				t.Errorf("%s: got %d picks, want 10", s.Name, s.Picks)
			}
		}
	})
	t.Run("sticky", func(t *testing.T) {
		d := newDirector(t, Options{Balance: BalanceLeastConn, Servers: servers(1, 1)})
		first := pick(t, d, "u")
		for range 5 {
			if l := pick(t, d, "u"); l.Server != first.Server || l.Reason != "sticky" {
				t.Fatalf("got %s (%s), want %s (sticky)", l.Server, l.Reason, first.Server)
			}
		}
	})
}

func TestRoundRobin(t *testing.T) {
	d := newDirector(t, Options{Balance: BalanceRoundRobin, UserExpire: -1, Servers: servers(5, 1, 1)})
	var seq []string
	for i := range 7 {
		l := pick(t, d, fmt.Sprint(i))
		l.Release()
		seq = append(seq, l.Server)
	}
	// Smooth: the heavy server's picks are interleaved with the others.
	want := []string{"s0", "s0", "s1", "s0", "s2", "s0", "s0"}
	if !slices.Equal(seq, want) {
		t.Errorf("got sequence %v, want %v", seq, want)
	}
	d2 := newDirector(t, Options{Balance: BalanceRoundRobin, UserExpire: -1, Servers: servers(1, 2, 3)})
	for i := range 600 {
		pick(t, d2, fmt.Sprint(i)).Release()
	}
	for i, want := range []uint64{100, 200, 300} {
		if got := d2.Servers()[i].Picks; got != want {
			t.Errorf("s%d: got %d picks, want %d", i, got, want)
		}
	}
}

func TestSource(t *testing.T) {
	d := newDirector(t, Options{Balance: BalanceSource, Servers: servers(1, 1, 1)})
	seen := map[string]bool{}
	for i := range 256 {
		ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
		l1, err := d.Pick(Request{User: "u", Client: netip.AddrPortFrom(ip, 1000)})
		if err != nil {
			t.Fatal(err)
		}
		mapped := netip.AddrFrom16(ip.As16())
		l2, err := d.Pick(Request{User: "other", Client: netip.AddrPortFrom(mapped, 2000)})
		if err != nil {
			t.Fatal(err)
		}
		if l1.Server != l2.Server || l1.Reason != "source" {
			t.Fatalf("%v: got %s (%s) and %s, want the same server by source", ip, l1.Server, l1.Reason, l2.Server)
		}
		seen[l1.Server] = true
	}
	if len(seen) != 3 {
		t.Errorf("got servers %v, want all 3 used", seen)
	}
	if got := d.StickyLen(); got != 0 {
		t.Errorf("got %d sticky entries, want 0 for source", got)
	}
}

func TestPassiveHealth(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	d := newDirector(t, Options{
		ErrorLimit: 3,
		Servers:    servers(100, 100),
		OnPassiveDown: func(server, reason string) {
			mu.Lock()
			calls = append(calls, server+": "+reason)
			mu.Unlock()
		},
	})
	u := userOn(t, d, "s0")
	fail := func(n int) {
		t.Helper()
		for range n {
			l, err := d.Pick(Request{User: u, Exclude: []string{"s1"}})
			if err != nil {
				t.Fatal(err)
			}
			l.Failed(errors.New("connection refused"))
		}
	}
	fail(2)
	l := pick(t, d, u)
	l.Established()
	l.Release()
	fail(2)
	if s := status(t, d, "s0"); !s.Up || s.Failures != 2 {
		t.Fatalf("after 2+established+2 failures: got up=%v failures=%d, want up with 2", s.Up, s.Failures)
	}
	fail(1)
	s := status(t, d, "s0")
	wantReason := "3 consecutive connection failures: connection refused"
	if s.Up || s.Reason != wantReason {
		t.Fatalf("after 3 failures: got up=%v reason %q, want down with %q", s.Up, s.Reason, wantReason)
	}
	if want := []string{"s0: " + wantReason}; !slices.Equal(calls, want) {
		t.Errorf("OnPassiveDown calls: got %q, want %q", calls, want)
	}
	if l := pick(t, d, u); l.Server != "s1" {
		t.Errorf("while s0 is down: got %s, want s1", l.Server)
	}
	if err := d.SetHealth("s0", true, "check passed"); err != nil {
		t.Fatal(err)
	}
	if s := status(t, d, "s0"); !s.Up || s.Failures != 0 {
		t.Errorf("after SetHealth up: got up=%v failures=%d, want up with 0", s.Up, s.Failures)
	}
	if s := status(t, d, "s0"); s.Sessions != 0 {
		t.Errorf("s0 sessions: got %d, want 0", s.Sessions)
	}
}

func TestLeaseReleaseOnce(t *testing.T) {
	d := newDirector(t, Options{Servers: servers(1), ErrorLimit: 1})
	l := pick(t, d, "u")
	l.Release()
	l.Release()
	l.Failed(errors.New("late"))
	if s := status(t, d, "s0"); s.Sessions != 0 || s.Failures != 0 || !s.Up {
		t.Errorf("got sessions=%d failures=%d up=%v, want 0, 0, up", s.Sessions, s.Failures, s.Up)
	}
	l2 := pick(t, d, "v")
	l2.Failed(errors.New("refused"))
	l2.Release()
	l2.Failed(errors.New("again"))
	if s := status(t, d, "s0"); s.Sessions != 0 || s.Failures != 1 {
		t.Errorf("got sessions=%d failures=%d, want 0 and 1", s.Sessions, s.Failures)
	}
}

func TestFailedKeepsEntryWithOtherSessions(t *testing.T) {
	d := newDirector(t, Options{Servers: servers(1, 1)})
	live := pick(t, d, "u")
	l := pick(t, d, "u")
	l.Failed(errors.New("greeting timeout"))
	if p := d.Where("u"); p.Server != live.Server || p.Sessions != 1 {
		t.Errorf("got %+v, want sticky on %s with 1 session", p, live.Server)
	}
}

func TestFailedRestoresMovedEntry(t *testing.T) {
	d := newDirector(t, Options{Servers: servers(1, 1, 1)})
	u := "u@example.com"
	order := d.HashOrder(u)
	pick(t, d, u).Release() // sticky on order[0], idle
	l, err := d.Pick(Request{User: u, Exclude: order[:1]})
	if err != nil {
		t.Fatal(err)
	}
	if l.Server != order[1] {
		t.Fatalf("got %s, want %s", l.Server, order[1])
	}
	l.Failed(errors.New("refused"))
	if p := d.Where(u); p.Server != order[0] {
		t.Errorf("after failed move: got %s, want the entry back on %s", p.Server, order[0])
	}
}

func TestWhereMoveForget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDirector(t, Options{DefaultDomain: "example.com", Servers: servers(1, 1, 1)})
		hs := hashServer(t, d, "bob@example.com")
		if p := d.Where(" BOB "); p.User != "bob@example.com" || p.Server != hs || p.Reason != "hash: no assignment yet" {
			t.Errorf("no entry: got %+v, want bob@example.com on %s by hash", p, hs)
		}
		l1, l2 := pick(t, d, "bob"), pick(t, d, "Bob@Example.com")
		if p := d.Where("bob"); p.Server != hs || p.Sessions != 2 || p.Reason != "sticky: 2 live sessions" {
			t.Errorf("two sessions: got %+v, want sticky on %s with 2 live sessions", p, hs)
		}
		l1.Release()
		if p := d.Where("bob"); p.Reason != "sticky: 1 live session" {
			t.Errorf("one session: got reason %q, want %q", p.Reason, "sticky: 1 live session")
		}
		l2.Release()
		time.Sleep(12 * time.Minute)
		p := d.Where("bob")
		if p.Reason != "sticky: expires in 3m0s" || p.Expires.IsZero() {
			t.Errorf("idle: got %+v, want sticky expiring in 3m0s", p)
		}

		other := "s0"
		if hs == "s0" {
			other = "s1"
		}
		if err := d.Move("bob", other); err != nil {
			t.Fatal(err)
		}
		if l := pick(t, d, "bob"); l.Server != other || l.Reason != "sticky" {
			t.Errorf("after Move: got %s (%s), want %s (sticky)", l.Server, l.Reason, other)
		} else {
			l.Release()
		}
		d.Forget("bob")
		if p := d.Where("bob"); p.Server != hs || p.Reason != "hash: no assignment yet" {
			t.Errorf("after Forget: got %+v, want %s by hash", p, hs)
		}

		if err := d.Move("bob", "nope"); !errors.Is(err, ErrUnknownServer) {
			t.Errorf("Move to unknown: got %v, want ErrUnknownServer", err)
		}
		if err := d.SetHealth(other, false, "test"); err != nil {
			t.Fatal(err)
		}
		if err := d.Move("bob", other); !errors.Is(err, ErrServerUnavailable) {
			t.Errorf("Move to down server: got %v, want ErrServerUnavailable", err)
		}
	})
}

func TestWhereStickyServerDown(t *testing.T) {
	d := newDirector(t, Options{Servers: servers(1, 1)})
	u := userOn(t, d, "s0")
	pick(t, d, u)
	if err := d.SetHealth("s0", false, "test"); err != nil {
		t.Fatal(err)
	}
	p := d.Where(u)
	if want := "hash: sticky server s0 is down"; p.Server != "s1" || p.Reason != want {
		t.Errorf("got %s %q, want s1 %q", p.Server, p.Reason, want)
	}
}

func TestSetErrors(t *testing.T) {
	d := newDirector(t, Options{Servers: servers(1)})
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"health unknown", d.SetHealth("x", true, ""), ErrUnknownServer},
		{"admin unknown", d.SetAdmin("x", AdminDrain), ErrUnknownServer},
		{"admin invalid", d.SetAdmin("s0", 5), ErrUnknownAdminState},
		{"weight unknown", d.SetWeight("x", 1), ErrUnknownServer},
		{"weight invalid", d.SetWeight("s0", 1001), ErrInvalidWeight},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.want) {
				t.Errorf("got %v, want %v", tt.err, tt.want)
			}
		})
	}
}

func TestHashOrder(t *testing.T) {
	d := newDirector(t, Options{Servers: []ServerOptions{
		{Name: "a", Weight: 1}, {Name: "b", Weight: 1}, {Name: "c", Weight: 1},
		{Name: "x", Weight: 1, Backup: true}, {Name: "y", Weight: 1, Backup: true},
	}})
	if err := d.SetAdmin("b", AdminDrain); err != nil {
		t.Fatal(err)
	}
	got := d.HashOrder("u")
	if len(got) != 4 || got[2] != "x" || got[3] != "y" || slices.Contains(got, "b") {
		t.Errorf("got %v, want a and c (hash order), then x, y", got)
	}
	if l := pick(t, d, "u"); l.Server != got[0] {
		t.Errorf("Pick: got %s, want HashOrder's first %s", l.Server, got[0])
	}
}

func TestStickyLRU(t *testing.T) {
	d := newDirector(t, Options{Servers: servers(1, 1), StickySize: 2})
	for _, u := range []string{"a", "b", "c"} {
		pick(t, d, u).Release()
	}
	if got := d.StickyLen(); got != 2 {
		t.Errorf("got %d entries, want 2", got)
	}
	if p := d.Where("a"); p.Reason != "hash: no assignment yet" {
		t.Errorf("oldest entry: got %q, want evicted", p.Reason)
	}
}

func TestConcurrentPickRelease(t *testing.T) {
	d := newDirector(t, Options{Servers: servers(100, 100, 200), ErrorLimit: 1000, StickySize: 64})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				l, err := d.Pick(Request{User: fmt.Sprintf("u%d", (g*7+i)%100)})
				if err != nil {
					t.Error(err)
					return
				}
				switch i % 5 {
				case 0:
					l.Failed(errors.New("x"))
				case 1:
					l.Established()
					l.Release()
					l.Release()
				default:
					l.Release()
				}
				if i%500 == 0 {
					d.SetWeight("s2", i%1000)
					d.Where("u1")
					d.Servers()
				}
			}
		})
	}
	wg.Wait()
	for _, s := range d.Servers() {
		if s.Sessions != 0 {
			t.Errorf("%s: got %d live sessions, want 0", s.Name, s.Sessions)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	users := make([]string, 1024)
	for i := range users {
		users[i] = fmt.Sprintf("user%d@example.com", i)
	}
	b.Run("sticky-hit", func(b *testing.B) {
		d := newDirector(b, Options{Servers: servers(100, 100, 200, 100, 100)})
		for _, u := range users {
			pick(b, d, u).Release()
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l, err := d.Pick(Request{User: users[i%len(users)]})
			if err != nil {
				b.Fatal(err)
			}
			l.Release()
			i++
		}
	})
	b.Run("hash-miss", func(b *testing.B) {
		d := newDirector(b, Options{Servers: servers(100, 100, 200, 100, 100), UserExpire: -1})
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			l, err := d.Pick(Request{User: users[i%len(users)]})
			if err != nil {
				b.Fatal(err)
			}
			l.Release()
			i++
		}
	})
}

func TestPickStayNeverPlacesElsewhere(t *testing.T) {
	d := newDirector(t, Options{Servers: []ServerOptions{{Name: "s0", Weight: 100}, {Name: "s1", Weight: 100}, {Name: "s2", Weight: 100}}})
	user := "stay-user"
	home := d.HashOrder(user)[0]

	l, err := d.Pick(Request{User: user, Stay: true})
	if err != nil || l.Server != home {
		t.Fatalf("Stay pick with all up: got %v, %v; want %s", l, err, home)
	}
	l.Release()

	d.SetHealth(home, false, "test")
	if l, err := d.Pick(Request{User: user, Stay: true}); !errors.Is(err, ErrServerUnavailable) {
		t.Fatalf("Stay pick with the home server down: got %v, %v; want ErrServerUnavailable", l, err)
	}
	d.SetHealth(home, true, "test")
	if l, err := d.Pick(Request{User: user}); err != nil || l.Server != home || l.Reason != "sticky" {
		t.Errorf("after the failed Stay pick: got %+v, %v; want sticky on %s (nothing moved)", l, err, home)
	} else {
		l.Release()
	}
	// A user never seen before whose hash home is down fails too.
	d.SetHealth(home, true, "test")
	for i := 0; i < 1000; i++ {
		u := fmt.Sprintf("fresh%d", i)
		if d.HashOrder(u)[0] != home {
			continue
		}
		d.SetHealth(home, false, "test")
		if _, err := d.Pick(Request{User: u, Stay: true}); !errors.Is(err, ErrServerUnavailable) {
			t.Fatalf("Stay pick for new user %s whose home %s is down: got %v, want ErrServerUnavailable", u, home, err)
		}
		d.SetHealth(home, true, "test")
		l, err := d.Pick(Request{User: u, Stay: true})
		if err != nil || l.Server != home {
			t.Fatalf("Stay pick for %s after %s came back: got %v, %v", u, home, l, err)
		}
		l.Release()
		return
	}
	t.Fatal("no user hashes to the home server")
}
