package director

import (
	"errors"
	"sync"
	"testing"
)

// fakeShared answers Claim from a table: the fleet's server per user, or
// an error.
type fakeShared struct {
	mu     sync.Mutex
	fleet  map[string]string // user → server another node placed it on
	refuse error
	claims []string // "user server" asked
}

func (f *fakeShared) Claim(_, user, server string, usable func(string) bool) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.claims = append(f.claims, user+" "+server)
	if f.refuse != nil {
		return "", f.refuse
	}
	if s, ok := f.fleet[user]; ok {
		return s, nil
	}
	return server, nil
}

// TestSharedClaim: a new placement is claimed; a sticky one is not; the
// fleet's server wins and carries the lease and the counts; a refusal
// fails the login and leaves no entry.
func TestSharedClaim(t *testing.T) {
	tests := []struct {
		name       string
		fleet      map[string]string
		refuse     error
		down       string // a server down on this node
		wantServer string // "" : Pick fails
	}{
		{name: "claim won", wantServer: "hash"},
		{name: "another node placed the user first", fleet: map[string]string{"alice": "s2"}, wantServer: "s2"},
		{name: "refused", refuse: errors.New("up elsewhere")},
		{name: "fleet names a server this backend lacks", fleet: map[string]string{"alice": "nope"}},
		{name: "fleet's server is down here", fleet: map[string]string{"alice": "s1"}, down: "s1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeShared{fleet: tc.fleet, refuse: tc.refuse}
			d := newDirector(t, Options{Name: "b", Servers: servers(100, 100, 100), Shared: f})
			if tc.down != "" {
				d.SetHealth(tc.down, false, "test")
			}
			hashed := d.Where("alice").Server
			want := tc.wantServer
			if want == "hash" {
				want = hashed
			}
			l, err := d.Pick(Request{User: "alice"})
			if want == "" {
				if !errors.Is(err, ErrServerUnavailable) {
					t.Fatalf("Pick: got %v, want ErrServerUnavailable", err)
				}
				if _, ok := d.Entry("alice"); ok {
					t.Errorf("a refused login left an entry")
				}
				for _, s := range d.Servers() {
					if s.Sessions != 0 {
						t.Errorf("%s has %d sessions after a refused login, want 0", s.Name, s.Sessions)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Pick: %v", err)
			}
			if l.Server != want {
				t.Fatalf("Pick: got %s, want %s", l.Server, want)
			}
			for _, s := range d.Servers() {
				if got, wantN := s.Sessions, map[bool]int{true: 1, false: 0}[s.Name == want]; got != wantN {
					t.Errorf("%s has %d sessions, want %d", s.Name, got, wantN)
				}
			}
			l.Established()
			l.Release()
			if e, ok := d.Entry("alice"); !ok || e.Server != want {
				t.Errorf("entry after the session: %+v %v, want on %s", e, ok, want)
			}
			// The next login is sticky: no claim.
			n := len(f.claims)
			l2, err := d.Pick(Request{User: "alice"})
			if err != nil || l2.Server != want {
				t.Fatalf("second Pick: %v on %v, want %s", err, l2, want)
			}
			l2.Release()
			if len(f.claims) != n {
				t.Errorf("a sticky login asked the fleet: %v", f.claims[n:])
			}
		})
	}
}

// unclaimShared is a fakeShared that records Unclaim.
type unclaimShared struct {
	fakeShared
	unclaimed []string
}

func (u *unclaimShared) Unclaim(_, user, server string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.unclaimed = append(u.unclaimed, user+" "+server)
}

// TestSharedUnclaim: the claim of a new user's server is taken back when
// the last of its logins ends without a session, not before, and never
// once a session was established.
func TestSharedUnclaim(t *testing.T) {
	u := &unclaimShared{}
	d := newDirector(t, Options{Name: "b", Servers: servers(100, 100), Shared: u})
	l1 := pick(t, d, "alice")
	l2 := pick(t, d, "alice") // joins l1's pending entry
	l1.Answered()
	l1.Release()
	if len(u.unclaimed) != 0 {
		t.Fatalf("unclaimed while a login of the user is under way: %v", u.unclaimed)
	}
	l2.Answered()
	l2.Release()
	if want := "alice " + l1.Server; len(u.unclaimed) != 1 || u.unclaimed[0] != want {
		t.Fatalf("unclaimed %v, want [%s]", u.unclaimed, want)
	}
	l3 := pick(t, d, "bob")
	l3.Established()
	l3.Release()
	if len(u.unclaimed) != 1 {
		t.Errorf("an established session's claim was taken back: %v", u.unclaimed)
	}
	// Nor when the entry goes with the session (user_expire < 0): the key
	// then expires with its lease in the fleet.
	u2 := &unclaimShared{}
	d2 := newDirector(t, Options{Name: "b", Servers: servers(100, 100), Shared: u2, UserExpire: -1})
	l4 := pick(t, d2, "carol")
	l4.Established()
	l4.Release()
	if len(u2.unclaimed) != 0 {
		t.Errorf("an established session's claim was taken back with user_expire < 0: %v", u2.unclaimed)
	}
}
