package doveconf

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/maildirector/maildirector/config"
)

// labN is the shape of `doveconf -n` for a lab instance (Dovecot 2.3.19).
const labN = `# 2.3.19.1 (9b53102964): /tmp/dovecotlab/dovecot1/dovecot.conf
# Pigeonhole version 0.5.19 (4eae2f79)
disable_plaintext_auth = no
haproxy_trusted_networks = 127.0.0.0/8 ::1
listen = 127.0.0.1
mail_location = maildir:~/Maildir
passdb {
  args = /tmp/users
  driver = passwd-file
}
protocols = imap pop3 lmtp submission
service imap-login {
  inet_listener imap-direct {
    address = 127.0.0.1
    port = 10144
  }
  inet_listener imap {
    address = 127.0.0.1
    haproxy = yes
    port = 10143
  }
  inet_listener imaps {
    port = 0
  }
}
service lmtp {
  inet_listener lmtp {
    haproxy = yes
    port = 10024
  }
  unix_listener lmtp {
    mode = 0600
  }
}
service submission-login {
  inet_listener submission {
    port = 10587
  }
}
ssl = no
protocol lmtp {
  mail_plugins = " quota"
}
`

func mustParse(t *testing.T, text string) *Conf {
	t.Helper()
	c, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestParse(t *testing.T) {
	c := mustParse(t, labN)
	if c.Version != "2.3.19.1" {
		t.Errorf("version: got %q", c.Version)
	}
	if v, ok := c.Get("haproxy_trusted_networks", "imap"); !ok || v.Value != "127.0.0.0/8 ::1" || v.Line != 4 {
		t.Errorf("haproxy_trusted_networks: got %+v %v", v, ok)
	}
	if v, ok := c.Get("mail_plugins", "lmtp"); !ok || v.Value != " quota" {
		t.Errorf("protocol lmtp { mail_plugins }: got %+v %v, want \" quota\" unquoted", v, ok)
	}
	if _, ok := c.Get("mail_plugins", "imap"); ok {
		t.Error("mail_plugins for imap: got a value from protocol lmtp")
	}
	l := c.Root.Child("service", "imap-login").Child("inet_listener", "imap")
	if l == nil || l.Settings["haproxy"].Value != "yes" || l.Settings["port"].Value != "10143" {
		t.Errorf("imap listener: got %+v", l)
	}
	for _, bad := range []string{"}\n", "service x {\n", "a b c {\n}\n", "just words\n", "service a {\n" + strings.Repeat("x {\n", MaxDepth+1)} {
		if _, err := Parse(strings.NewReader(bad)); err == nil {
			t.Errorf("Parse(%q): got no error", bad)
		}
	}
}

// labConfig is maildirector in front of labN, correctly paired.
func labConfig(t *testing.T, edit func(string) string) *config.Config {
	t.Helper()
	text := `
[frontend.imap]
protocol = "imap"
bind = ["127.0.0.1:1143"]
backend = "dovecot"
[frontend.lmtp]
protocol = "lmtp"
bind = ["127.0.0.1:1024"]
backend = "dovecot"
[backend.dovecot]
login_server_down = "tempfail"
[[backend.dovecot.server]]
name = "mail1"
address = "127.0.0.1"
ports = { imap = 10143, lmtp = 10024 }
`
	if edit != nil {
		text = edit(text)
	}
	c, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var loopback = LintOptions{Source: func(string, int) (netip.Addr, error) { return netip.MustParseAddr("127.0.0.1"), nil }}

// TestLint: a correct pair is clean; breaking one setting on either side
// gives that one mismatch, with the key on both sides.
func TestLint(t *testing.T) {
	if f, notes := Lint(labConfig(t, nil), mustParse(t, labN), loopback); len(f) != 0 || len(notes) != 0 {
		t.Fatalf("correct pair: got %v, notes %v; want no mismatch and no note", f, notes)
	}
	nfs := strings.Replace(labN, "ssl = no", "ssl = no\nmail_nfs_storage = yes", 1)
	next := func(s string) string {
		return strings.Replace(s, `login_server_down = "tempfail"`, "", 1) + "[frontend.lmtp.lmtp]\nserver_down = \"next\"\n"
	}
	if f, _ := Lint(labConfig(t, next), mustParse(t, nfs), loopback); len(f) != 0 {
		t.Errorf("next with shared storage (mail_nfs_storage = yes): got %v, want no mismatch", f)
	}
	tests := []struct {
		name         string
		md           func(string) string // edit of the maildirector configuration
		implicitTLS  bool                // the imap frontend terminates TLS (its certificates are not read)
		n            int                 // findings expected; 0 means 1
		dovecot      func(string) string // edit of the doveconf output
		key, dc, why string              // substrings of the one finding
	}{
		{name: "trusted networks", dovecot: func(s string) string {
			return strings.Replace(s, "haproxy_trusted_networks = 127.0.0.0/8 ::1", "haproxy_trusted_networks = 10.0.0.0/8", 1)
		}, key: "send_proxy = \"v2-ssl\" (maildirector connects from 127.0.0.1)", dc: "haproxy_trusted_networks = 10.0.0.0/8 (line 4)", why: "refuses PROXY headers"},
		{name: "trusted networks default", dovecot: func(s string) string {
			return strings.Replace(s, "haproxy_trusted_networks = 127.0.0.0/8 ::1\n", "", 1)
		}, key: "connects from 127.0.0.1", dc: "haproxy_trusted_networks =  (Dovecot's default)", why: "refuses PROXY headers"},
		{name: "PROXY to a plain listener", md: func(s string) string { return strings.Replace(s, "imap = 10143", "imap = 10144", 1) },
			key: "server[0] (mail1).send_proxy = \"v2-ssl\"", dc: "inet_listener imap-direct { port = 10144, haproxy = no", why: "plain listener"},
		{name: "no PROXY to a haproxy listener", md: func(s string) string {
			return strings.Replace(s, "address = \"127.0.0.1\"", "address = \"127.0.0.1\"\nsend_proxy = \"none\"", 1)
		}, key: "send_proxy = \"none\"", dc: "inet_listener imap { port = 10143, haproxy = yes", why: "requires a PROXY header", n: 2}, // and the lmtp listener
		{name: "no listener", md: func(s string) string { return strings.Replace(s, "imap = 10143", "imap = 10993", 1) },
			key: "ports.imap: port 10993", dc: "no inet_listener with port 10993 (service imap-login has: imap 10143, imap-direct 10144)", why: "cannot reach"},
		{name: "plaintext auth without the SSL TLV", implicitTLS: true, md: func(s string) string {
			return strings.Replace(s, "address = \"127.0.0.1\"", "address = \"127.0.0.1\"\nsend_proxy = \"v2\"", 1)
		}, dovecot: func(s string) string {
			return strings.Replace(s, "disable_plaintext_auth = no\n", "", 1)
		}, key: "send_proxy = \"v2\"", dc: "disable_plaintext_auth = yes (Dovecot's default)", why: "PP2 SSL TLV"},
		{name: "ssl required", implicitTLS: true, md: func(s string) string {
			return strings.Replace(s, "address = \"127.0.0.1\"", "address = \"127.0.0.1\"\nsend_proxy = \"v1\"", 1)
		}, dovecot: func(s string) string { return strings.Replace(s, "ssl = no", "ssl = required", 1) },
			key: "send_proxy = \"v1\"", dc: "ssl = required (line", why: "PP2 SSL TLV"},
		{name: "idle shorter than Dovecot's IDLE notify", dovecot: func(s string) string {
			return s + "protocol imap {\n  imap_idle_notify_interval = 2 hours\n}\n"
		}, key: "frontend.imap.timeouts.idle = \"1h0m0s\"", dc: "imap_idle_notify_interval = 2 hours (protocol imap, line", why: "ends IDLE sessions"},
		{name: "lmtp next without shared storage", md: func(s string) string { return s + "[frontend.lmtp.lmtp]\nserver_down = \"next\"\n" },
			key: "frontend.lmtp.lmtp.server_down = \"next\"", dc: "mail_location = maildir:~/Maildir (line 6), mail_nfs_storage = no", why: "does not hold the mailbox"},
		{name: "login next without shared storage", md: func(s string) string { return strings.Replace(s, `login_server_down = "tempfail"`, "", 1) },
			key: "backend.dovecot.login_server_down = \"next\"", dc: "no shared storage", why: "sees it empty"},
		{name: "recipient delimiter", dovecot: func(s string) string { return "recipient_delimiter = -\n" + s },
			key: "backend.dovecot.recipient_delimiter = \"+\"", dc: "recipient_delimiter = - (line 1)", why: "two servers"},
		{name: "master user separator", md: func(s string) string {
			return strings.Replace(s, `login_server_down = "tempfail"`, "login_server_down = \"tempfail\"\nmaster_user_separator = \"*\"", 1)
		}, key: "master_user_separator = \"*\"", dc: "auth_master_user_separator =  (Dovecot's default)", why: "master user"},
		{name: "protocol not served", dovecot: func(s string) string {
			return strings.Replace(s, "protocols = imap pop3 lmtp submission", "protocols = imap pop3 submission", 1)
		}, key: "frontends of protocol lmtp", dc: "protocols = imap pop3 submission", why: "does not serve lmtp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dc := labN
			if tt.dovecot != nil {
				dc = tt.dovecot(dc)
			}
			c := labConfig(t, tt.md)
			if tt.implicitTLS {
				c.Frontends["imap"].TLS.Mode = config.TLSModeImplicit
			}
			findings, _ := Lint(c, mustParse(t, dc), loopback)
			if want := max(tt.n, 1); len(findings) != want {
				t.Fatalf("got %d findings, want %d:\n%v", len(findings), want, findings)
			}
			f := findings[0]
			if !strings.Contains(f.Key, tt.key) || !strings.Contains(f.Dovecot, tt.dc) || !strings.Contains(f.Why, tt.why) {
				t.Errorf("got %s\nwant key %q, dovecot %q, why %q", f, tt.key, tt.dc, tt.why)
			}
		})
	}
}

// TestLintXClient: a submission server with xclient needs maildirector's
// address in login_trusted_networks.
func TestLintXClient(t *testing.T) {
	md := func(s string) string {
		return s + `
[frontend.sub]
protocol = "submission"
bind = ["127.0.0.1:1587"]
backend = "sub"
[frontend.sub.tls]
mode = "none"
[backend.sub]
login_server_down = "tempfail"
[[backend.sub.server]]
name = "mail1"
address = "127.0.0.1:10587"
xclient = true
`
	}
	dc := strings.Replace(labN, "disable_plaintext_auth = no", "disable_plaintext_auth = no\nlogin_trusted_networks = 127.0.0.1", 1)
	if f, _ := Lint(labConfig(t, md), mustParse(t, dc), loopback); len(f) != 0 {
		t.Fatalf("trusted: got %v, want none", f)
	}
	f, _ := Lint(labConfig(t, md), mustParse(t, labN), loopback)
	if len(f) != 1 || !strings.Contains(f[0].Key, "server[0] (mail1).xclient = true") || !strings.Contains(f[0].Dovecot, "login_trusted_networks") {
		t.Errorf("untrusted: got %v, want the xclient finding", f)
	}
}

// TestLintForwardID: the servers of a forward = "id" frontend need
// maildirector's address in login_trusted_networks (the integration test
// shows disable_plaintext_auth = yes is no mismatch for them then).
func TestLintForwardID(t *testing.T) {
	md := func(s string) string {
		return s + `
[frontend.pop3]
protocol = "pop3"
bind = ["127.0.0.1:1110"]
backend = "fwd"
forward = "id"
[frontend.imapid]
protocol = "imap"
bind = ["127.0.0.1:2143"]
backend = "fwd"
forward = "id"
timeouts = { idle = "30m" }
[backend.fwd]
login_server_down = "tempfail"
[[backend.fwd.server]]
name = "mail1"
address = "127.0.0.1"
ports = { imap = 10144, pop3 = 110 }
`
	}
	trusted := strings.Replace(labN, "listen = ", "login_trusted_networks = 127.0.0.1/32\nlisten = ", 1)
	if f, _ := Lint(labConfig(t, md), mustParse(t, trusted), loopback); len(f) != 0 {
		t.Fatalf("trusted: got %v, want none", f)
	}
	f, _ := Lint(labConfig(t, md), mustParse(t, labN), loopback)
	if len(f) != 2 {
		t.Fatalf("untrusted: got %d findings %v, want 2 (imap and pop3)", len(f), f)
	}
	for i, want := range []string{`frontend.imapid.forward = "id" toward backend.fwd.server[0] (mail1)`, `frontend.pop3.forward = "id" toward backend.fwd.server[0] (mail1)`} {
		if !strings.Contains(f[i].Key, want) || !strings.Contains(f[i].Dovecot, "login_trusted_networks =  (Dovecot's default)") {
			t.Errorf("untrusted [%d]: got %s, want key %q and login_trusted_networks", i, f[i], want)
		}
	}
	if !strings.Contains(f[1].Why, "refuses XCLIENT") {
		t.Errorf("untrusted pop3: got %q, want XCLIENT refused", f[1].Why)
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]string{"2 mins": "2m0s", "1 hour": "1h0m0s", "30": "30s", "45 min": "45m0s", "1 weeks": "168h0m0s", "500 ms": "500ms"} {
		if d, err := parseTime(in); err != nil || d.String() != want {
			t.Errorf("parseTime(%q): got %v %v, want %s", in, d, err, want)
		}
	}
	if _, err := parseTime("soon"); err == nil {
		t.Error("parseTime(soon): got no error")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(labN)
	f.Add("a = b\nx {\n  y = \"z\"\n}\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Parse(strings.NewReader(text))
		if err != nil {
			return
		}
		var walk func(s *Section, depth int)
		walk = func(s *Section, depth int) {
			if depth > MaxDepth+1 {
				t.Fatalf("nested %d deep", depth)
			}
			for k := range s.Settings {
				if k == "" || strings.ContainsAny(k, " {}") {
					t.Fatalf("bad key %q", k)
				}
			}
			for _, ch := range s.Children {
				walk(ch, depth+1)
			}
		}
		walk(c.Root, 0)
		_, _ = Lint(&config.Config{}, c, loopback)
	})
}
