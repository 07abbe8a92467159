package director

import (
	"errors"
	"fmt"
	"testing"
)

// recipient picks a lease for an LMTP recipient and fails the test on error.
func recipient(t testing.TB, d *Director, rcpt string) *Lease {
	t.Helper()
	l, err := d.Pick(Request{User: rcpt, Recipient: true})
	if err != nil {
		t.Fatalf("Pick(%q, Recipient): %v", rcpt, err)
	}
	return l
}

// TestRecipientsDoNotFillServer: 100 live recipient leases on a server with
// MaxConn 10 leave room for 10 logins (issue 8: an MTA's RCPTs made the
// server "full" and moved its IMAP users elsewhere), and their release
// leaves the logins counted.
func TestRecipientsDoNotFillServer(t *testing.T) {
	tests := []struct {
		name    string
		balance Balance
	}{
		{"user", BalanceUser},
		{"leastconn", BalanceLeastConn},
		{"roundrobin", BalanceRoundRobin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDirector(t, Options{Balance: tt.balance, Servers: []ServerOptions{
				{Name: "s0", Weight: 100, MaxConn: 10},
				{Name: "s1", Weight: 100, MaxConn: 10},
			}})
			const user = "alice@lab.test"
			if err := d.Move(user, "s0"); err != nil {
				t.Fatalf("Move: %v", err)
			}
			rcpts := make([]*Lease, 100)
			for i := range rcpts {
				rcpts[i] = recipient(t, d, user)
				if rcpts[i].Server != "s0" {
					t.Fatalf("recipient %d: got %s, want s0", i, rcpts[i].Server)
				}
			}
			for i := range 10 {
				if l := session(t, d, user); l.Server != "s0" {
					t.Fatalf("login %d beside 100 recipients: got %s (%s), want s0", i, l.Server, l.Reason)
				}
			}
			if s := status(t, d, "s0"); s.Sessions != 10 || s.Recipients != 100 {
				t.Errorf("s0: got %d sessions, %d recipients; want 10, 100", s.Sessions, s.Recipients)
			}
			// The 10 logins, and only they, fill s0.
			if l := pick(t, d, user); l.Server != "s1" {
				t.Errorf("11th login: got %s, want s1 (s0 holds 10 sessions)", l.Server)
			}
			for _, l := range rcpts {
				l.Release()
			}
			if s := status(t, d, "s0"); s.Sessions != 10 || s.Recipients != 0 {
				t.Errorf("s0 after the recipients' release: got %d sessions, %d recipients; want 10, 0", s.Sessions, s.Recipients)
			}
		})
	}
}

// TestFullServerTakesItsRecipients: a server that its sessions fill still
// takes its users' mail, whether the recipient is sticky, hashed or asked
// for with Stay; the same request as a login is refused there.
func TestFullServerTakesItsRecipients(t *testing.T) {
	tests := []struct {
		name string
		// pin moves the user to s0 first; else it has no entry.
		pin  bool
		stay bool
		// loginErr is what the same request as a login gets; nil means
		// a lease on s1.
		loginErr error
	}{
		{name: "sticky", pin: true},
		{name: "hashed", pin: false},
		{name: "stay", pin: true, stay: true, loginErr: ErrServerUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDirector(t, Options{Servers: []ServerOptions{
				{Name: "s0", Weight: 100, MaxConn: 1},
				{Name: "s1", Weight: 100},
			}})
			other, user := userOn(t, d, "s0"), ""
			for i := range 10000 {
				if u := fmt.Sprintf("rcpt%d@example.com", i); hashServer(t, d, u) == "s0" {
					user = u
					break
				}
			}
			if user == "" {
				t.Fatal("no recipient hashes to s0")
			}
			if l := session(t, d, other); l.Server != "s0" {
				t.Fatalf("filling login: got %s, want s0", l.Server)
			}
			if tt.pin {
				if err := d.Move(user, "s0"); err != nil {
					t.Fatalf("Move: %v", err)
				}
			}
			for i := range 5 {
				l, err := d.Pick(Request{User: user, Recipient: true, Stay: tt.stay})
				if err != nil {
					t.Fatalf("recipient %d: %v", i, err)
				}
				if l.Server != "s0" {
					t.Fatalf("recipient %d: got %s (%s), want s0, the user's server", i, l.Server, l.Reason)
				}
			}
			l, err := d.Pick(Request{User: user, Stay: tt.stay})
			switch {
			case tt.loginErr != nil && !errors.Is(err, tt.loginErr):
				t.Errorf("login on the full server: got %v, want %v", err, tt.loginErr)
			case tt.loginErr == nil && (err != nil || l.Server != "s1"):
				t.Errorf("login on the full server: got %v, %v; want a lease on s1", l, err)
			}
		})
	}
}

// TestLeastConnIgnoresRecipients: 100 live recipient leases on one server
// do not steer leastconn's logins away from it.
func TestLeastConnIgnoresRecipients(t *testing.T) {
	d := newDirector(t, Options{Balance: BalanceLeastConn, Servers: servers(1, 1, 1)})
	bulk := recipient(t, d, "bulk@lab.test")
	for range 99 {
		if l := recipient(t, d, "bulk@lab.test"); l.Server != bulk.Server {
			t.Fatalf("recipient: got %s, want %s (sticky)", l.Server, bulk.Server)
		}
	}
	for i := range 30 {
		pick(t, d, fmt.Sprintf("login%d@lab.test", i))
	}
	for _, s := range d.Servers() {
		if s.Sessions != 10 {
			t.Errorf("%s: got %d sessions, want 10 (recipients on %s: %d)", s.Name, s.Sessions, bulk.Server, s.Recipients)
		}
	}
}
