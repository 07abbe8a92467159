package integration

import (
	"strings"
	"testing"
	"time"
)

// TestIMAPHostileTagsDoNotMarkServersDown: RFC 9051 allows tags that
// Dovecot's imap-login refuses (with "]", over 126 bytes, over its 4 KiB
// input buffer). Replayed under the client's tag they drew an untagged BAD
// or a BYE, which counted as server failures and were retried on every
// server: one client took the whole backend down. The login must reach
// Dovecot under the proxy's own tag, the client must get the answer under
// its tag, and no server may change state. error_limit = 1 makes a single
// miscounted failure visible.
func TestIMAPHostileTagsDoNotMarkServersDown(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: imapFrontends(), Backend: "error_limit = 1"})
	addr := e.addrs["imap"]
	user := e.usersOn("dovecot1", 1)[0]
	other := e.usersOn("dovecot2", 1)[0]

	tests := []struct {
		name string
		tag  string
	}{
		{"tag with ]", "a]1"},
		{"tag over 126 bytes", strings.Repeat("t", 200)},
		// the longest the proxy takes is one 8 KiB command line; this is
		// over Dovecot's 4 KiB input buffer and well under that
		{"tag over Dovecot's input buffer", strings.Repeat("u", 5000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := greeted(t, addr)
			r.c.SetDeadline(time.Now().Add(60 * time.Second))
			// three logins on one connection: two wrong passwords, then
			// the right one
			for i, pass := range []string{"wrong", "wrong", "pass"} {
				want := " NO [AUTHENTICATIONFAILED]"
				if i == 2 {
					want = " OK"
				}
				_, tagged := r.cmd(tt.tag, "LOGIN "+user+" "+pass)
				if got := strings.TrimPrefix(tagged, tt.tag); !strings.HasPrefix(got, want) {
					t.Fatalf("login %d: got %q after the client's tag, want %q", i+1, got, want)
				}
			}
			r.logout()
		})
	}
	t.Run("tag over the proxy's line cap", func(t *testing.T) {
		r := greeted(t, addr)
		r.c.SetDeadline(time.Now().Add(30 * time.Second))
		r.send(strings.Repeat("v", 9000) + " LOGIN " + user + " pass\r\n")
		lines, _ := r.drain()
		if got := strings.Join(lines, "\n"); !strings.Contains(got, "* BYE Line too long") {
			t.Errorf("got %q, want the proxy's own BYE", lines)
		}
	})

	if lines := checksLogLines(e, `msg="server state change"`); len(lines) != 0 {
		t.Errorf("servers changed state: %q", lines)
	}
	if lines := checksLogLines(e, "server failed"); len(lines) != 0 {
		t.Errorf("servers counted as failed: %q", lines)
	}
	if got := e.landedOn(addr, user); got != "dovecot1" {
		t.Errorf("%s after the hostile tags: landed on %s, want dovecot1", user, got)
	}
	if got := e.landedOn(addr, other); got != "dovecot2" {
		t.Errorf("%s after the hostile tags: landed on %s, want dovecot2", other, got)
	}
}
