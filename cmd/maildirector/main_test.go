package main

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/director"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const validConfig = `
[frontend.imap]
protocol = "imap"
bind = ["127.0.0.1:1143"]
backend = "dovecot"

[backend.dovecot]
[[backend.dovecot.server]]
name = "mail1"
address = "127.0.0.1:10143"
[[backend.dovecot.server]]
name = "mail2"
address = "127.0.0.1:11143"
`

func TestCheckCommand(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		wantCode int
		wantOut  []string // substrings of stdout (code 0) or stderr (code 1)
	}{
		{
			name: "valid", config: validConfig, wantCode: 0,
			wantOut: []string{"OK", "1 frontend (imap)", "1 backend (dovecot: 2 servers)"},
		},
		{
			name: "valid with http", config: validConfig + `
[frontend.scality]
protocol = "http"
bind = ["127.0.0.1:1081"]
backend = "ring"
[frontend.scality.http]
forwardfor = true
[backend.ring]
[backend.ring.check]
expect_status = "200-399"
[[backend.ring.server]]
name = "r1"
address = "127.0.0.1:81"
`, wantCode: 0,
			wantOut: []string{"OK", "2 frontends (imap, scality)", "ring: 1 server"},
		},
		{
			name: "every problem by key path",
			config: `
[global]
maxconnn = 5
[frontend.imap]
protocol = "imap"
bind = ["127.0.0.1"]
backend = "nowhere"
[frontend.imap2]
protocol = "imap"
bind = ["127.0.0.1:1143", "127.0.0.1:1144"]
backend = "dovecot"
[frontend.imap2.tls]
mode = "implicit"
[[frontend.imap2.tls.cert]]
cert = "/nonexistent/cert.pem"
key = "/nonexistent/key.pem"
[frontend.imap3]
protocol = "imap"
bind = ["127.0.0.1:1144"]
backend = "dovecot"
[frontend.imap3.timeouts]
idle = "5m"
[backend.dovecot]
balance = "fastest"
[[backend.dovecot.server]]
name = "mail1"
address = "127.0.0.1:99999"
`,
			wantCode: 1,
			wantOut: []string{
				"global.maxconnn", // unknown key
				"frontend.imap.bind[0]",
				"frontend.imap.backend",
				"frontend.imap2.tls.cert[0].cert",
				"127.0.0.1:1144", // duplicate bind
				"frontend.imap3.timeouts.idle",
				"backend.dovecot.balance",
				"backend.dovecot.server[0].address",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "maildirector.toml", tt.config)
			var stdout, stderr bytes.Buffer
			code := runMain([]string{"check", "-c", path}, &stdout, &stderr)
			if code != tt.wantCode {
				t.Fatalf("exit code: got %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout.String(), stderr.String())
			}
			out := stdout.String()
			if code != 0 {
				out = stderr.String()
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestWhereCommand: `where` prints the server the director's hash gives
// each user (several users, so both servers show up), with the flags before
// or after the users, without reading TLS keys, and refuses no user.
func TestWhereCommand(t *testing.T) {
	tlsConfig := validConfig + "[frontend.imap.tls]\nmode = \"implicit\"\n[[frontend.imap.tls.cert]]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n"
	path := writeFile(t, "maildirector.toml", tlsConfig)
	cfg, err := config.LoadRouting(path)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := directorOptions(cfg.Backends["dovecot"])
	if err != nil {
		t.Fatal(err)
	}
	d, err := director.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	users := []string{"alice", "bob", "Carol@Example.org", "dave", "erin", "frank", "grace", "heidi"}
	want := map[string]string{}
	servers := map[string]bool{}
	for _, u := range users {
		want[u] = d.HashOrder(u)[0]
		servers[want[u]] = true
	}
	if len(servers) != 2 {
		t.Fatalf("the test users all hash to %v; pick users that spread", servers)
	}
	for _, args := range [][]string{
		append([]string{"where", "-c", path}, users...),
		append(append([]string{"where"}, users...), "-c", path),
	} {
		var stdout, stderr bytes.Buffer
		if code := runMain(args, &stdout, &stderr); code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, stderr.String())
		}
		lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
		if len(lines) != len(users) {
			t.Fatalf("%q: got %d lines, want %d:\n%s", args, len(lines), len(users), stdout.String())
		}
		for i, u := range users {
			if f := strings.Fields(lines[i]); len(f) != 5 || f[0] != u || f[4] != want[u] {
				t.Errorf("%q: line %q, want user %s on server %s", args, lines[i], u, want[u])
			}
		}
	}
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"where", "-c", path}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage") {
		t.Errorf("where without a user: exit %d, stderr %q; want 2 and a usage line", code, stderr.String())
	}
}

func TestVersionAndUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "maildirector ") {
		t.Errorf("version: got %d %q", code, stdout.String())
	}
	stdout.Reset()
	if code := runMain([]string{"bogus"}, &stdout, &stderr); code != 2 {
		t.Errorf("unknown command: got exit %d, want 2", code)
	}
	if code := runMain(nil, &stdout, &stderr); code != 2 {
		t.Errorf("no command: got exit %d, want 2", code)
	}
}

// TestCheckVerdictIsRunVerdict: `check` (the systemd unit's pre-start and
// pre-reload step) accepts exactly the configurations `run` starts with,
// so a check that passes is never followed by a start that fails.
func TestCheckVerdictIsRunVerdict(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bind := ln.Addr().String()
	ln.Close()
	base := strings.Replace(validConfig, "127.0.0.1:1143", bind, 1)
	withCheck := func(lines string) string {
		return base + "[backend.dovecot.check]\n" + lines + "\n"
	}
	tests := []struct {
		name   string
		config string
		ok     bool
	}{
		{name: "valid", config: base, ok: true},
		{name: "imap probe login", config: withCheck("type = \"imap\"\nuser = \"probe\"\npassword = \"x\"\nselect_inbox = true"), ok: true},
		{name: "pop3 check with a login", config: withCheck("type = \"pop3\"\nuser = \"probe\"\npassword = \"x\"")},
		{name: "select_inbox without user", config: withCheck("type = \"imap\"\nselect_inbox = true")},
		{name: "password without user", config: withCheck("type = \"imap\"\npassword = \"x\"")},
		{name: "xclient with a PROXY header", config: strings.Replace(base, "name = \"mail1\"", "name = \"mail1\"\nxclient = true\nsend_proxy = \"v2\"", 1)},
		{name: "missing certificate", config: base + "[frontend.imap.tls]\nmode = \"implicit\"\n[[frontend.imap.tls.cert]]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "maildirector.toml", tt.config)
			var stdout, stderr bytes.Buffer
			checkOK := runMain([]string{"check", "-c", path}, &stdout, &stderr) == 0

			runOK := false
			if cfg, err := config.Load(path); err == nil {
				rt, err := newRuntime(cfg, slog.New(slog.DiscardHandler), "", new(slog.LevelVar), nil)
				if err == nil {
					runOK = true
					rt.shutdown(0)
				}
			}
			if checkOK != runOK || checkOK != tt.ok {
				t.Errorf("check ok = %v, run ok = %v, want both %v; check said: %s%s", checkOK, runOK, tt.ok, stdout.String(), stderr.String())
			}
		})
	}
}
