package integration

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/maildirector/maildirector/internal/dovecotlab"
	"github.com/maildirector/maildirector/internal/nginxlab"
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
// into a configuration maildirector check accepts, with the scality_in
// frontend on the HTTP path. Then the same sample, pointed at three real
// nginx object stores on loopback, runs: a PUT and a GET with the three
// X-Dovecot headers go through the translated configuration to nginx, and
// the access line, sent to the syslog the sample's "log" line names, has
// the captured headers.
func TestImportHAProxySeed(t *testing.T) {
	dir := t.TempDir()
	seedPath := "../internal/haproxycfg/testdata/seed-sample.cfg"
	out := importHAProxy(t, seedPath, filepath.Join(dir, "maildirector.toml"))
	toml, _ := os.ReadFile(out)
	for _, want := range []string{"[frontend.scality_in]\nprotocol = \"http\"\nbind = [\"0.0.0.0:81\", \"[::]:81\"]",
		"[frontend.scality_in.http]", "forwardfor = true", "server_close = true", `{ name = "X-Dovecot-Session-Id", len = 70 }`,
		"keep_alive = \"10m\"", "expect_status = \"200-399\""} {
		if !strings.Contains(string(toml), want) {
			t.Errorf("the translation lacks %q:\n%s", want, toml)
		}
	}
	if res, err := exec.Command(binPath, "check", "-c", out).CombinedOutput(); err != nil {
		t.Fatalf("maildirector check refuses the translation: %v\n%s", err, res)
	}

	// The sample on loopback: its bind, its six servers on three nginx
	// instances, its syslog and stats socket in the test's places. nginx
	// answers OPTIONS (HAProxy's httpchk default) with 405, sproxyd with
	// 200: the check asks GET /health here.
	lab := nginxlab.StartT(t, nginxlab.Options{Instances: 3})
	syslog, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syslog.Close() })
	seed, err := os.ReadFile(seedPath)
	if err != nil {
		t.Fatal(err)
	}
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	edits := []string{
		"bind             :::81", "bind             " + bind,
		"log      127.0.0.1 local2", "log      " + syslog.LocalAddr().String() + " local2",
		"stats    socket /var/lib/haproxy/stats", "stats    socket " + filepath.Join(dir, "ctl.sock"),
		"option          httpchk", "option          httpchk GET /health",
	}
	for i := 1; i <= 6; i++ {
		edits = append(edits, fmt.Sprintf("10.10.10.%d:81", i), lab.Instances[(i-1)%3].Addr)
	}
	local := strings.NewReplacer(edits...).Replace(string(seed))
	for i := 0; i < len(edits); i += 2 {
		if !strings.Contains(string(seed), edits[i]) {
			t.Fatalf("the seed has no %q to point at the test's servers", edits[i])
		}
	}
	hcfg := filepath.Join(dir, "haproxy-local.cfg")
	if err := os.WriteFile(hcfg, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := importHAProxy(t, hcfg, filepath.Join(dir, "local.toml"))
	startProcess(t, cfg, map[string]string{"scality_in": bind})

	body := strings.Repeat("object storage through the translated HAProxy sample\n", 2000)
	src := filepath.Join(dir, "object")
	if err := os.WriteFile(src, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	url := "http://" + bind + "/ring/seed-object"
	hdr := []string{"-H", "X-Dovecot-Reason: Mailbox INBOX: Saving mail", "-H", "X-Dovecot-Username: user000",
		"-H", "X-Dovecot-Session-Id: k3j9x2qa-17:1"}
	curlCode := func(args ...string) (string, string) {
		t.Helper()
		res, err := exec.Command("curl", append(append([]string{"--silent", "--show-error", "--max-time", "30", "-w", "\n%{http_code}"}, hdr...), args...)...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		s := string(res)
		i := strings.LastIndexByte(s, '\n')
		return s[:i], s[i+1:]
	}
	if _, code := curlCode("-T", src, url); code != "201" && code != "204" {
		t.Fatalf("PUT through the translation: status %s, want 201 or 204", code)
	}
	got, code := curlCode(url)
	if code != "200" || got != body {
		t.Fatalf("GET through the translation: status %s, %d bytes; want 200 and the %d bytes put", code, len(got), len(body))
	}
	// nginx has it: straight from one of the object stores.
	if direct, err := exec.Command("curl", "--silent", "--fail", "http://"+lab.Instances[2].Addr+"/ring/seed-object").Output(); err != nil || string(direct) != body {
		t.Errorf("GET from nginx itself: %v, %d bytes; want the object", err, len(direct))
	}

	// The access line (syslog, as the sample's "log" line says) with the
	// captures of lines 39 to 41.
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(15 * time.Second)
	found := false
	for !found && time.Now().Before(deadline) {
		syslog.SetReadDeadline(deadline)
		n, _, err := syslog.ReadFrom(buf)
		if err != nil {
			break
		}
		line := string(buf[:n])
		found = strings.Contains(line, `msg="http request"`) && strings.Contains(line, "method=GET") &&
			strings.Contains(line, `hdr.X-Dovecot-Reason="Mailbox INBOX: Saving mail"`) && strings.Contains(line, "hdr.X-Dovecot-Session-Id=k3j9x2qa-17:1")
	}
	if !found {
		t.Errorf("no access line of the GET with the captured X-Dovecot headers reached the syslog at %s", syslog.LocalAddr())
	}
}

// importHAProxy runs import-haproxy on hcfg into out and returns out.
func importHAProxy(t *testing.T, hcfg, out string) string {
	t.Helper()
	imp := exec.Command(binPath, "import-haproxy", "-o", out, hcfg)
	imp.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	if msgs, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("import-haproxy %s: %v\n%s", hcfg, err, msgs)
	}
	return out
}
