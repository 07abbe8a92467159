package director

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestWhereMoveForget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDirector(t, Options{DefaultDomain: "example.com", Servers: servers(1, 1, 1)})
		hs := hashServer(t, d, "bob@example.com")
		if p := d.Where(" BOB "); p.User != "bob@example.com" || p.Server != hs || p.Reason != "hash: no assignment yet" {
			t.Errorf("no entry: got %+v, want bob@example.com on %s by hash", p, hs)
		}
		l1, l2 := session(t, d, "bob"), session(t, d, "Bob@Example.com")
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
	session(t, d, u)
	if err := d.SetHealth("s0", false, "test"); err != nil {
		t.Fatal(err)
	}
	p := d.Where(u)
	if want := "hash: sticky server s0 is down"; p.Server != "s1" || p.Reason != want {
		t.Errorf("got %s %q, want s1 %q", p.Server, p.Reason, want)
	}
}

func TestWherePending(t *testing.T) {
	d := newDirector(t, Options{Servers: servers(1, 1)})
	l1, l2 := pick(t, d, "u"), pick(t, d, "u")
	if p := d.Where("u"); p.Server != l1.Server || p.Sessions != 2 || p.Reason != "pending: 2 logins in progress, none established yet" {
		t.Errorf("two logins: got %+v, want pending on %s", p, l1.Server)
	}
	l1.Release()
	if p := d.Where("u"); p.Reason != "pending: 1 login in progress, not established yet" {
		t.Errorf("one login: got %q", p.Reason)
	}
	l2.Release()
	if p := d.Where("u"); p.Reason != "hash: no assignment yet" {
		t.Errorf("no login: got %q, want no entry", p.Reason)
	}
}
