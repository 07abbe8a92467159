package director

import (
	"errors"
	"fmt"
	"strings"
	"testing"
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

// session picks a lease for user and reports it established, as a
// frontend does once the server accepted the login.
func session(t testing.TB, d *Director, user string) *Lease {
	t.Helper()
	l := pick(t, d, user)
	l.Established()
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
