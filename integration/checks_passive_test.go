package integration

import (
	"testing"
)

// TestChecksPassiveDownWithoutChecks: a server nobody checks (check type
// "none": "servers are always up") must not be taken down for good by
// passive health, since no check could ever bring it back: once it is
// restarted, the users hashed to it land there again.
func TestChecksPassiveDownWithoutChecks(t *testing.T) {
	for _, tt := range []struct {
		name string
		spec setupSpec
	}{
		{"check type none", setupSpec{Check: "none", Backend: "error_limit = 2"}},
		{"server check false", setupSpec{Check: "imap", Inter: "200ms", Backend: "error_limit = 2",
			ServerExtra: func(i int) string {
				if i == 0 {
					return "check = false"
				}
				return ""
			}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.Frontends = imapFrontends()
			e := startEnv(t, spec)
			addr := e.addrs["imap"]
			users := e.usersOn("dovecot1", 5)
			in := e.instanceOf("dovecot1")
			if err := in.Kill(); err != nil {
				t.Fatal(err)
			}
			for _, u := range users[:3] {
				if got := e.landedOn(addr, u); got != "dovecot2" {
					t.Errorf("%s with dovecot1 killed: landed on %s, want dovecot2", u, got)
				}
			}
			if err := in.Start(); err != nil {
				t.Fatal(err)
			}
			for _, u := range users[3:] {
				if got := e.landedOn(addr, u); got != "dovecot1" {
					t.Errorf("%s, new since the unchecked dovecot1 was restarted: landed on %s, want dovecot1", u, got)
				}
			}
		})
	}
}

// TestChecksPassiveDownRechecksSoon: after passive health marks a server
// down, its checks run at fastinter/downinter, so a server that is back is
// up again after rise quick checks, not after the long inter of a steadily
// up server. HAProxy's on-error mark-down "forces fastinter" likewise.
// (ForceDown re-arms Run's timer, which was armed with Inter while the
// server was steadily up.)
func TestChecksPassiveDownRechecksSoon(t *testing.T) {
	e := startEnv(t, setupSpec{
		Frontends:  imapFrontends(),
		Check:      "imap",
		Inter:      "1h", // steadily up: practically never checked within the test
		CheckExtra: "fastinter = \"200ms\"\ndowninter = \"200ms\"",
		Backend:    "error_limit = 2",
	})
	addr := e.addrs["imap"]
	users := e.usersOn("dovecot1", 3)
	in := e.instanceOf("dovecot1")
	if err := in.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, u := range users[:2] {
		if got := e.landedOn(addr, u); got != "dovecot2" {
			t.Errorf("%s with dovecot1 killed: landed on %s, want dovecot2", u, got)
		}
	}
	checksWaitLine(t, e, 0, downLine("dovecot", "dovecot1")...)
	if err := in.Start(); err != nil {
		t.Fatal(err)
	}
	checksWaitLine(t, e, 0, upLine("dovecot", "dovecot1")...)
	if got := e.landedOn(addr, users[2]); got != "dovecot1" {
		t.Errorf("%s, new since dovecot1 came back: landed on %s, want dovecot1", users[2], got)
	}
}
