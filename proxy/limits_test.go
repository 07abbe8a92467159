package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

func TestGuardPerClient(t *testing.T) {
	g := newGuard(Limits{MaxPerClient: 2, Exempt: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	now := time.Now()
	a, b := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2")
	for i := range 2 {
		if why, ok := g.admit(a, now); why != "" || !ok {
			t.Fatalf("connection %d of a: refused %q", i+1, why)
		}
	}
	if why, ok := g.admit(a, now); why == "" || ok {
		t.Fatal("a third connection of a was admitted with MaxPerClient 2")
	}
	if why, _ := g.admit(b, now); why != "" {
		t.Errorf("another client refused: %q", why)
	}
	g.leave(a)
	if why, ok := g.admit(a, now); why != "" || !ok {
		t.Errorf("a after one of its connections ended: refused %q", why)
	}
	exempt := netip.MustParseAddr("192.0.2.7")
	for range 10 {
		if why, ok := g.admit(exempt, now); why != "" || ok {
			t.Fatalf("an exempt client: refused %q or counted (%v)", why, ok)
		}
	}
}

func TestGuardIPv6Prefix(t *testing.T) {
	g := newGuard(Limits{MaxPerClient: 1})
	now := time.Now()
	if why, _ := g.admit(netip.MustParseAddr("2001:db8:1:2::1"), now); why != "" {
		t.Fatal(why)
	}
	if why, _ := g.admit(netip.MustParseAddr("2001:db8:1:2::ffff"), now); why == "" {
		t.Error("another address of the same /64 was admitted: it is the same client")
	}
	if why, _ := g.admit(netip.MustParseAddr("2001:db8:1:3::1"), now); why != "" {
		t.Errorf("another /64 refused: %q", why)
	}
	if why, _ := g.admit(netip.MustParseAddr("::ffff:198.51.100.1"), now); why != "" {
		t.Errorf("an IPv4-mapped client refused: %q", why)
	}
}

func TestGuardRate(t *testing.T) {
	g := newGuard(Limits{MaxRate: 3, RateWindow: time.Minute})
	a := netip.MustParseAddr("203.0.113.1")
	now := time.Now()
	for i := range 3 {
		if why, ok := g.admit(a, now); why != "" {
			t.Fatalf("connection %d refused: %q", i+1, why)
		} else if ok {
			g.leave(a)
		}
	}
	if why, _ := g.admit(a, now.Add(time.Second)); !strings.Contains(why, "slow down") {
		t.Errorf("a fourth connection in the window: %q, want refused", why)
	}
	if why, _ := g.admit(a, now.Add(time.Minute+time.Second)); why != "" {
		t.Errorf("the next window: refused %q", why)
	}
}

func TestPenaltyDoublesPerClientAndUser(t *testing.T) {
	g := newGuard(Limits{PenaltyInit: time.Second, PenaltyMax: 15 * time.Second, BlockAfter: 6, BlockFor: time.Minute})
	a, other := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("198.51.100.9")
	now := time.Now()
	g.admit(a, now)
	g.admit(other, now)
	var got []time.Duration
	for i := range 5 {
		got = append(got, g.failed(a, "alice", now.Add(time.Duration(i)*time.Second)))
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 15 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
	// Another address guessing alice's password is slowed by alice's
	// count; another address and another user are not slowed at all.
	if d := g.failed(other, "alice", now); d != 15*time.Second {
		t.Errorf("alice from another address: %v, want alice's penalty", d)
	}
	if g.blocked(other, now) {
		t.Error("the other address is blocked after its first failure")
	}
	if d := penalty(time.Second, 15*time.Second, 1); d != time.Second {
		t.Errorf("a first failure: %v", d)
	}
	g.failed(a, "bob", now.Add(5*time.Second)) // a's sixth failure
	if !g.blocked(a, now.Add(6*time.Second)) {
		t.Error("a is not blocked after BlockAfter failures")
	}
	if g.blocked(a, now.Add(2*time.Minute)) {
		t.Error("a is still blocked after BlockFor")
	}
	g.succeeded("alice")
	if d := g.failed(other, "alice", now.Add(3*time.Minute)); d != time.Second {
		t.Errorf("alice after a successful login, from an address whose failures expired: %v, want the first penalty", d)
	}
}

func TestGuardTableIsBounded(t *testing.T) {
	g := newGuard(Limits{MaxPerClient: 5, TableSize: 100})
	now := time.Now()
	for i := range 10000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		g.admit(a, now)
		g.failed(a, "user"+strings.Repeat("x", i%7), now)
	}
	if n := g.clients.Len(); n > 100 {
		t.Errorf("%d clients tracked, want at most 100", n)
	}
	if n := g.users.Len(); n > 100 {
		t.Errorf("%d users tracked, want at most 100", n)
	}
}

// refuser is a greeter with words for a refused connection.
type refuser struct{ Handler }

func (refuser) Refusal(why string) string { return "* BYE " + why + "\r\n" }

// TestLimitRefusesInProtocolWords: the connection over the per-client
// limit (the client as a trusted PROXY header names it) gets the
// frontend's refusal and is closed, and is logged as refused; another
// client is served.
func TestLimitRefusesInProtocolWords(t *testing.T) {
	_, addr := startServer(t, Frontend{
		Handler:        refuser{greeter(nil)},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Limits:         Limits{MaxPerClient: 1},
	})
	from := func(ip string) (net.Conn, string) {
		c, r := dialLine(t, addr)
		src := &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}
		dst := &net.TCPAddr{IP: net.ParseIP("198.51.100.1"), Port: 143}
		proxyproto.HeaderProxyFromAddrs(2, src, dst).WriteTo(c)
		l, _ := r.ReadString('\n')
		return c, l
	}
	if _, l := from("203.0.113.9"); l != "* OK hello\r\n" {
		t.Fatalf("first connection: %q", l)
	}
	c, l := from("203.0.113.9")
	if l != "* BYE Too many connections from your address\r\n" {
		t.Fatalf("second connection of the client: %q, want the refusal", l)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("the refused connection stays open")
	}
	if _, l := from("203.0.113.10"); l != "* OK hello\r\n" {
		t.Errorf("another client: %q", l)
	}
}

// TestBlockedClientLogin: Connect refuses a login of a blocked client with
// ErrBlocked before asking the picker.
func TestBlockedClientLogin(t *testing.T) {
	g := newGuard(Limits{BlockAfter: 1, BlockFor: time.Minute})
	a := netip.MustParseAddr("203.0.113.1")
	g.admit(a, time.Now())
	g.failed(a, "alice", time.Now())
	srv := New(Options{})
	c := &Conn{srv: srv, fe: &Frontend{guard: g}, remote: netip.AddrPortFrom(a, 1)}
	_, _, err := c.Connect(context.Background(), nil, "alice", nil)
	if !errors.Is(err, ErrBlocked) || !errors.Is(err, ErrUnavailable) {
		t.Errorf("Connect of a blocked client: %v, want ErrBlocked", err)
	}
}
