package integration

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/maildirector/maildirector/internal/dovecotlab"
	"github.com/maildirector/maildirector/internal/smtpsink"
)

// TestE2ENoPasswordInLog: with log_level = "debug", logins of every kind
// (IMAP LOGIN, AUTHENTICATE PLAIN with SASL-IR and after a continuation,
// POP3 USER/PASS and AUTH PLAIN, submission AUTH PLAIN and AUTH LOGIN) and
// wrong passwords on each protocol leave none of the passwords in
// maildirector's whole log: not as they were typed, not in base64 on their
// own (AUTH LOGIN) and not as the base64 SASL PLAIN payload. A wrong
// password gets its "login failed" line, with the user and the client.
func TestE2ENoPasswordInLog(t *testing.T) {
	users := []string{"user090", "user091", "user092", "user093", "user094", "user095", "user096", "user097"}
	passwords := make(map[string]string)
	for _, u := range users {
		passwords[u] = "Pw-" + u + "-Xq7zK"
	}
	const wrong = "Wrong-Pw-5vRt9"
	sink, err := smtpsink.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	e := startEnv(t, setupSpec{
		Frontends: []frontendSpec{
			{Name: "imap", Protocol: "imap", Plaintext: "allow"},
			{Name: "pop3", Protocol: "pop3", Plaintext: "allow"},
			{Name: "submission", Protocol: "submission", Plaintext: "allow"},
		},
		Lab: dovecotlab.Options{SubmissionRelay: sink.Addr(), Passwords: passwords},
	})
	plain := func(user, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	}
	type failed struct{ user, remote string }
	var failures []failed

	// IMAP: LOGIN, AUTHENTICATE PLAIN with SASL-IR (RFC 4959) and after
	// the "+" continuation, and a wrong password.
	imapLogin := func(user, login string, wantOK bool) {
		t.Helper()
		r := greeted(t, e.addrs["imap"])
		switch login {
		case "LOGIN":
			pass := passwords[user]
			if !wantOK {
				pass = wrong
			}
			_, tagged := r.cmd("A", "LOGIN "+user+" "+pass)
			if strings.HasPrefix(tagged, "A OK") != wantOK {
				t.Fatalf("LOGIN %s: got %q, want OK %v", user, tagged, wantOK)
			}
			if !wantOK {
				failures = append(failures, failed{user, r.c.LocalAddr().String()})
			}
		case "SASL-IR":
			if _, tagged := r.cmd("A", "AUTHENTICATE PLAIN "+plain(user, passwords[user])); !strings.HasPrefix(tagged, "A OK") {
				t.Fatalf("AUTHENTICATE PLAIN with SASL-IR as %s: got %q, want OK", user, tagged)
			}
		case "continuation":
			r.send("A AUTHENTICATE PLAIN\r\n")
			if l := r.line(); !strings.HasPrefix(l, "+") {
				t.Fatalf("AUTHENTICATE PLAIN: got %q, want +", l)
			}
			r.send(plain(user, passwords[user]) + "\r\n")
			if _, tagged := r.until("A"); !strings.HasPrefix(tagged, "A OK") {
				t.Fatalf("AUTHENTICATE PLAIN after the continuation as %s: got %q, want OK", user, tagged)
			}
		}
		r.send("Z LOGOUT\r\n")
		r.drain()
	}
	imapLogin("user090", "LOGIN", true)
	imapLogin("user091", "SASL-IR", true)
	imapLogin("user092", "continuation", true)
	imapLogin("user093", "LOGIN", false)

	// POP3: USER/PASS, AUTH PLAIN with an initial response (RFC 5034), and
	// a wrong password.
	p := pop3Greeted(t, e.addrs["pop3"])
	if st := p.userPass("user094", passwords["user094"]); !strings.HasPrefix(st, "+OK") {
		t.Fatalf("USER/PASS as user094: got %q, want +OK", st)
	}
	p.send("QUIT\r\n")
	p.drain()
	p = pop3Greeted(t, e.addrs["pop3"])
	if st := p.authPlain("user095", passwords["user095"]); !strings.HasPrefix(st, "+OK") {
		t.Fatalf("AUTH PLAIN as user095: got %q, want +OK", st)
	}
	p.send("QUIT\r\n")
	p.drain()
	p = pop3Greeted(t, e.addrs["pop3"])
	if st := p.userPass("user094", wrong); strings.HasPrefix(st, "+OK") {
		t.Fatalf("PASS with a wrong password: got %q, want -ERR", st)
	}
	failures = append(failures, failed{"user094", p.c.LocalAddr().String()})
	p.send("QUIT\r\n")
	p.drain()

	// Submission: AUTH PLAIN (go-smtp sends it as an initial response),
	// AUTH LOGIN (the password alone in base64), and a wrong password.
	for _, a := range []struct {
		user string
		mech sasl.Client
		ok   bool
	}{
		{"user096", sasl.NewPlainClient("", "user096", passwords["user096"]), true},
		{"user097", sasl.NewLoginClient("user097", passwords["user097"]), true},
		{"user096", sasl.NewPlainClient("", "user096", wrong), false},
	} {
		nc := dial(t, e.addrs["submission"])
		c := smtp.NewClient(nc)
		if err := c.Auth(a.mech); (err == nil) != a.ok {
			t.Fatalf("AUTH as %s: got %v, want success %v", a.user, err, a.ok)
		}
		if !a.ok {
			failures = append(failures, failed{a.user, nc.LocalAddr().String()})
		}
		c.Quit()
	}

	for _, f := range failures {
		eventually(t, "the login failed line of "+f.user, func() bool {
			for _, l := range strings.Split(e.md.log.String(), "\n") {
				kv := parseLogfmt(l)
				if kv["msg"] == "login failed" && kv["user"] == f.user && kv["remote"] == f.remote && kv["result"] == "rejected" && kv["err"] != "" {
					return true
				}
			}
			return false
		})
	}
	e.md.stop() // every session has ended and written its line
	log := e.md.log.String()
	if !strings.Contains(log, "level=DEBUG") {
		t.Fatal("no debug lines: the test must run at log_level = \"debug\"")
	}
	secrets := map[string]string{wrong: "the wrong password", base64.StdEncoding.EncodeToString([]byte(wrong)): "the wrong password in base64"}
	for _, u := range users {
		pw := passwords[u]
		secrets[pw] = "the password of " + u
		secrets[base64.StdEncoding.EncodeToString([]byte(pw))] = "the password of " + u + " in base64"
		secrets[plain(u, pw)] = "the SASL PLAIN payload of " + u
		secrets[base64.RawStdEncoding.EncodeToString([]byte(pw))] = "the password of " + u + " in unpadded base64"
	}
	secrets[plain("user096", wrong)] = "the SASL PLAIN payload with the wrong password"
	for s, what := range secrets {
		if i := strings.Index(log, s); i >= 0 {
			start := strings.LastIndex(log[:i], "\n") + 1
			end := i + strings.Index(log[i:], "\n")
			t.Errorf("%s (%q) is in the log: %s", what, s, log[start:max(end, i+len(s))])
		}
	}
}
