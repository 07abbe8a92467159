package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// sieveConfig has a managesieve frontend (RFC 5804) on a backend of its
// own; EXTRA is replaced by more frontend keys.
const sieveConfig = `
[frontend.sieve]
protocol = "managesieve"
bind = ["127.0.0.1:4190"]
backend = "dovecot"
EXTRA

[backend.dovecot]
[[backend.dovecot.server]]
name = "mail1"
address = "10.0.0.11"
[[backend.dovecot.server]]
name = "mail2"
address = "10.0.0.12"
ports = { managesieve = 14190 }
`

func TestManageSieveFrontend(t *testing.T) {
	c := mustParse(t, strings.Replace(sieveConfig, "EXTRA", "greeting = \"Sieve ready.\"\nplaintext_login = \"allow\"\nmax_login_attempts = 5\n[frontend.sieve.timeouts]\nlogin = \"1m\"", 1))
	f := c.Frontends["sieve"]
	if f.Protocol != ProtocolManageSieve || f.Greeting != "Sieve ready." || !f.PlaintextAllowed() || f.MaxLoginAttempts != 5 || f.Timeouts.Login.D() != time.Minute {
		t.Errorf("frontend: got %+v", f)
	}
	b := c.Backends["dovecot"]
	// The default check follows the frontends: managesieve, on the
	// servers' ManageSieve port (4190, RFC 5804 section 1.8, unless ports
	// says otherwise).
	if b.Check.Type != CheckTypeManageSieve {
		t.Errorf("check type: got %q, want managesieve", b.Check.Type)
	}
	for i, want := range []string{"10.0.0.11:4190", "10.0.0.12:14190"} {
		if got := b.CheckAddress(b.Servers[i]); got != want {
			t.Errorf("check address of %s: got %s, want %s", b.Servers[i].Name, got, want)
		}
		if got := b.Servers[i].DialAddress(ProtocolManageSieve); got != want {
			t.Errorf("managesieve address of %s: got %s, want %s", b.Servers[i].Name, got, want)
		}
	}
	if b.Servers[0].SendProxy != SendProxyV2SSL {
		t.Errorf("send_proxy: got %q, want v2-ssl (Dovecot's haproxy = yes listener)", b.Servers[0].SendProxy)
	}

	// With an IMAP frontend on the same backend the check stays imap
	// (the existing order), and check type "managesieve" may be chosen.
	imap := "[frontend.imap]\nprotocol = \"imap\"\nbind = [\"127.0.0.1:143\"]\nbackend = \"dovecot\"\n"
	c = mustParse(t, strings.Replace(sieveConfig, "EXTRA", "", 1)+imap)
	if got := c.Backends["dovecot"].Check.Type; got != CheckTypeIMAP {
		t.Errorf("check type with an imap frontend: got %q, want imap", got)
	}
	c = mustParse(t, strings.Replace(sieveConfig, "EXTRA", "", 1)+imap+"[backend.dovecot.check]\ntype = \"managesieve\"\n")
	if got := c.Backends["dovecot"].CheckAddress(c.Backends["dovecot"].Servers[1]); got != "10.0.0.12:14190" {
		t.Errorf("managesieve check address: got %s, want 10.0.0.12:14190", got)
	}
}

func TestManageSieveInvalid(t *testing.T) {
	tests := []struct {
		name, extra, key, msg string
	}{
		{"hostname", `hostname = "mx.example.com"`, "frontend.sieve.hostname", "does nothing for protocol managesieve"},
		{"data timeout", "[frontend.sieve.timeouts]\ndata = \"5m\"", "frontend.sieve.timeouts.data", "does nothing for protocol managesieve"},
		{"nobody can log in", "plaintext_login = \"deny\"", "frontend.sieve.plaintext_login", "nobody can log in"},
		{"max_login_attempts range", "max_login_attempts = 50", "frontend.sieve.max_login_attempts", "range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(strings.Replace(sieveConfig, "EXTRA", tt.extra, 1)))
			msgs := keyErrors(t, err)[tt.key]
			if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, tt.msg) }) {
				t.Errorf("got problems\n%v\nwant %q at %s", err, tt.msg, tt.key)
			}
		})
	}
	text := strings.Replace(sieveConfig, "EXTRA", "", 1)
	_, err := Parse([]byte(strings.Replace(text, "ports = { managesieve = 14190 }", "ports = { sieve = 14190 }", 1)))
	if msgs := keyErrors(t, err)["backend.dovecot.server[1].ports.sieve"]; len(msgs) != 1 || !strings.Contains(msgs[0], "managesieve") {
		t.Errorf("unknown ports key: got %v, want one naming managesieve", err)
	}
}
