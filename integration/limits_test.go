package integration

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// attackerIP is a second loopback address: the per-client limits tell it
// from clientIP.
var attackerIP = net.IPv4(127, 0, 0, 3)

// TestLimitsConnectionFlood: one client address opening 1,000 connections
// gets max_per_client of them, and the rest are refused with IMAP's BYE,
// while a login from another address works.
func TestLimitsConnectionFlood(t *testing.T) {
	const maxPerClient, flood = 100, 1000
	e := startEnv(t, setupSpec{
		Instances: 1,
		Frontends: []frontendSpec{{Name: "imap", Protocol: "imap", Plaintext: "allow"}},
		Limits:    fmt.Sprintf("max_per_client = %d\nmax_rate = 0\npenalty_init = \"0s\"", maxPerClient),
	})
	ok, refused := 0, 0
	conns := make([]net.Conn, 0, flood)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range flood {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: attackerIP}}
		c, err := d.Dial("tcp", e.addrs["imap"])
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		conns = append(conns, c)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		switch {
		case strings.HasPrefix(line, "* OK"):
			ok++
		case line == "* BYE [UNAVAILABLE] Too many connections from your address.\r\n":
			refused++
			c.Close() // refused connections are closed by maildirector; do not hold them here either
		default:
			t.Fatalf("connection %d: %q, %v", ok+refused+1, line, err)
		}
	}
	if ok != maxPerClient || refused != flood-maxPerClient {
		t.Errorf("%d greeted, %d refused; want %d and %d", ok, refused, maxPerClient, flood-maxPerClient)
	}
	// Another address is served while the flood holds its connections.
	r := greetedFrom(t, clientIP, e.addrs["imap"])
	r.login("user001")
	r.selectInbox()
	r.logout()
	if !strings.Contains(e.md.log.String(), `end=refused`) {
		t.Error("no session line ends refused")
	}
}

// TestLimitsLoginPenalty: 50 wrong passwords in a row from one address:
// each failed login's answer waits longer (the log line gives the
// penalty: doubling from penalty_init to penalty_max), past block_after
// the address gets NO [UNAVAILABLE] at once, and another address logging
// in as another user is neither slowed nor blocked.
func TestLimitsLoginPenalty(t *testing.T) {
	e := startEnv(t, setupSpec{
		Instances: 1,
		Frontends: []frontendSpec{{Name: "imap", Protocol: "imap", Plaintext: "allow", Extra: "max_login_attempts = 20"}},
		Limits:    "max_per_client = 0\nmax_rate = 0\npenalty_init = \"10ms\"\npenalty_max = \"80ms\"\nblock_after = 30\nblock_for = \"5m\"",
	})
	var answers []string
	var r *rawIMAP
	for i := range 50 {
		if i%10 == 0 {
			r = greetedFrom(t, attackerIP, e.addrs["imap"])
		}
		_, tagged := r.cmd(fmt.Sprintf("a%d", i), "LOGIN user001 wrong")
		answers = append(answers, tagged)
	}
	for i, a := range answers {
		want := "NO [AUTHENTICATIONFAILED]"
		if i >= 30 {
			want = "NO [UNAVAILABLE]"
		}
		if !strings.Contains(a, want) {
			t.Errorf("attempt %d: %q, want %s", i+1, a, want)
		}
	}
	var penalties []string
	eventually(t, "50 failed-login lines of 127.0.0.3 in the log", func() bool {
		penalties = nil // the log arrives through a pipe: the last lines may trail the answers
		for _, l := range strings.Split(e.md.log.String(), "\n") {
			kv := parseLogfmt(l)
			if kv["msg"] == "login failed" && strings.HasPrefix(kv["remote"], "127.0.0.3:") {
				penalties = append(penalties, kv["result"]+":"+kv["penalty"])
			}
		}
		return len(penalties) >= 50
	})
	want := []string{"rejected:10ms", "rejected:20ms", "rejected:40ms", "rejected:80ms", "rejected:80ms"}
	if len(penalties) != 50 || fmt.Sprint(penalties[:5]) != fmt.Sprint(want) || penalties[29] != "rejected:80ms" || penalties[30] != "temp_fail:" || penalties[49] != "temp_fail:" {
		t.Errorf("failed logins (result:penalty) = %v; want %v... then 80ms up to the 30th, then temp_fail without penalty", penalties, want)
	}

	// Another address, another user: logs in at once, and its own first
	// failure gets the first penalty, not the attacker's.
	g := greetedFrom(t, clientIP, e.addrs["imap"])
	if _, tagged := g.cmd("b1", "LOGIN user003 wrong"); !strings.Contains(tagged, "NO [AUTHENTICATIONFAILED]") {
		t.Fatalf("another address, wrong password: %q", tagged)
	}
	g.login("user002")
	g.selectInbox()
	var other []string
	eventually(t, "the other address's failed-login line", func() bool {
		other = nil
		for _, l := range strings.Split(e.md.log.String(), "\n") {
			if kv := parseLogfmt(l); kv["msg"] == "login failed" && strings.HasPrefix(kv["remote"], "127.0.0.2:") {
				other = append(other, kv["result"]+":"+kv["penalty"])
			}
		}
		return len(other) > 0
	})
	if fmt.Sprint(other) != "[rejected:10ms]" {
		t.Errorf("the other address's failed logins: %v, want [rejected:10ms]", other)
	}
}
