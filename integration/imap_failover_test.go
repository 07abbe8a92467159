package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// usersOn returns n users the hash places on server.
func (e *env) usersOn(server string, n int) []string {
	var out []string
	for i := 0; len(out) < n && i < 200; i++ {
		u := fmt.Sprintf("user%03d", i)
		if e.hashServer(u) == server {
			out = append(out, u)
		}
	}
	if len(out) < n {
		e.t.Fatalf("only %d users hash to %s", len(out), server)
	}
	return out
}

// landedOn logs user in, logs out and returns the server whose Dovecot
// logged the new login.
func (e *env) landedOn(addr, user string) string {
	e.t.Helper()
	before := e.loginsOf(user)
	r := greeted(e.t, addr)
	r.login(user)
	r.logout()
	// Dovecot writes its log through its log process: poll (bounded) for
	// the new line.
	landed := ""
	eventually(e.t, "a new login of "+user+" in a Dovecot log", func() bool {
		for s, n := range e.loginsOf(user) {
			if n > before[s] {
				landed = s
				return true
			}
		}
		return false
	})
	return landed
}

// TestIMAPServerDownAndBack: when a Dovecot stops, its users log in on
// another server; when it comes back, a user with a live session stays
// where the session is, and returns only after its assignment expires.
func TestIMAPServerDownAndBack(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: imapFrontends(), UserExpire: "3s"})
	addr := e.addrs["imap"]
	users := e.usersOn("dovecot1", 4)
	down := e.instanceOf("dovecot1")

	if got := e.landedOn(addr, users[0]); got != "dovecot1" {
		t.Fatalf("%s before the stop: landed on %s, want dovecot1", users[0], got)
	}
	if err := down.Stop(); err != nil {
		t.Fatal(err)
	}
	// Failed dials redispatch at once; the TCP check marks it down soon after.
	for _, u := range users {
		if got := e.landedOn(addr, u); got != "dovecot2" {
			t.Fatalf("%s while dovecot1 is down: landed on %s, want dovecot2", u, got)
		}
	}

	// A live session pins users[1] to dovecot2 across the comeback.
	live := greeted(t, addr)
	live.login(users[1])

	ups := strings.Count(e.md.log.String(), `msg="server up" backend=dovecot server=dovecot1`)
	if err := down.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the check to mark dovecot1 up", func() bool {
		return strings.Count(e.md.log.String(), `msg="server up" backend=dovecot server=dovecot1`) > ups
	})
	fresh := e.usersOn("dovecot1", 5)[4]
	if got := e.landedOn(addr, fresh); got != "dovecot1" {
		t.Errorf("%s, new since dovecot1 came back: landed on %s, want dovecot1", fresh, got)
	}
	if got := e.landedOn(addr, users[1]); got != "dovecot2" {
		t.Errorf("%s with a live session on dovecot2: landed on %s, want dovecot2 (no split)", users[1], got)
	}
	if _, tagged := live.cmd("n", "NOOP"); !strings.HasPrefix(tagged, "n OK") {
		t.Errorf("live session NOOP: %q", tagged)
	}
	live.logout()

	// Once the assignment expires (3s after the last session), the user is
	// placed by the hash again. Each login renews the assignment, so wait
	// out the whole expiry before each try (a bounded number of tries: the
	// sweep of a loaded machine may be late, never early).
	for try := 1; ; try++ {
		time.Sleep(4 * time.Second)
		got := e.landedOn(addr, users[1])
		if got == "dovecot1" {
			break
		}
		if try == 4 {
			t.Fatalf("%s still on %s after its assignment expired; want dovecot1", users[1], got)
		}
	}
}
