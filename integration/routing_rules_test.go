package integration

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maildirector/maildirector/internal/dovecotlab"
	"github.com/maildirector/maildirector/internal/smtpsink"
	"github.com/maildirector/maildirector/stats"
	"github.com/maildirector/maildirector/tlsutil"
)

// routesEnv is one maildirector in front of two Dovecot clusters of two
// servers each, backends mail-a and mail-b, whose servers have the same
// names (s1, s2) in both: the frontends send a.test users to mail-a (their
// default) and b.test users to mail-b (a domain rule); the imap frontend
// also by SNI (imap.b.test) and by the second of its two ports.
type routesEnv struct {
	t        *testing.T
	clusters map[string]*dovecotlab.Lab // by backend name
	addrs    map[string]string          // frontend (imap2: imap's second port) → address
	cfg      string
	sock     string
	md       *process
}

func startRoutesEnv(t *testing.T) *routesEnv {
	t.Helper()
	sink, err := smtpsink.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	dir := t.TempDir()
	e := &routesEnv{t: t, clusters: map[string]*dovecotlab.Lab{}, addrs: map[string]string{}, sock: filepath.Join(dir, "ctl.sock")}
	for _, name := range []string{"mail-a", "mail-b"} {
		e.clusters[name] = dovecotlab.StartT(t, dovecotlab.Options{Instances: 2, SubmissionRelay: sink.Addr(), ManageSieve: true})
	}
	cert, key, err := tlsutil.WriteSelfSigned(dir, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"imap", "imap2", "pop3", "submission", "lmtp", "sieve"} {
		e.addrs[name] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	}
	port2 := e.addrs["imap2"][strings.LastIndexByte(e.addrs["imap2"], ':'):]
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\nlog_level = \"debug\"\nshutdown_grace = \"2s\"\n[global.limits]\n%s\n[control]\nsocket = %q\n\n", noLimits, e.sock)
	fmt.Fprintf(&b, `[frontend.imap]
protocol = "imap"
bind = [%q, %q]
backend = "mail-a"
plaintext_login = "allow"
[frontend.imap.tls]
mode = "starttls"
[[frontend.imap.tls.cert]]
cert = %q
key = %q
[[frontend.imap.route]]
backend = "mail-b"
domain = ["b.test", "*.b.test"]
[[frontend.imap.route]]
backend = "mail-b"
sni = ["imap.b.test"]
[[frontend.imap.route]]
backend = "mail-b"
local = [%q]

`, e.addrs["imap"], e.addrs["imap2"], cert, key, port2)
	for _, fe := range []struct{ name, protocol, extra string }{
		{"pop3", "pop3", ""},
		{"submission", "submission", "hostname = \"mx.test\"\n"},
		{"lmtp", "lmtp", "hostname = \"mx.test\"\n"},
		{"sieve", "managesieve", fmt.Sprintf("[frontend.sieve.tls]\nmode = \"starttls\"\n[[frontend.sieve.tls.cert]]\ncert = %q\nkey = %q\n", cert, key)},
	} {
		fmt.Fprintf(&b, "[frontend.%s]\nprotocol = %q\nbind = [%q]\nbackend = \"mail-a\"\n%s[[frontend.%s.route]]\nbackend = \"mail-b\"\ndomain = [\"b.test\"]\n\n",
			fe.name, fe.protocol, e.addrs[fe.name], fe.extra, fe.name)
	}
	for _, name := range []string{"mail-a", "mail-b"} {
		fmt.Fprintf(&b, "[backend.%s]\nbalance = \"user\"\n[backend.%s.check]\ntype = \"tcp\"\ninter = \"500ms\"\n", name, name)
		for i, in := range e.clusters[name].Instances {
			p := in.Ports
			fmt.Fprintf(&b, "[[backend.%s.server]]\nname = \"s%d\"\naddress = \"127.0.0.1\"\nsend_proxy = \"v2-ssl\"\n", name, i+1)
			fmt.Fprintf(&b, "ports = { imap = %d, pop3 = %d, lmtp = %d, submission = %d, managesieve = %d }\n", p.IMAP, p.POP3, p.LMTP, p.Submission, p.ManageSieve)
		}
		b.WriteString("\n")
	}
	e.cfg = filepath.Join(dir, "maildirector.toml")
	if err := os.WriteFile(e.cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	e.md = startProcess(t, e.cfg, e.addrs)
	return e
}

// logins counts user's logins (as Dovecot names the user: without the
// domain) on each server, "BACKEND/sN", logged by service.
func (e *routesEnv) logins(t *testing.T, service, user string) map[string]int {
	t.Helper()
	user, _, _ = strings.Cut(user, "@")
	out := map[string]int{}
	for name, lab := range e.clusters {
		for i, in := range lab.Instances {
			ls, err := in.Logins()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range ls {
				if l.User == user && l.Service == service {
					out[fmt.Sprintf("%s/s%d", name, i+1)]++
				}
			}
		}
	}
	return out
}

// landedIn checks that user logged in once through service, on a server
// of backend only.
func (e *routesEnv) landedIn(t *testing.T, service, user, backend string) {
	t.Helper()
	var got map[string]int
	total := 0
	for range 50 { // the login line may trail the client's OK a little
		got, total = e.logins(t, service, user), 0
		for _, n := range got {
			total += n
		}
		if total > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for srv, n := range got {
		if !strings.HasPrefix(srv, backend+"/") || total != 1 {
			t.Errorf("%s %s: logins %v, want one on a server of %s (n=%d)", service, user, got, backend, n)
			return
		}
	}
	if total == 0 {
		t.Errorf("%s %s: no login logged, want one on %s", service, user, backend)
	}
}

// imapLogin logs user in on addr (sni: after STARTTLS with that SNI name;
// "" stays in plaintext) and logs out.
func (e *routesEnv) imapLogin(t *testing.T, addr, sni, user string) {
	t.Helper()
	r := greeted(t, addr)
	if sni != "" {
		if _, tagged := r.cmd("S", "STARTTLS"); !strings.HasPrefix(tagged, "S OK") {
			t.Fatalf("STARTTLS: got %q", tagged)
		}
		tc := tls.Client(r.c, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS with SNI %s: %v", sni, err)
		}
		r.c, r.r = tc, bufio.NewReader(tc)
	}
	r.login(user)
	r.logout()
}

// TestRoutingRules: two Dovecot clusters behind one maildirector; users of
// a.test land only in mail-a's servers and users of b.test only in
// mail-b's, over IMAP, POP3, submission, ManageSieve (sieve-connect) and
// LMTP (one LMTP transaction
// with recipients of both domains stores each message in its recipient's
// cluster), an a.test user asking for imap.b.test by SNI after STARTTLS,
// or connecting to the imap frontend's second port, lands in mail-b; the
// sessions are attributed to the backend they went to, and where/ctl
// where name the rule.
func TestRoutingRules(t *testing.T) {
	e := startRoutesEnv(t)

	t.Run("imap by domain", func(t *testing.T) {
		e.imapLogin(t, e.addrs["imap"], "", "user001@a.test")
		e.landedIn(t, "imap-login", "user001", "mail-a")
		e.imapLogin(t, e.addrs["imap"], "", "user002@b.test")
		e.landedIn(t, "imap-login", "user002", "mail-b")
	})
	t.Run("imap by sni", func(t *testing.T) {
		e.imapLogin(t, e.addrs["imap"], "imap.b.test", "user003@a.test")
		e.landedIn(t, "imap-login", "user003", "mail-b")
		e.imapLogin(t, e.addrs["imap"], "imap.a.test", "user004@a.test")
		e.landedIn(t, "imap-login", "user004", "mail-a")
	})
	t.Run("imap by local port", func(t *testing.T) {
		e.imapLogin(t, e.addrs["imap2"], "", "user005@a.test")
		e.landedIn(t, "imap-login", "user005", "mail-b")
	})
	t.Run("pop3", func(t *testing.T) {
		for _, u := range []struct{ user, backend string }{{"user010@a.test", "mail-a"}, {"user011@b.test", "mail-b"}} {
			p := pop3Greeted(t, e.addrs["pop3"])
			p.login(u.user)
			p.quit()
			e.landedIn(t, "pop3-login", u.user, u.backend)
		}
	})
	t.Run("submission", func(t *testing.T) {
		for _, u := range []struct{ user, backend string }{{"user020@a.test", "mail-a"}, {"user021@b.test", "mail-b"}} {
			c := submissionClient(t, e.addrs["submission"])
			submissionAuth(t, c, "PLAIN", u.user)
			c.Quit()
			e.landedIn(t, "submission-login", u.user, u.backend)
		}
	})
	t.Run("managesieve", func(t *testing.T) {
		for _, u := range []struct{ user, backend string }{{"user060@a.test", "mail-a"}, {"user061@b.test", "mail-b"}} {
			sieveConnect(t, e.addrs["sieve"], u.user, "--list")
			e.landedIn(t, "managesieve-login", u.user, u.backend)
		}
	})
	t.Run("lmtp", func(t *testing.T) {
		rcpts := map[string]string{"user030@a.test": "mail-a", "user031@b.test": "mail-b", "user032@a.test": "mail-a", "user033@b.test": "mail-b"}
		list := []string{"user030@a.test", "user031@b.test", "user032@a.test", "user033@b.test"}
		m := lmtpDial(t, e.addrs["lmtp"])
		replies, err := m.send("mta@example.org", list, lmtpMessage("routed", 0))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range replies {
			if r.Code != 250 {
				t.Errorf("%v, want 250", r)
			}
		}
		for _, rcpt := range list {
			user, _, _ := strings.Cut(rcpt, "@")
			var where []string
			for name, lab := range e.clusters {
				for i, in := range lab.Instances {
					files, err := in.MaildirFiles(user)
					if err != nil {
						t.Fatal(err)
					}
					for range files {
						where = append(where, fmt.Sprintf("%s/s%d", name, i+1))
					}
				}
			}
			if len(where) != 1 || !strings.HasPrefix(where[0], rcpts[rcpt]+"/") {
				t.Errorf("<%s>: messages on %v, want one on a server of %s", rcpt, where, rcpts[rcpt])
			}
		}
	})
	t.Run("sessions carry their backend", func(t *testing.T) {
		r := greeted(t, e.addrs["imap"])
		r.login("user040@b.test")
		defer func() {
			r.logout()
			// The session's line names the backend it went to; the LMTP
			// transaction's, both.
			want := map[string]string{"user040@b.test": "mail-b", "user030@a.test,user031@b.test,user032@a.test,user033@b.test": "mail-a,mail-b"}
			eventually(t, "the session lines with their backends", func() bool {
				for _, l := range strings.Split(e.md.log.String(), "\n") {
					if kv := parseLogfmt(l); kv["msg"] == "session" && want[kv["user"]] == kv["backend"] {
						delete(want, kv["user"])
					}
				}
				return len(want) == 0
			})
		}()
		res, err := runCtl(e.sock, nil, "--json", "show", "sessions")
		if err != nil || res.code != 0 {
			t.Fatalf("ctl show sessions: %v %+v", err, res)
		}
		var sessions []stats.Session
		if err := json.Unmarshal([]byte(res.stdout), &sessions); err != nil {
			t.Fatalf("%v: %q", err, res.stdout)
		}
		found := false
		for _, s := range sessions {
			if strings.HasPrefix(s.User, "user040") {
				found = true
				if s.Backend != "mail-b" || s.Frontend != "imap" {
					t.Errorf("session %+v: backend %q, want mail-b (not the frontend's mail-a)", s, s.Backend)
				}
			}
		}
		if !found {
			t.Errorf("no session of user040 in %q", res.stdout)
		}
	})
	t.Run("where", func(t *testing.T) {
		out, err := exec.Command(binPath, "where", "-c", e.cfg, "--frontend", "imap", "--sni", "imap.b.test", "user050@a.test").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "backend mail-b") || !strings.Contains(string(out), "by route[1] (sni imap.b.test)") {
			t.Errorf("where --sni: %v\n%s\nwant backend mail-b by route[1] (sni imap.b.test)", err, out)
		}
		out, err = exec.Command(binPath, "where", "-c", e.cfg, "user050@a.test").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "frontend imap        backend mail-a") || !strings.Contains(string(out), "unless route[1] (sni imap.b.test) → backend mail-b") {
			t.Errorf("where: %v\n%s\nwant imap's default mail-a, unless the sni and local rules", err, out)
		}
		res, err := runCtl(e.sock, nil, "where", "user051@b.test")
		if err != nil || res.code != 0 || !strings.Contains(res.stdout, "frontend imap by route[0] (domain b.test)") || !strings.Contains(res.stdout, "frontend lmtp by route[0] (domain b.test)") {
			t.Errorf("ctl where: %v %+v\nwant the imap and lmtp frontends by route[0] (domain b.test)", err, res)
		}
	})
}
