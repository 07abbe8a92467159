package integration

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/maildirector/maildirector/internal/dovecotlab"
	"github.com/maildirector/maildirector/tlsutil"
)

// Issue 17: maildirector check --dovecot against the real doveconf -n
// output of the lab's Dovecot: clean for a correct pair, and each mismatch
// found when one setting of either side is broken.

// lintPair writes a maildirector configuration in front of instance in
// (every mail frontend with implicit TLS, so no plaintext login meets
// Dovecot's disable_plaintext_auth) after mdEdit, and the doveconf -n
// output of in's dovecot.conf after dcEdit; it returns their paths.
func lintPair(t *testing.T, in *dovecotlab.Instance, name string, mdEdit, dcEdit func(string) string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	cert, key, err := tlsutil.WriteSelfSigned(dir, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, proto := range []string{"imap", "pop3", "lmtp", "submission"} {
		fmt.Fprintf(&b, "[frontend.%s]\nprotocol = %q\nbind = [\"127.0.0.1:%d\"]\nbackend = \"dovecot\"\n", proto, proto, freePort(t))
		if proto == "imap" {
			b.WriteString("timeouts = { idle = \"30m\" }\n")
		}
		if proto != "lmtp" {
			fmt.Fprintf(&b, "[frontend.%s.tls]\nmode = \"implicit\"\n[[frontend.%s.tls.cert]]\ncert = %q\nkey = %q\n", proto, proto, cert, key)
		}
	}
	p := in.Ports
	fmt.Fprintf(&b, "[backend.dovecot]\nlogin_server_down = \"tempfail\"\n[[backend.dovecot.server]]\nname = %q\naddress = \"127.0.0.1\"\n"+
		"ports = { imap = %d, pop3 = %d, lmtp = %d, submission = %d }\n", in.Name, p.IMAP, p.POP3, p.LMTP, p.Submission)
	md := b.String()
	if mdEdit != nil {
		md = mdEdit(md)
	}
	mdPath := filepath.Join(dir, "maildirector.toml")
	if err := os.WriteFile(mdPath, []byte(md), 0o644); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(in.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	dc := string(conf)
	if dcEdit != nil {
		if dc = dcEdit(dc); dc == string(conf) {
			t.Fatalf("%s: the edit changed nothing in dovecot.conf", name)
		}
	}
	confPath := filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(confPath, []byte(dc), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("doveconf", "-c", confPath, "-n").Output()
	if err != nil {
		t.Fatalf("doveconf -n: %v", err)
	}
	nPath := filepath.Join(dir, "doveconf-n.txt")
	if err := os.WriteFile(nPath, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return mdPath, nPath
}

// runCheck runs maildirector check --dovecot and returns its exit code and
// output.
func runCheck(t *testing.T, md, n string) (int, string) {
	t.Helper()
	cmd := exec.Command(binPath, "check", "-c", md, "--dovecot", n, "--source", "127.0.0.1")
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("check: %v", err)
	return 0, ""
}

func TestCheckDovecotLint(t *testing.T) {
	lab := dovecotlab.StartT(t, dovecotlab.Options{Instances: 1})
	in := lab.Instances[0]
	// ssl = required makes doveconf read a certificate.
	dcCert, dcKey, err := tlsutil.WriteSelfSigned(t.TempDir(), "localhost")
	if err != nil {
		t.Fatal(err)
	}

	md, n := lintPair(t, in, "correct", nil, nil)
	if code, out := runCheck(t, md, n); code != 0 || !strings.Contains(out, "OK: no mismatch with Dovecot 2.3.19") {
		t.Fatalf("correct pair: exit %d:\n%s", code, out)
	}

	sub := regexp.MustCompile(`(?s)(inet_listener submission \{.*?haproxy = )yes`)
	pop3Backend := regexp.MustCompile(`(protocol = "pop3"\nbind = \[[^\]]*\]\n)backend = "dovecot"`)
	replace := func(old, new string) func(string) string {
		return func(s string) string { return strings.Replace(s, old, new, 1) }
	}
	server := func(line string) func(string) string {
		return replace("address = \"127.0.0.1\"\n", "address = \"127.0.0.1\"\n"+line+"\n")
	}
	tests := []struct {
		name        string
		md, dc      func(string) string
		n           int      // mismatches; 0 means 1
		want        []string // in the mismatch lines: the key on both sides
		correctDC   func(string) string
		correctMD   func(string) string
		correctNote string
	}{
		{name: "haproxy_trusted_networks", dc: replace("haproxy_trusted_networks = 127.0.0.0/8 ::1", "haproxy_trusted_networks = 10.0.0.0/8"),
			want: []string{`send_proxy = "v2-ssl" (maildirector connects from 127.0.0.1)`, "haproxy_trusted_networks = 10.0.0.0/8"}},
		{name: "a server port on a plain listener", md: func(s string) string {
			return strings.Replace(s, fmt.Sprintf("imap = %d", in.Ports.IMAP), fmt.Sprintf("imap = %d", in.Ports.IMAPDirect), 1)
		}, want: []string{`send_proxy = "v2-ssl"`, fmt.Sprintf("inet_listener imap-direct { port = %d, haproxy = no", in.Ports.IMAPDirect), "plain listener"}},
		{name: "no PROXY header to haproxy = yes", md: server(`send_proxy = "none"`), n: 4,
			want: []string{`send_proxy = "none"`, fmt.Sprintf("inet_listener imap { port = %d, haproxy = yes", in.Ports.IMAP), "requires a PROXY header"}},
		{name: "send_proxy without SSL TLV and disable_plaintext_auth", md: server(`send_proxy = "v2"`),
			dc:   replace("disable_plaintext_auth = no", "disable_plaintext_auth = yes"),
			want: []string{`send_proxy = "v2"`, "disable_plaintext_auth = yes (Dovecot's default)", "PP2 SSL TLV"}},
		{name: "send_proxy without SSL TLV and ssl = required", md: server(`send_proxy = "v1"`),
			dc:   replace("ssl = no", "ssl = required\nssl_cert = <"+dcCert+"\nssl_key = <"+dcKey),
			want: []string{`send_proxy = "v1"`, "ssl = required (line", "PP2 SSL TLV"}},
		{name: "idle shorter than imap_idle_notify_interval", dc: func(s string) string { return s + "imap_idle_notify_interval = 45 mins\n" },
			want: []string{`frontend.imap.timeouts.idle = "30m0s"`, "imap_idle_notify_interval = 45 mins (line"}},
		{name: "lmtp server_down next without shared storage", md: func(s string) string { return s + "[frontend.lmtp.lmtp]\nserver_down = \"next\"\n" },
			want: []string{`frontend.lmtp.lmtp.server_down = "next"`, "mail_location = maildir:~/Maildir (line"}},
		{name: "login_server_down next without shared storage", md: replace(`login_server_down = "tempfail"`, `login_server_down = "next"`),
			want: []string{`backend.dovecot.login_server_down = "next"`, "mail_nfs_storage = no"}},
		{name: "recipient_delimiter", dc: func(s string) string { return s + "recipient_delimiter = -\n" },
			want: []string{`backend.dovecot.recipient_delimiter = "+"`, "recipient_delimiter = - (line"}},
		{name: "xclient without login_trusted_networks",
			correctDC: func(s string) string {
				return sub.ReplaceAllString(s, "${1}no") + "login_trusted_networks = 127.0.0.0/8\n"
			},
			correctMD: func(s string) string {
				return strings.Replace(s, "backend = \"dovecot\"\n[frontend.submission.tls]", "backend = \"xclient\"\n[frontend.submission.tls]", 1) +
					fmt.Sprintf("[backend.xclient]\nlogin_server_down = \"tempfail\"\n[[backend.xclient.server]]\nname = \"sub\"\naddress = \"127.0.0.1:%d\"\nxclient = true\n", in.Ports.Submission)
			},
			dc:   func(s string) string { return sub.ReplaceAllString(s, "${1}no") },
			want: []string{"backend.xclient.server[0] (sub).xclient = true (maildirector connects from 127.0.0.1)", "login_trusted_networks =  (Dovecot's default)"}},
		// Session correlation: imap and pop3 through a backend of plain
		// listeners with forward = "id"; with maildirector in
		// login_trusted_networks, disable_plaintext_auth = yes is no
		// mismatch (Dovecot counts trusted connections as secured).
		{name: "forward id without login_trusted_networks", n: 2,
			correctMD: func(s string) string {
				s = strings.Replace(s, "backend = \"dovecot\"\ntimeouts", "backend = \"fwd\"\nforward = \"id\"\ntimeouts", 1)
				s = pop3Backend.ReplaceAllString(s, "${1}backend = \"fwd\"\nforward = \"id\"")
				return s + fmt.Sprintf("[backend.fwd]\nlogin_server_down = \"tempfail\"\n[[backend.fwd.server]]\nname = \"plain\"\naddress = \"127.0.0.1\"\nports = { imap = %d, pop3 = %d }\n",
					in.Ports.IMAPDirect, in.Ports.POP3Direct)
			},
			correctDC: replace("disable_plaintext_auth = no", "disable_plaintext_auth = yes\nlogin_trusted_networks = 127.0.0.1/32"),
			dc:        replace("disable_plaintext_auth = no", "disable_plaintext_auth = yes"),
			want: []string{`frontend.imap.forward = "id" toward backend.fwd.server[0] (plain) (maildirector connects from 127.0.0.1)`,
				`frontend.pop3.forward = "id" toward backend.fwd.server[0] (plain)`, "login_trusted_networks =  (Dovecot's default)", "refuses XCLIENT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mdEdit, dcEdit := tt.md, tt.dc
			if tt.correctMD != nil || tt.correctDC != nil {
				// This pair needs its own correct base: check it clean first.
				md, n := lintPair(t, in, "correct", tt.correctMD, tt.correctDC)
				if code, out := runCheck(t, md, n); code != 0 {
					t.Fatalf("its correct pair: exit %d:\n%s", code, out)
				}
				if mdEdit == nil {
					mdEdit = tt.correctMD
				}
			}
			md, n := lintPair(t, in, tt.name, mdEdit, dcEdit)
			code, out := runCheck(t, md, n)
			want := max(tt.n, 1)
			if code != 1 || !strings.Contains(out, fmt.Sprintf(": %d mismatches:", want)) {
				t.Fatalf("exit %d, want 1 and %d mismatches:\n%s", code, want, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("the mismatch does not say %q:\n%s", w, out)
				}
			}
		})
	}
}
