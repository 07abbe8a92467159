package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

// Issue 17, "Migration without churn": an HAProxy in front of Dovecot, as
// the lab would have one, translated by import-haproxy and run.

// labHAProxyConfig is an HAProxy configuration in front of the lab: one
// mode tcp frontend per mail protocol (on ports that are no mail ports, so
// the protocol comes from the names), leastconn backends whose servers get
// a PROXY v2 header on the instances' haproxy = yes listeners, health
// checks, a backup, and the admin socket.
func labHAProxyConfig(lab *dovecotlab.Lab, sock string, binds map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global
    maxconn 4000
    stats socket %s mode 600 level admin

defaults
    mode tcp
    option tcplog
    option redispatch
    retries 2
    timeout connect 5s
    timeout client 1m
    timeout server 1m
    timeout check 2s
    default-server inter 1s rise 2 fall 2
`, sock)
	for _, proto := range []string{"imap", "pop3", "lmtp", "submission"} {
		fmt.Fprintf(&b, "\nfrontend %s\n    bind %s\n    default_backend dovecot_%s\n", proto, binds[proto], proto)
	}
	for _, proto := range []string{"imap", "pop3", "lmtp", "submission"} {
		fmt.Fprintf(&b, "\nbackend dovecot_%s\n    balance leastconn\n    option allbackups\n", proto)
		for i, in := range lab.Instances {
			port := map[string]int{"imap": in.Ports.IMAP, "pop3": in.Ports.POP3, "lmtp": in.Ports.LMTP, "submission": in.Ports.Submission}[proto]
			backup := ""
			if i == len(lab.Instances)-1 {
				backup = " backup"
			}
			fmt.Fprintf(&b, "    server %s 127.0.0.1:%d check send-proxy-v2%s\n", in.Name, port, backup)
		}
	}
	return b.String()
}

// TestImportHAProxyLab: the lab-style HAProxy configuration (which HAProxy
// itself accepts) translates into a configuration maildirector check
// accepts, and IMAP, POP3 and LMTP sessions through the translated
// configuration reach Dovecot; the translated control socket answers.
func TestImportHAProxyLab(t *testing.T) {
	lab := dovecotlab.StartT(t, dovecotlab.Options{Instances: 2})
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	binds := map[string]string{}
	for _, proto := range []string{"imap", "pop3", "lmtp", "submission"} {
		binds[proto] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	}
	hcfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(hcfg, []byte(labHAProxyConfig(lab, sock, binds)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("haproxy", "-c", "-f", hcfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c refuses the input configuration: %v\n%s", err, out)
	}

	out := filepath.Join(dir, "maildirector.toml")
	imp := exec.Command(binPath, "import-haproxy", "-o", out, hcfg)
	imp.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	msgs, err := imp.CombinedOutput()
	t.Logf("import-haproxy:\n%s", msgs)
	if err != nil {
		t.Fatalf("import-haproxy: %v", err)
	}
	toml, _ := os.ReadFile(out)
	t.Logf("translation:\n%s", toml)
	// The lines it names: the IMAP idle timeout raised for IDLE, STARTTLS
	// that Dovecot offered behind HAProxy; nothing else.
	for _, want := range []string{"timeout client 1m: 1m: maildirector's idle timeout for IMAP", "Dovecot itself offered STARTTLS"} {
		if !strings.Contains(string(msgs), want) {
			t.Errorf("import-haproxy does not say %q", want)
		}
	}
	if n := len(regexp.MustCompile(regexp.QuoteMeta(hcfg)+`:\d+: `).FindAllIndex(msgs, -1)); n != 4 { // idle (imap), STARTTLS (imap, pop3, submission)
		t.Errorf("import-haproxy named %d lines, want 4:\n%s", n, msgs)
	}
	if res, err := exec.Command(binPath, "check", "-c", out).CombinedOutput(); err != nil {
		t.Fatalf("maildirector check refuses the translation: %v\n%s", err, res)
	}

	addrs := map[string]string{"imap": binds["imap"], "pop3": binds["pop3"], "lmtp": binds["lmtp"], "submission": binds["submission"]}
	startProcess(t, out, addrs)
	e := &env{t: t, lab: lab}

	r := greeted(t, binds["imap"])
	r.login("user000")
	r.selectInbox()
	r.logout()
	if server, l := e.landedOnce(t, "user000"); server == "" || l.RemoteIP != clientIP.String() {
		t.Errorf("IMAP: got a login on %q from %s, want one from %s (the PROXY v2 header)", server, l.RemoteIP, clientIP)
	}

	p := pop3Greeted(t, binds["pop3"])
	p.login("user001")
	p.quit()
	eventually(t, "user001's POP3 login at Dovecot", func() bool { return len(e.loginLines("user001")) == 1 })

	m := lmtpDial(t, binds["lmtp"])
	replies, err := m.send("sender@example.org", []string{"user002@lab.test"}, lmtpMessage("haproxy-import", 512))
	if err != nil || len(replies) != 1 || replies[0].Code != 250 {
		t.Fatalf("LMTP through the translation: %v %v, want one 250", replies, err)
	}
	m.close()
	delivered := 0
	for _, in := range lab.Instances {
		files, err := in.MaildirFiles("user002")
		if err != nil {
			t.Fatal(err)
		}
		delivered += len(files)
	}
	if delivered != 1 {
		t.Errorf("LMTP: %d messages in user002's maildirs, want 1", delivered)
	}

	res, err := runCtl(sock, nil, "show", "servers")
	if err != nil || res.code != 0 || !strings.Contains(res.stdout, "dovecot_imap") {
		t.Errorf("ctl on the translated stats socket: %v %+v", err, res)
	}
}

// TestImportHAProxySeed: the seed's sample configuration (Dovecot's HAProxy
// page: HAProxy between Dovecot and Scality sproxyd, mode http) translates
// into a configuration maildirector check accepts, naming the lines it
// cannot carry without the HTTP path.
func TestImportHAProxySeed(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "maildirector.toml")
	seed := "../internal/haproxycfg/testdata/seed-sample.cfg"
	imp := exec.Command(binPath, "import-haproxy", "-o", out, seed)
	imp.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	msgs, err := imp.CombinedOutput()
	if err != nil {
		t.Fatalf("import-haproxy: %v\n%s", err, msgs)
	}
	if !strings.Contains(string(msgs), "capture request header X-Dovecot-Session-Id len 70: not translated: the HTTP path") {
		t.Errorf("import-haproxy does not name the header capture:\n%s", msgs)
	}
	if res, err := exec.Command(binPath, "check", "-c", out).CombinedOutput(); err != nil {
		t.Fatalf("maildirector check refuses the translation: %v\n%s", err, res)
	}
}
