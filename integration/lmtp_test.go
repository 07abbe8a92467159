package integration

import (
	"fmt"
	"strings"
	"testing"
)

// TestLMTPRecipientsLandOnTheirServer: one transaction with 50 recipients
// (one of them twice) over three servers. Each recipient is answered in
// RCPT order (RFC 2033 section 4.2), 250 each, and each message lands
// exactly once, in the maildir of the server the hash names for the user.
func TestLMTPRecipientsLandOnTheirServer(t *testing.T) {
	e := startEnv(t, setupSpec{Instances: 3, Frontends: append(lmtpFrontends(""), imapFrontends()...), Backend: lmtpBackend})

	var users []string
	perServer := make(map[string]int)
	for i := 0; len(users) < 49; i++ {
		u := fmt.Sprintf("user%03d", i)
		users = append(users, u)
		perServer[e.lmtpServer(u)]++
	}
	for i := range e.lab.Instances {
		if perServer[serverName(i)] == 0 {
			t.Fatalf("no user of the 49 hashes to %s: %v", serverName(i), perServer)
		}
	}
	rcpts := make([]string, 0, 50)
	for _, u := range users {
		rcpts = append(rcpts, lmtpAddr(u))
	}
	// RCPT order: the duplicate in the middle, answered where it was sent.
	rcpts = append(rcpts[:25], append([]string{lmtpAddr(users[3])}, rcpts[25:]...)...)

	m := lmtpDial(t, e.addrs["lmtp"])
	replies, err := m.send("mta@example.org", rcpts, lmtpMessage("fifty", 0))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range replies {
		if r.Rcpt != rcpts[i] || r.Code != 250 {
			t.Errorf("reply %d: got %v, want 250 for <%s>", i, r, rcpts[i])
		}
	}
	m.close()

	for _, u := range users {
		want := e.lmtpServer(u)
		got := e.lmtpIDs(u)
		if len(got) != 1 || got[want]["fifty"] != 1 || len(got[want]) != 1 {
			t.Errorf("%s: got messages %v, want exactly one \"fifty\" on %s", u, got, want)
		}
	}
	if t.Failed() {
		t.Logf("recipients per server: %v", perServer)
	}
	// The mail is where the user's IMAP sessions go: with default_domain,
	// the login "user000" and the recipient user000@lab.test are one user.
	seen := make(map[string]bool)
	for _, u := range users {
		s := e.lmtpServer(u)
		if seen[s] {
			continue
		}
		seen[s] = true
		if got := e.landedOn(e.addrs["imap"], u); got != s {
			t.Errorf("IMAP login of %s: landed on %s, want %s where its mail is", u, got, s)
		}
	}
	if strings.Contains(e.md.log.String(), "panic") {
		t.Errorf("maildirector logged a panic")
	}
}
