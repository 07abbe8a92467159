package director

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"testing"
)

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
			live := session(t, d, users[0])
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

func BenchmarkPick(b *testing.B) {
	users := make([]string, 1024)
	for i := range users {
		users[i] = fmt.Sprintf("user%d@example.com", i)
	}
	b.Run("sticky-hit", func(b *testing.B) {
		d := newDirector(b, Options{Servers: servers(100, 100, 200, 100, 100)})
		for _, u := range users {
			session(b, d, u).Release()
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
	l.Established()
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
