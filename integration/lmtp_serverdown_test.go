package integration

import (
	"fmt"
	"strings"
	"testing"
)

// lmtpUsersOn returns n users whose mail the director sends to server.
func (e *env) lmtpUsersOn(server string, n int) []string {
	e.t.Helper()
	var out []string
	for i := 0; len(out) < n && i < 200; i++ {
		if u := fmt.Sprintf("user%03d", i); e.lmtpServer(u) == server {
			out = append(out, u)
		}
	}
	if len(out) < n {
		e.t.Fatalf("only %d users hash to %s", len(out), server)
	}
	return out
}

// TestLMTPServerDown: one transaction for users of three servers while one
// server is stopped. With server_down = "tempfail" the stopped server's
// recipients get 451 4.4.1 (the MTA retries them later) and nothing of
// theirs lands anywhere, while the others get 250 on their own servers.
// With "next" (shared storage) they land on the next server of their hash
// order.
func TestLMTPServerDown(t *testing.T) {
	const down = "dovecot2"
	tests := []struct {
		name       string
		serverDown string
		check      string // backend check type
		// waitMarked waits until the check has marked the server down
		// before the delivery; else the delivery runs before any check
		// could know (check "none") and the server leg's dial fails.
		waitMarked bool
	}{
		{name: "tempfail/unknown to the checks", serverDown: "tempfail", check: "none"},
		// Once the check marks the server down, its recipients must still
		// get 4xx, never delivery to (and a sticky move to) another server:
		// the LMTP frontend asks the director for the user's own server only.
		{name: "tempfail/marked down by the checks", serverDown: "tempfail", check: "tcp", waitMarked: true},
		{name: "next/unknown to the checks", serverDown: "next", check: "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startEnv(t, setupSpec{
				Instances: 3,
				Frontends: lmtpFrontends(fmt.Sprintf("server_down = %q\n", tt.serverDown)),
				Backend:   lmtpBackend,
				Check:     tt.check,
			})
			downUsers := e.lmtpUsersOn(down, 2)
			var rcpts []string
			for _, s := range []string{"dovecot1", down, "dovecot3"} {
				for _, u := range e.lmtpUsersOn(s, 2) {
					rcpts = append(rcpts, lmtpAddr(u))
				}
			}
			downs := strings.Count(e.md.log.String(), `msg="server down" backend=dovecot server=`+down)
			if err := e.instanceOf(down).Stop(); err != nil {
				t.Fatal(err)
			}
			if tt.waitMarked {
				eventually(t, "the check to mark "+down+" down", func() bool {
					return strings.Count(e.md.log.String(), `msg="server down" backend=dovecot server=`+down) > downs
				})
			}

			m := lmtpDial(t, e.addrs["lmtp"])
			replies, err := m.send("mta@example.org", rcpts, lmtpMessage("while-down", 0))
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range replies {
				u, _, _ := strings.Cut(r.Rcpt, "@")
				own := e.lmtpServer(u)
				want, wantOn := 250, own
				switch {
				case own == down && tt.serverDown == "tempfail":
					want, wantOn = 451, ""
				case own == down:
					wantOn = e.lmtpHashOrder(r.Rcpt)[1]
				}
				if r.Code != want || (want == 451 && !strings.HasPrefix(r.Text, "4.4.1 ")) {
					t.Errorf("reply %d: got %v, want %d", i, r, want)
				}
				got := e.lmtpIDs(u)
				switch {
				case wantOn == "" && len(got) != 0:
					t.Errorf("%s: got %v, want nothing delivered", u, got)
				case wantOn != "" && (len(got) != 1 || got[wantOn]["while-down"] != 1):
					t.Errorf("%s: got %v, want one \"while-down\" on %s", u, got, wantOn)
				}
			}
			if tt.serverDown != "tempfail" {
				return
			}

			// The MTA retries once the server is back: the mail lands on it.
			if err := e.instanceOf(down).Start(); err != nil {
				t.Fatal(err)
			}
			var retry []string
			for _, u := range downUsers {
				retry = append(retry, lmtpAddr(u))
			}
			var again []lmtpReply
			eventually(t, "the retry to be accepted", func() bool {
				again, err = m.send("mta@example.org", retry, lmtpMessage("retried", 0))
				if err != nil {
					t.Fatal(err)
				}
				return again[0].Code == 250 && again[1].Code == 250
			})
			for _, u := range downUsers {
				if got := e.lmtpIDs(u); len(got) != 1 || got[down]["retried"] != 1 || len(got[down]) != 1 {
					t.Errorf("%s after the retry: got %v, want one \"retried\" on %s", u, got, down)
				}
			}
		})
	}
}
