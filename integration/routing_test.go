package integration

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
)

func plainIR(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// TestLMTPPlusAddressLandsWithUser: mail for alice+lists@ goes to alice's
// server (recipient_delimiter, default "+", as Dovecot's), where Dovecot
// delivers it into alice's own maildir: the hash of the unstripped address
// would have named another server.
func TestLMTPPlusAddressLandsWithUser(t *testing.T) {
	e := startEnv(t, setupSpec{Instances: 3, Frontends: lmtpFrontends(""), Backend: lmtpBackend})
	// A user whose plus-address, hashed as it is, names another server.
	var user, rcpt string
	for i := 0; i < 200 && user == ""; i++ {
		u := fmt.Sprintf("user%03d", i)
		a := u + "+lists@" + lmtpDomain
		if e.hashServer(a) != e.lmtpServer(u) {
			user, rcpt = u, a
		}
	}
	if user == "" {
		t.Fatal("no user of 200 whose plus-address hashes elsewhere")
	}
	m := lmtpDial(t, e.addrs["lmtp"])
	replies, err := m.send("mta@example.org", []string{rcpt}, lmtpMessage("plus", 0))
	if err != nil {
		t.Fatal(err)
	}
	if replies[0].Code != 250 {
		t.Fatalf("<%s>: got %v, want 250", rcpt, replies[0])
	}
	m.close()
	want := e.lmtpServer(user)
	if got := e.lmtpIDs(user); len(got) != 1 || got[want]["plus"] != 1 {
		t.Errorf("<%s>: messages of %s: got %v, want one on %s (the unstripped address hashes to %s)",
			rcpt, user, got, want, e.hashServer(rcpt))
	}
}

// TestLoginServerDownTempfail: with login_server_down = "tempfail", a user
// whose server is down is refused for now over IMAP, POP3 and submission
// (never sent to another server, where the mailbox would look empty), and
// users of the other server log in as usual.
func TestLoginServerDownTempfail(t *testing.T) {
	e := startEnv(t, setupSpec{
		Frontends: []frontendSpec{
			{Name: "imap", Protocol: "imap", Plaintext: "allow"},
			{Name: "pop3", Protocol: "pop3", Plaintext: "allow"},
			{Name: "submission", Protocol: "submission", Plaintext: "allow"},
		},
		Check:   "imap",
		Inter:   "200ms",
		Backend: `login_server_down = "tempfail"`,
	})
	checksWaitLine(t, e, 0, checksOf("dovecot", "dovecot1", true)...)
	if err := e.instanceOf("dovecot1").Stop(); err != nil {
		t.Fatal(err)
	}
	checksWaitLine(t, e, 0, downLine("dovecot", "dovecot1")...)
	home := e.usersOn("dovecot1", 1)[0]
	other := e.usersOn("dovecot2", 1)[0]

	c := greeted(t, e.addrs["imap"])
	if _, tagged := c.cmd("a", "LOGIN "+home+" pass"); !strings.HasPrefix(tagged, "a NO [UNAVAILABLE]") {
		t.Errorf("IMAP login of %s (server down): got %q, want a NO [UNAVAILABLE]", home, tagged)
	}
	if _, tagged := c.cmd("b", "LOGIN "+other+" pass"); !strings.HasPrefix(tagged, "b OK") {
		t.Errorf("IMAP login of %s (server up): got %q, want b OK", other, tagged)
	}

	p := pop3Greeted(t, e.addrs["pop3"])
	if st := p.userPass(home, "pass"); !strings.HasPrefix(st, "-ERR [SYS/TEMP]") {
		t.Errorf("POP3 login of %s (server down): got %q, want -ERR [SYS/TEMP]", home, st)
	}

	s := submissionGreeted(t, e.addrs["submission"])
	s.ehlo()
	if r := s.cmd("AUTH PLAIN " + plainIR(home, "pass")); !strings.HasPrefix(r, "454 4.7.0") {
		t.Errorf("submission AUTH of %s (server down): got %q, want 454 4.7.0", home, r)
	}
	if r := s.cmd("AUTH PLAIN " + plainIR(other, "pass")); !strings.HasPrefix(r, "235") {
		t.Errorf("submission AUTH of %s (server up) after a 454: got %q, want 235", other, r)
	}

	logins, err := e.instanceOf("dovecot2").Logins()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range logins {
		if l.User == home {
			t.Errorf("%s, whose server is down, logged in on dovecot2: %+v", home, l)
		}
	}
}
