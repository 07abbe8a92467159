package director

import (
	"errors"
	"slices"
	"sync"
	"testing"
)

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
