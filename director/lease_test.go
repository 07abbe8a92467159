package director

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestStickyKeepsUserAcrossWeightChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDirector(t, Options{Servers: servers(100, 100, 100), UserExpire: 10 * time.Minute})
		u := userOn(t, d, "s1")
		l := session(t, d, u)
		if err := d.SetWeight("s1", 0); err != nil {
			t.Fatal(err)
		}
		l2 := session(t, d, u)
		if l2.Server != "s1" || l2.Reason != "sticky" {
			t.Fatalf("live user after weight change: got %s (%s), want s1 (sticky)", l2.Server, l2.Reason)
		}
		l.Release()
		l2.Release()

		time.Sleep(9 * time.Minute)
		l3 := session(t, d, u)
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
		l := session(t, d, u)
		away := l.Server
		if away == "s2" {
			t.Fatalf("got s2 while it is down")
		}
		if err := d.SetHealth("s2", true, "check passed"); err != nil {
			t.Fatal(err)
		}
		l2 := session(t, d, u)
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
	l1, l2 := session(t, d, "a"), session(t, d, "a")
	l1.Release()
	if got := d.StickyLen(); got != 1 {
		t.Fatalf("with one live session: got %d entries, want 1", got)
	}
	l2.Release()
	if got := d.StickyLen(); got != 0 {
		t.Fatalf("after last release: got %d entries, want 0", got)
	}
}

func TestMovedStickyFollowsToNewServer(t *testing.T) {
	d := newDirector(t, Options{Servers: servers(100, 100)})
	u := userOn(t, d, "s0")
	l := session(t, d, u)
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
	live := session(t, d, "u")
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
	session(t, d, u).Release() // sticky on order[0], idle
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

func TestStickyLRU(t *testing.T) {
	d := newDirector(t, Options{Servers: servers(1, 1), StickySize: 2})
	for _, u := range []string{"a", "b", "c"} {
		session(t, d, u).Release()
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

// TestUnestablishedLeavesNoEntry: logins that fail (rejected password,
// unknown recipient, dead server) must not grow the sticky table.
func TestUnestablishedLeavesNoEntry(t *testing.T) {
	for _, b := range []Balance{BalanceUser, BalanceLeastConn, BalanceRoundRobin} {
		t.Run(b.String(), func(t *testing.T) {
			d := newDirector(t, Options{Balance: b, Servers: servers(1, 1, 1)})
			for i := range 10000 {
				l := pick(t, d, fmt.Sprintf("user%d@example.com", i))
				if i%10 == 0 {
					l.Failed(errors.New("connection refused"))
				} else {
					l.Release()
				}
			}
			if got := d.StickyLen(); got != 0 {
				t.Errorf("sticky entries: got %d, want 0", got)
			}
			if got := len(d.pending); got != 0 {
				t.Errorf("pending entries: got %d, want 0", got)
			}
		})
	}
}

func TestEstablishedCreatesEntry(t *testing.T) {
	d := newDirector(t, Options{Servers: servers(1, 1, 1)})
	l := pick(t, d, "alice")
	if got := d.StickyLen(); got != 0 {
		t.Fatalf("before Established: got %d entries, want 0", got)
	}
	l.Established()
	if got := d.StickyLen(); got != 1 {
		t.Fatalf("after Established: got %d entries, want 1", got)
	}
	if p := d.Where("alice"); p.Server != l.Server || p.Reason != "sticky: 1 live session" {
		t.Errorf("after Established: got %+v, want sticky on %s with 1 live session", p, l.Server)
	}
	l.Release()
	if p := d.Where("alice"); p.Server != l.Server || p.Reason != "sticky: expires in 15m0s" {
		t.Errorf("after Release: got %+v, want sticky on %s expiring in 15m0s", p, l.Server)
	}
	if got := len(d.pending); got != 0 {
		t.Errorf("pending entries: got %d, want 0", got)
	}
}

// TestUnestablishedDoesNotRefresh: a failed login of a known user neither
// extends the life of its sticky entry nor moves it for good.
func TestUnestablishedDoesNotRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDirector(t, Options{Servers: servers(1, 1, 1)})
		u := userOn(t, d, "s0")
		session(t, d, u).Release() // idle on s0, expires in 15m
		time.Sleep(10 * time.Minute)
		pick(t, d, u).Release() // rejected login
		time.Sleep(5*time.Minute + time.Second)
		if p := d.Where(u); p.Reason != "hash: no assignment yet" {
			t.Errorf("15m after the last session: got %q, want the entry expired", p.Reason)
		}
	})
}

func TestUnestablishedMoveIsUndone(t *testing.T) {
	end := []struct {
		name string
		end  func(*Lease)
	}{
		{"released", (*Lease).Release},
		{"failed", func(l *Lease) { l.Failed(errors.New("refused")) }},
	}
	for _, tt := range end {
		t.Run(tt.name, func(t *testing.T) {
			d := newDirector(t, Options{Servers: servers(1, 1, 1)})
			u := userOn(t, d, "s0")
			session(t, d, u).Release() // idle on s0
			if err := d.SetAdmin("s0", AdminMaint); err != nil {
				t.Fatal(err)
			}
			l := pick(t, d, u)
			if l.Server == "s0" {
				t.Fatalf("got s0 in maintenance")
			}
			tt.end(l)
			if err := d.SetAdmin("s0", AdminReady); err != nil {
				t.Fatal(err)
			}
			if p := d.Where(u); p.Server != "s0" || !strings.HasPrefix(p.Reason, "sticky:") {
				t.Errorf("after the failed login elsewhere: got %+v, want the entry back on s0", p)
			}
		})
	}
}

// TestConcurrentLoginsOfNewUserShareServer: logins of a user without an
// entry land on one server even with algorithms that spread every pick.
func TestConcurrentLoginsOfNewUserShareServer(t *testing.T) {
	for _, b := range []Balance{BalanceUser, BalanceLeastConn, BalanceRoundRobin} {
		t.Run(b.String(), func(t *testing.T) {
			d := newDirector(t, Options{Balance: b, Servers: servers(1, 1, 1, 1)})
			leases := make([]*Lease, 16)
			var wg sync.WaitGroup
			for i := range leases {
				wg.Go(func() {
					l, err := d.Pick(Request{User: "new"})
					if err != nil {
						t.Error(err)
						return
					}
					leases[i] = l
				})
			}
			wg.Wait()
			for _, l := range leases {
				if l != nil && l.Server != leases[0].Server {
					t.Errorf("got %s and %s, want one server", leases[0].Server, l.Server)
				}
			}
			for _, l := range leases {
				if l != nil {
					l.Release()
				}
			}
			if got := d.StickyLen() + len(d.pending); got != 0 {
				t.Errorf("entries after release: got %d, want 0", got)
			}
		})
	}
}
