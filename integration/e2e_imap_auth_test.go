package integration

import (
	"encoding/base64"
	"strings"
	"testing"
)

// TestE2EIMAPAuthenticate logs in through maildirector with AUTHENTICATE
// PLAIN, with an initial response (RFC 4959 SASL-IR) and through the "+"
// continuation (RFC 9051 section 6.2.2), and after an ID command (RFC
// 2971): each login lands on the server the director's hash names, once,
// as a PLAIN login of the right user, and SELECT INBOX works there.
func TestE2EIMAPAuthenticate(t *testing.T) {
	e := startEnv(t, setupSpec{Instances: 3, Frontends: imapFrontends()})
	plain := func(user string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00pass"))
	}
	tests := []struct {
		name  string
		user  string
		login func(t *testing.T, r *rawIMAP, user string)
	}{
		{"SASL-IR", "user030", func(t *testing.T, r *rawIMAP, user string) {
			if _, tagged := r.cmd("A", "AUTHENTICATE PLAIN "+plain(user)); !strings.HasPrefix(tagged, "A OK") {
				t.Fatalf("AUTHENTICATE PLAIN with SASL-IR: got %q, want A OK", tagged)
			}
		}},
		{"continuation", "user031", func(t *testing.T, r *rawIMAP, user string) {
			r.send("A AUTHENTICATE PLAIN\r\n")
			if l := r.line(); !strings.HasPrefix(l, "+") {
				t.Fatalf("AUTHENTICATE PLAIN: got %q, want a + continuation", l)
			}
			r.send(plain(user) + "\r\n")
			if _, tagged := r.until("A"); !strings.HasPrefix(tagged, "A OK") {
				t.Fatalf("AUTHENTICATE PLAIN after the continuation: got %q, want A OK", tagged)
			}
		}},
		{"ID then LOGIN", "user032", func(t *testing.T, r *rawIMAP, user string) {
			untagged, tagged := r.cmd("I", `ID ("name" "e2e-test" "version" "1")`)
			if !strings.HasPrefix(tagged, "I OK") {
				t.Fatalf("ID: got %q, want I OK", tagged)
			}
			if len(untagged) != 1 || !strings.HasPrefix(untagged[0], "* ID ") {
				t.Errorf("ID: got untagged %q, want one * ID line", untagged)
			}
			r.login(user)
		}},
		{"ID then AUTHENTICATE", "user033", func(t *testing.T, r *rawIMAP, user string) {
			if _, tagged := r.cmd("I", "ID NIL"); !strings.HasPrefix(tagged, "I OK") {
				t.Fatalf("ID NIL: got %q, want I OK", tagged)
			}
			if _, tagged := r.cmd("A", "AUTHENTICATE PLAIN "+plain(user)); !strings.HasPrefix(tagged, "A OK") {
				t.Fatalf("AUTHENTICATE PLAIN: got %q, want A OK", tagged)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := greeted(t, e.addrs["imap"])
			tt.login(t, r, tt.user)
			r.selectInbox()
			r.logout()
			server, l := e.landedOnce(t, tt.user)
			if want := e.hashServer(tt.user); server != want {
				t.Errorf("%s landed on %s, want the hashed %s", tt.user, server, want)
			}
			if l.Method != "PLAIN" {
				t.Errorf("Dovecot's login method: got %q, want PLAIN", l.Method)
			}
			if l.RemoteIP != clientIP.String() {
				t.Errorf("rip: got %s, want the client's %s", l.RemoteIP, clientIP)
			}
		})
	}
}
