package director

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// ringServers builds servers named mailN with the IPs and vhost counts.
func ringServers(t testing.TB, spec ...any) []ServerOptions {
	t.Helper()
	var out []ServerOptions
	for k := 0; k < len(spec); k += 2 {
		ip := netip.MustParseAddr(spec[k].(string))
		out = append(out, ServerOptions{Name: fmt.Sprintf("mail%d", k/2+1), Weight: 100, IP: ip, VhostCount: spec[k+1].(int)})
	}
	return out
}

// TestVhostPointsAreMD5OfIPDashIndex pins the ring's points to values
// computed outside Go (Python's hashlib): MD5("<ip>-<i>"), first four bytes
// big-endian, as Dovecot's mail_vhost_add.
func TestVhostPointsAreMD5OfIPDashIndex(t *testing.T) {
	got := vhostPoints("127.0.0.2", 100)
	for i, want := range map[int]uint32{0: 0x186393ea, 1: 0xe558e2de, 99: 0x82f8c15d} {
		if got[i] != want {
			t.Errorf("point %d of 127.0.0.2: got %#x, want %#x", i, got[i], want)
		}
	}
	if got := vhostPoints("2001:db8::1", 1)[0]; got != 0x2ad70a5f {
		t.Errorf("point 0 of 2001:db8::1: got %#x, want 0x2ad70a5f", got)
	}
}

// TestUsernameHash: the expansion of director_username_hash and the MD5 of
// it (values from Python's hashlib), and the formats refused.
func TestUsernameHash(t *testing.T) {
	tests := []struct {
		format, user, expanded string
		sum                    uint32
	}{
		{"", "ALICE", "alice", 0x6384e2b2},
		{"%Lu", "ALICE", "alice", 0x6384e2b2},
		{"%u", "ALICE", "ALICE", 0xb6b81830},
		{"%u", "user1", "user1", 0x24c9e15e},
		{"%L{user}", "Alice@Example.ORG", "alice@example.org", 0xfbf7c6ae},
		{"%Ln", "Alice@Example.ORG", "alice", 0x6384e2b2},
		{"%n", "alice", "alice", 0x6384e2b2},
		{"%n", "a@B@c", "a", 0},
		{"%d", "alice", "", 0},
		{"%Ld", "a@B@c", "b@c", 0},
		{"%{username}@%{domain}", "a@b", "a@b", 0},
		{"%%", "x", "%", 0x0bcef9c4},
		{"x%UuT", "ab", "xABT", 0},
		{"%Tu", "a \t", "a", 0},
		{"%Ru", "abc", "cba", 0},
		{"%RLu", "ABc", "cba", 0},
	}
	for _, tt := range tests {
		f, err := parseUsernameHash(tt.format)
		if err != nil {
			t.Errorf("parse %q: %v", tt.format, err)
			continue
		}
		if got := f.expand(tt.user); got != tt.expanded {
			t.Errorf("%q for %q: got %q, want %q", tt.format, tt.user, got, tt.expanded)
		}
		if tt.sum != 0 {
			if got := f.sum(tt.user); got != tt.sum {
				t.Errorf("%q for %q: hash got %#x, want %#x", tt.format, tt.user, got, tt.sum)
			}
		}
	}
	for _, bad := range []string{"%", "%L", "%x", "%Mu", "%1.2u", "%{home}", "%{user", "%L%"} {
		if _, err := parseUsernameHash(bad); !errors.Is(err, ErrUsernameHash) {
			t.Errorf("parse %q: got %v, want ErrUsernameHash", bad, err)
		}
	}
	if _, err := New(Options{Balance: BalanceDirector, UsernameHash: "%Mu", Servers: ringServers(t, "10.0.0.1", 1)}); !errors.Is(err, ErrUsernameHash) {
		t.Errorf("New with %%Mu: got %v, want ErrUsernameHash", err)
	}
}

// TestRingSearch: Dovecot's bsearch_insert_pos on the ring: an equal point
// where the search meets it, else the first point above, wrapping past the
// last point to the first.
func TestRingSearch(t *testing.T) {
	ring := []point{{10, 0}, {20, 1}, {20, 2}, {20, 3}, {30, 4}}
	tests := []struct {
		h    uint32
		want int
	}{
		{0, 0}, {10, 0}, {11, 1}, {19, 1},
		{20, 2}, // the search's first midpoint, (0+5)/2, is equal: taken there
		{21, 4}, {30, 4}, {31, 0}, {0xffffffff, 0},
	}
	for _, tt := range tests {
		if got := ringSearch(ring, tt.h); got != tt.want {
			t.Errorf("hash %d: got point %d, want %d", tt.h, got, tt.want)
		}
	}
}

// TestRingTieBreakByIP: points of equal value are ordered by address,
// IPv4 before IPv6 (net_ip_cmp), whatever the configuration order.
func TestRingTieBreakByIP(t *testing.T) {
	d := newDirector(t, Options{Balance: BalanceDirector, Servers: ringServers(t, "2001:db8::1", 1, "10.0.0.9", 1, "10.0.0.10", 1)})
	for i := range d.servers {
		d.servers[i].vhosts = []uint32{7}
	}
	d.rings = nil
	d.mu.Lock()
	points := d.ringLocked(false, choice{})
	d.mu.Unlock()
	var got []string
	for _, p := range points {
		got = append(got, d.servers[p.server].ip)
	}
	if want := "10.0.0.9 10.0.0.10 2001:db8::1"; strings.Join(got, " ") != want {
		t.Errorf("tie order: got %v, want %s", got, want)
	}
}

// TestDirectorDownServerLeavesRing: a down server's points are not on the
// ring at all (mail_vhost_add skips down hosts), which is not the same as
// walking past them: when the user's hash equals points of an up and of a
// down server, the binary search over the ring without the down server
// meets the up one, while over the whole ring it would meet the down one
// and walk on to the next server.
func TestDirectorDownServerLeavesRing(t *testing.T) {
	d := newDirector(t, Options{Balance: BalanceDirector,
		Servers: ringServers(t, "10.0.0.1", 1, "10.0.0.2", 1, "10.0.0.3", 1, "10.0.0.4", 1)})
	h := d.userHash.sum("alice") // 0x6384e2b2
	for i, v := range []uint32{0x10, h, h, 0xf0000000} {
		d.servers[i].vhosts = []uint32{v}
	}
	d.rings = nil
	d.SetHealth("mail3", false, "test")
	if got := d.HashOrder("alice")[0]; got != "mail2" {
		t.Errorf("alice (hash equal to the points of mail2 and of mail3, down): got %s, want mail2", got)
	}
}

// TestDirectorMatchesDovecot pins placements given by a real Dovecot
// 2.3.19 director (doveadm director status USER, "Hashed") with five
// servers: 127.0.0.2 at vhost count 50, .3 at 0, .4 at 200, .5 down, .6 at
// 100. The integration test asks the director itself for 1,000 users.
func TestDirectorMatchesDovecot(t *testing.T) {
	d := newDirector(t, Options{Balance: BalanceDirector,
		Servers: ringServers(t, "127.0.0.2", 50, "127.0.0.3", -1, "127.0.0.4", 200, "127.0.0.5", 100, "127.0.0.6", 100)})
	if err := d.SetHealth("mail4", false, "test"); err != nil {
		t.Fatal(err)
	}
	want := "user0 127.0.0.4;user7 127.0.0.4;user14 127.0.0.4;user21 127.0.0.4;user28 127.0.0.4;user35 127.0.0.4;" +
		"user42 127.0.0.2;user49 127.0.0.2;user56 127.0.0.6;user63 127.0.0.4;user70 127.0.0.2;user77 127.0.0.2;" +
		"user84 127.0.0.4;user91 127.0.0.4;user98 127.0.0.4;user105 127.0.0.4;user112 127.0.0.6;user119 127.0.0.4;" +
		"user126 127.0.0.2;user133 127.0.0.4;user140 127.0.0.6;user147 127.0.0.4;user154 127.0.0.4;user161 127.0.0.4;" +
		"user168 127.0.0.6;user175 127.0.0.6;user182 127.0.0.4;user189 127.0.0.4;user196 127.0.0.4"
	ipOf := map[string]string{}
	for _, s := range d.Servers() {
		ipOf[s.Name] = d.servers[s.Index].ip
	}
	for _, pair := range strings.Split(want, ";") {
		user, ip, _ := strings.Cut(pair, " ")
		for _, name := range []string{user, strings.ToUpper(user)} { // %Lu
			l := pick(t, d, name)
			l.Release()
			if got := ipOf[l.Server]; got != ip || l.Reason != "director" {
				t.Errorf("%s: got %s (%s, reason %s), want %s", name, l.Server, got, l.Reason, ip)
			}
		}
	}
}

// TestDirectorSkipsUnusable: a server that is down, has no points, is
// excluded or full is not where the ring sends new users: they go to the
// next point's server, and HashOrder lists servers in ring order.
func TestDirectorSkipsUnusable(t *testing.T) {
	opts := Options{Balance: BalanceDirector, UserExpire: -1, Servers: ringServers(t, "10.0.0.1", 100, "10.0.0.2", 100, "10.0.0.3", 100)}
	d := newDirector(t, opts)
	users := make([]string, 300)
	home := map[string]string{}
	for i := range users {
		users[i] = fmt.Sprintf("u%d@example.org", i)
		order := d.HashOrder(users[i])
		if len(order) != 3 {
			t.Fatalf("HashOrder(%s): got %v, want 3 servers", users[i], order)
		}
		home[users[i]] = order[0]
		if l := pick(t, d, users[i]); l.Server != order[0] {
			t.Fatalf("%s: Pick got %s, HashOrder starts with %s", users[i], l.Server, order[0])
		} else {
			l.Release()
		}
	}
	d.SetHealth("mail2", false, "test")
	for _, u := range users {
		l := pick(t, d, u)
		l.Release()
		order := d.HashOrder(u)
		if home[u] != "mail2" && l.Server != home[u] {
			t.Errorf("%s: moved from %s to %s though only mail2 went down", u, home[u], l.Server)
		}
		if l.Server == "mail2" || l.Server != order[0] || len(order) != 2 {
			t.Errorf("%s with mail2 down: got %s, order %v", u, l.Server, order)
		}
	}
	d.SetHealth("mail2", true, "test")
	if err := d.SetVhostCount("mail3", 0); err != nil {
		t.Fatal(err)
	}
	for _, u := range users {
		l, err := d.Pick(Request{User: u, Exclude: []string{"mail1"}})
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		l.Release()
		if l.Server != "mail2" {
			t.Errorf("%s with mail1 excluded and mail3 at vhost count 0: got %s, want mail2", u, l.Server)
		}
	}
}

// TestDirectorVhostShare: a server's share of users follows its vhost
// count, within the ring's resolution.
func TestDirectorVhostShare(t *testing.T) {
	d := newDirector(t, Options{Balance: BalanceDirector, Servers: ringServers(t, "10.0.0.1", 100, "10.0.0.2", 300)})
	count := map[string]int{}
	for i := range 20000 {
		count[d.HashOrder(fmt.Sprintf("user%d", i))[0]]++
	}
	if share := float64(count["mail2"]) / 20000; share < 0.65 || share > 0.85 {
		t.Errorf("mail2 with 300 of 400 points: got %.2f of the users, want about 0.75", share)
	}
}

// TestSetVhostCount: a new vhost count reshapes the ring at once (doveadm
// director add HOST COUNT), though a ring for the same servers was built.
func TestSetVhostCount(t *testing.T) {
	d := newDirector(t, Options{Balance: BalanceDirector, Servers: ringServers(t, "10.0.0.1", 100, "10.0.0.2", 100)})
	share := func() float64 {
		n := 0
		for i := range 4000 {
			if d.HashOrder(fmt.Sprintf("user%d", i))[0] == "mail1" {
				n++
			}
		}
		return float64(n) / 4000
	}
	if s := share(); s < 0.35 || s > 0.65 {
		t.Fatalf("100 and 100 points: mail1 got %.2f of the users, want about half", s)
	}
	if err := d.SetVhostCount("mail1", 10); err != nil {
		t.Fatal(err)
	}
	if s := share(); s > 0.2 {
		t.Errorf("10 and 100 points: mail1 got %.2f of the users, want about 0.09", s)
	}
	if got := d.Servers()[0].VhostCount; got != 10 {
		t.Errorf("ServerStatus.VhostCount: got %d, want 10", got)
	}
}

// TestDirectorUsesCaseAsFormatSays: under %u the name's case is hashed as
// the client wrote it, under %Lu it is not; the sticky table is keyed by
// the lower-cased name either way.
func TestDirectorUsesCaseAsFormatSays(t *testing.T) {
	srv := ringServers(t, "10.0.0.1", 100, "10.0.0.2", 100, "10.0.0.3", 100, "10.0.0.4", 100)
	exact := newDirector(t, Options{Balance: BalanceDirector, UsernameHash: "%u", Servers: srv})
	lower := newDirector(t, Options{Balance: BalanceDirector, Servers: srv})
	differ := 0
	for i := range 200 {
		u := fmt.Sprintf("User%d", i)
		if exact.HashOrder(u)[0] != exact.HashOrder(strings.ToLower(u))[0] {
			differ++
		}
		if lower.HashOrder(u)[0] != lower.HashOrder(strings.ToLower(u))[0] {
			t.Fatalf("%%Lu: %s and its lower case placed apart", u)
		}
	}
	if differ == 0 {
		t.Errorf("%%u: every mixed-case name placed like its lower case; want the case hashed")
	}
}

// TestAssignExpires: an imported assignment holds the user on its server
// until its expiry, then the ring places the user again; it is not a move.
func TestAssignExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := newDirector(t, Options{Balance: BalanceDirector, Servers: ringServers(t, "10.0.0.1", 100, "10.0.0.2", 100)})
		u := "alice@example.org"
		home := d.HashOrder(u)[0]
		other := "mail1"
		if home == other {
			other = "mail2"
		}
		if err := d.Assign(u, other, time.Now().Add(-time.Second)); err == nil {
			t.Fatal("Assign with a past expiry: got no error")
		}
		if err := d.Assign("ALICE@example.org", other, time.Now().Add(10*time.Minute)); err != nil {
			t.Fatal(err)
		}
		p := d.Where(u)
		if p.Server != other || p.Moved || p.Reason != "sticky: expires in 10m0s" {
			t.Errorf("assigned: got %+v, want sticky on %s for 10m, not moved", p, other)
		}
		time.Sleep(10*time.Minute + time.Second)
		if p := d.Where(u); p.Server != home {
			t.Errorf("after the expiry: got %s, want the ring's %s", p.Server, home)
		}
		d.SetHealth(other, false, "test")
		if err := d.Assign(u, other, time.Now().Add(time.Minute)); !errors.Is(err, ErrServerUnavailable) {
			t.Errorf("Assign to a down server: got %v, want ErrServerUnavailable", err)
		}
	})
}

func TestDirectorNeedsIP(t *testing.T) {
	_, err := New(Options{Balance: BalanceDirector, Servers: servers(100)})
	if err == nil || !strings.Contains(err.Error(), "IP address") {
		t.Errorf("got %v, want an error naming the IP address", err)
	}
}

func FuzzUsernameHash(f *testing.F) {
	for _, s := range []string{"%Lu", "%u", "%Ln@%Ld", "%{user}", "%L{domain}", "%%", "%", "%{", "x%RTUu"} {
		f.Add(s, "Alice@Example.org")
	}
	f.Fuzz(func(t *testing.T, format, user string) {
		h, err := parseUsernameHash(format)
		if err != nil {
			if !errors.Is(err, ErrUsernameHash) {
				t.Fatalf("parse %q: error %v does not wrap ErrUsernameHash", format, err)
			}
			return
		}
		if !strings.Contains(format, "%") && format != "" && h.expand(user) != format {
			t.Fatalf("%q without variables expanded to %q", format, h.expand(user))
		}
		_ = h.sum(user)
	})
}
