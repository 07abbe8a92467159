package integration

import (
	"fmt"
	"net"
	"testing"
)

// loginAs logs user in through addr from the client IP from and out again.
func loginAs(t *testing.T, e *env, from net.IP, user string) {
	t.Helper()
	r := greetedFrom(t, from, e.addrs["imap"])
	r.login(user)
	r.selectInbox()
	r.logout()
}

// TestE2EBalanceSource: with balance = "source" the client address picks
// the server: every user from 127.0.0.2 lands on one server, every user
// from 127.0.0.3 on one server, whoever logs in.
func TestE2EBalanceSource(t *testing.T) {
	e := startEnv(t, setupSpec{Instances: 3, Balance: "source",
		Frontends: []frontendSpec{{Name: "imap", Protocol: "imap", Plaintext: "allow"}}})
	for k, ip := range []net.IP{net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 3)} {
		servers := make(map[string]bool)
		for n := range 8 {
			user := fmt.Sprintf("user%03d", 100+10*k+n)
			loginAs(t, e, ip, user)
			server, l := e.landedOnce(t, user)
			if l.RemoteIP != ip.String() {
				t.Errorf("%s: rip %s, want %s", user, l.RemoteIP, ip)
			}
			servers[server] = true
		}
		if len(servers) != 1 {
			t.Errorf("client %s: users landed on %v, want one server for all", ip, servers)
		}
	}
}

// TestE2EBackupServers: two active servers and one backup. No login lands
// on the backup while an active server is up; with both actives stopped
// (and marked down by their checks) logins land on the backup.
func TestE2EBackupServers(t *testing.T) {
	e := startEnv(t, setupSpec{Instances: 3, Check: "imap",
		Frontends: []frontendSpec{{Name: "imap", Protocol: "imap", Plaintext: "allow"}},
		ServerExtra: func(i int) string {
			if i == 2 {
				return "backup = true"
			}
			return ""
		}})
	for n := range 12 {
		user := fmt.Sprintf("user%03d", 120+n)
		loginAs(t, e, clientIP, user)
		if server, _ := e.landedOnce(t, user); server == "dovecot3" {
			t.Errorf("%s landed on the backup dovecot3 while the actives are up", user)
		}
	}
	stopAndWaitDown(t, e, "dovecot1", "dovecot2")
	for n := range 6 {
		user := fmt.Sprintf("user%03d", 140+n)
		loginAs(t, e, clientIP, user)
		if server, _ := e.landedOnce(t, user); server != "dovecot3" {
			t.Errorf("%s landed on %s with both actives down, want the backup dovecot3", user, server)
		}
	}
}

// TestE2EAllBackups: with allbackups = true and both actives down, logins
// spread over both backups (without it, only the first backup is used).
func TestE2EAllBackups(t *testing.T) {
	e := startEnv(t, setupSpec{Instances: 4, Check: "imap", Backend: "allbackups = true",
		Frontends: []frontendSpec{{Name: "imap", Protocol: "imap", Plaintext: "allow"}},
		ServerExtra: func(i int) string {
			if i >= 2 {
				return "backup = true"
			}
			return ""
		}})
	stopAndWaitDown(t, e, "dovecot1", "dovecot2")
	perServer := make(map[string]int)
	for n := range 16 {
		user := fmt.Sprintf("user%03d", 160+n)
		loginAs(t, e, clientIP, user)
		server, _ := e.landedOnce(t, user)
		perServer[server]++
	}
	if len(perServer) != 2 || perServer["dovecot3"] == 0 || perServer["dovecot4"] == 0 {
		t.Errorf("logins per server with both actives down: %v, want some on each of dovecot3 and dovecot4 only", perServer)
	}
}

// stopAndWaitDown stops the named instances and waits until maildirector's
// checks marked each down.
func stopAndWaitDown(t *testing.T, e *env, servers ...string) {
	t.Helper()
	for _, s := range servers {
		if err := e.instanceOf(s).Stop(); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range servers {
		checksWaitLine(t, e, 0, downLine("dovecot", s)...)
	}
}
