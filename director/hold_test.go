package director

import (
	"errors"
	"testing"
	"time"
)

// TestHoldRefusesAndReleases: a frozen user gets a *HeldError from every
// director sharing the Holds, logins and recipients alike; Release wakes
// the waiters and the next Pick places the user.
func TestHoldRefusesAndReleases(t *testing.T) {
	h := NewHolds()
	d1 := newDirector(t, Options{Name: "a", Servers: servers(1, 1), Holds: h, RecipientDelimiter: "+"})
	d2 := newDirector(t, Options{Name: "b", Servers: servers(1), Holds: h, DefaultDomain: "example.org"})
	if !h.Freeze("alice@example.org") || h.Freeze("alice@example.org") {
		t.Fatal("Freeze: want true the first time, false the second")
	}
	var released <-chan struct{}
	for _, req := range []struct {
		d   *Director
		req Request
	}{
		{d1, Request{User: "Alice@Example.org"}},
		{d1, Request{User: "alice+news@example.org", Recipient: true}},
		{d2, Request{User: "alice"}}, // the default domain makes the same user
	} {
		_, err := req.d.Pick(req.req)
		var he *HeldError
		if !errors.As(err, &he) || !errors.Is(err, ErrHeld) || he.User != "alice@example.org" {
			t.Fatalf("Pick(%+v) on %s: %v, want a HeldError for alice@example.org", req.req, req.d.Name(), err)
		}
		released = he.Released
	}
	if p := d1.Where("alice@example.org"); !p.Frozen {
		t.Errorf("Where: %+v, want Frozen", p)
	}
	if _, err := d1.Pick(Request{User: "bob@example.org"}); err != nil {
		t.Errorf("another user is refused: %v", err)
	}
	select {
	case <-released:
		t.Fatal("released before Release")
	default:
	}
	if !h.Release("alice@example.org") || h.Release("alice@example.org") {
		t.Fatal("Release: want true then false")
	}
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("Release did not wake the waiters")
	}
	if _, err := d1.Pick(Request{User: "alice@example.org"}); err != nil {
		t.Errorf("Pick after Release: %v", err)
	}
}

func TestFlushAndUsers(t *testing.T) {
	d := newDirector(t, Options{Name: "b", Servers: servers(1, 1)})
	on0 := userOn(t, d, "s0")
	on1 := userOn(t, d, "s1")
	l0 := session(t, d, on0)
	session(t, d, on1).Release()
	users, err := d.Users("s0")
	if err != nil || len(users) != 1 || users[0].User != on0 || users[0].Sessions != 1 || users[0].Since.IsZero() || users[0].Active.IsZero() {
		t.Fatalf("Users(s0) = %+v, %v; want %s with 1 session", users, err, on0)
	}
	if u, _ := d.Users("s1"); len(u) != 1 || u[0].Expires.IsZero() {
		t.Errorf("Users(s1) = %+v, want %s idle with an expiry", u, on1)
	}
	flushed, err := d.Flush("s0")
	if err != nil || len(flushed) != 1 || flushed[0] != on0 {
		t.Fatalf("Flush(s0) = %v, %v; want [%s]", flushed, err, on0)
	}
	if u, _ := d.Users("s0"); len(u) != 0 {
		t.Errorf("Users(s0) after Flush = %+v, want none", u)
	}
	if st := status(t, d, "s0"); st.Assigned != 0 || st.Sessions != 1 {
		t.Errorf("s0 after Flush: assigned %d sessions %d; want 0 and the live session kept", st.Assigned, st.Sessions)
	}
	l0.Release()
	if u, _ := d.Users("s1"); len(u) != 1 {
		t.Errorf("Flush(s0) touched s1: %+v", u)
	}
	if _, err := d.Flush("nope"); !errors.Is(err, ErrUnknownServer) {
		t.Errorf("Flush(nope): %v, want ErrUnknownServer", err)
	}
}

func TestWhereSaysMovedAndHashed(t *testing.T) {
	d := newDirector(t, Options{Name: "b", Servers: servers(1, 1)})
	u := userOn(t, d, "s0")
	if err := d.Move(u, "s1"); err != nil {
		t.Fatal(err)
	}
	p := d.Where(u)
	if p.Server != "s1" || !p.Moved || p.Hashed != "s0" || p.Since.IsZero() || p.Frozen {
		t.Errorf("Where after Move: %+v; want on s1, moved, hashed s0", p)
	}
	if u, _ := d.Users("s1"); len(u) != 1 || !u[0].Moved {
		t.Errorf("Users(s1) = %+v, want the moved user", u)
	}
}
