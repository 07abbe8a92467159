package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maildirector/maildirector/internal/dovecotlab"
	"github.com/maildirector/maildirector/tlsutil"
)

// tcpFrontend is one protocol = "tcp" frontend of a test deployment, with a
// backend of its own ("tcp_NAME") holding one server per lab instance whose
// tcp port is the instance's IMAPDirect port (SendProxy "none": Dovecot
// wants no PROXY header there) or its IMAP port (haproxy = yes: SendProxy
// must be v1, v2 or v2-ssl).
type tcpFrontend struct {
	Name      string
	TLS       string // "none" or "implicit"
	Balance   string // leastconn, roundrobin or source
	SendProxy string // none, v1, v2, v2-ssl
	Check     string // check type; "" = tcp
}

// tcpEnv is a running lab with maildirector's tcp frontends in front of it.
type tcpEnv struct {
	lab   *dovecotlab.Lab
	addrs map[string]string // frontend name → host:port
	md    *process
}

// startTCPEnv starts a lab of n instances and maildirector with fes.
func startTCPEnv(t *testing.T, n int, fes []tcpFrontend) *tcpEnv {
	t.Helper()
	e := &tcpEnv{lab: dovecotlab.StartT(t, dovecotlab.Options{Instances: n}), addrs: make(map[string]string)}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "maildirector.toml")
	if err := os.WriteFile(cfg, []byte(tcpConfig(t, dir, e.lab, fes, e.addrs)), 0o644); err != nil {
		t.Fatal(err)
	}
	e.md = startProcess(t, cfg, e.addrs)
	return e
}

// tcpConfig returns a maildirector configuration with the tcp frontends fes
// over lab's instances, and records each frontend's address in addrs.
func tcpConfig(t *testing.T, dir string, lab *dovecotlab.Lab, fes []tcpFrontend, addrs map[string]string) string {
	t.Helper()
	certFile, keyFile, err := tlsutil.WriteSelfSigned(dir, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("[global]\nlog_level = \"debug\"\nshutdown_grace = \"2s\"\n\n")
	for _, f := range fes {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		addrs[f.Name] = addr
		fmt.Fprintf(&b, "[frontend.%s]\nprotocol = \"tcp\"\nbind = [%q]\nbackend = \"tcp_%s\"\n", f.Name, addr, f.Name)
		if f.TLS != "" && f.TLS != "none" {
			fmt.Fprintf(&b, "[frontend.%s.tls]\nmode = %q\n[[frontend.%s.tls.cert]]\ncert = %q\nkey = %q\n",
				f.Name, f.TLS, f.Name, certFile, keyFile)
		}
		fmt.Fprintf(&b, "\n[backend.tcp_%s]\nbalance = %q\n", f.Name, f.Balance)
		fmt.Fprintf(&b, "[backend.tcp_%s.check]\ntype = %q\ninter = \"500ms\"\nrise = 2\nfall = 2\ntimeout = \"1s\"\n", f.Name, or(f.Check, "tcp"))
		sendProxy := or(f.SendProxy, "none")
		for i, in := range lab.Instances {
			port := in.Ports.IMAP
			if sendProxy == "none" {
				port = in.Ports.IMAPDirect
			}
			fmt.Fprintf(&b, "[[backend.tcp_%s.server]]\nname = %q\naddress = \"127.0.0.1\"\nports = { tcp = %d }\nsend_proxy = %q\n",
				f.Name, serverName(i), port, sendProxy)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// tcpIMAPLogins returns, by server name, user's IMAP logins in lab.
func tcpIMAPLogins(t *testing.T, lab *dovecotlab.Lab, user string) map[string][]dovecotlab.Login {
	t.Helper()
	out := make(map[string][]dovecotlab.Login)
	for i, in := range lab.Instances {
		logins, err := in.Logins()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range logins {
			if l.User == user && l.Service == "imap-login" {
				out[serverName(i)] = append(out[serverName(i)], l)
			}
		}
	}
	return out
}

// tcpLoginServer waits for user's one IMAP login line and returns its server and the line.
func tcpLoginServer(t *testing.T, lab *dovecotlab.Lab, user string) (string, dovecotlab.Login) {
	t.Helper()
	var got map[string][]dovecotlab.Login
	eventually(t, "the login line of "+user, func() bool {
		got = tcpIMAPLogins(t, lab, user)
		return len(got) > 0
	})
	if len(got) != 1 {
		t.Fatalf("%s: logins by server %v, want one", user, got)
	}
	for server, logins := range got {
		if len(logins) != 1 {
			t.Fatalf("%s: %d logins on %s, want one", user, len(logins), server)
		}
		return server, logins[0]
	}
	panic("unreachable")
}

// TestTCPFrontendRelaysIMAP: a protocol = "tcp" frontend relays bytes to a
// server without reading them: Dovecot's own greeting reaches the client,
// a login through it works, and Dovecot sees the client's address only when
// the server gets a PROXY header (v1, v2), and the client's TLS to
// maildirector only with v2-ssl.
func TestTCPFrontendRelaysIMAP(t *testing.T) {
	e := startTCPEnv(t, 2, []tcpFrontend{
		{Name: "direct", Balance: "roundrobin", SendProxy: "none"},
		{Name: "proxyv1", Balance: "roundrobin", SendProxy: "v1"},
		{Name: "proxyv2", Balance: "leastconn", SendProxy: "v2"},
		{Name: "tlsv2ssl", TLS: "implicit", Balance: "roundrobin", SendProxy: "v2-ssl"},
	})
	tests := []struct {
		name     string
		frontend string
		user     string
		tls      bool
		rip      string // Dovecot's rip
		secured  bool
	}{
		// Without a header Dovecot sees maildirector (127.0.0.1 to 127.0.0.1,
		// which it calls secured).
		{"no PROXY header", "direct", "user120", false, "127.0.0.1", true},
		{"PROXY v1", "proxyv1", "user121", false, clientIP.String(), false},
		{"PROXY v2", "proxyv2", "user122", false, clientIP.String(), false},
		{"implicit TLS, PROXY v2 with SSL TLV", "tlsv2ssl", "user123", true, clientIP.String(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r *rawIMAP
			if tt.tls {
				r = newRawIMAP(t, dialTLS(t, e.addrs[tt.frontend]))
			} else {
				r = newRawIMAP(t, dial(t, e.addrs[tt.frontend]))
			}
			// Dovecot's own greeting proves the bytes come from it, not
			// from a protocol frontend of maildirector.
			if g := r.line(); !strings.HasPrefix(g, "* OK") || !strings.Contains(g, "] Dovecot") {
				t.Errorf("greeting: got %q, want Dovecot's", g)
			}
			r.login(tt.user)
			if _, tagged := r.cmd("s", "SELECT INBOX"); !strings.HasPrefix(tagged, "s OK") {
				t.Errorf("SELECT INBOX: got %q, want OK", tagged)
			}
			r.logout()
			_, l := tcpLoginServer(t, e.lab, tt.user)
			if l.RemoteIP != tt.rip {
				t.Errorf("Dovecot's rip: got %s, want %s", l.RemoteIP, tt.rip)
			}
			if l.Secured != tt.secured {
				t.Errorf("Dovecot's login line secured=%v, want %v: %+v", l.Secured, tt.secured, l)
			}
		})
	}
	if e.md.exited() {
		t.Fatalf("maildirector died:\n%s", e.md.log.String())
	}
}

// TestTCPFrontendBalance: roundrobin takes the servers in turn; leastconn
// sends a new session to the server with fewer live ones.
func TestTCPFrontendBalance(t *testing.T) {
	e := startTCPEnv(t, 2, []tcpFrontend{
		// No checks: a check that times out on a loaded machine would
		// rightly take a server out of the rotation and skew the counts.
		{Name: "rr", Balance: "roundrobin", SendProxy: "v2", Check: "none"},
		{Name: "lc", Balance: "leastconn", SendProxy: "v2", Check: "none"},
	})

	t.Run("roundrobin", func(t *testing.T) {
		// One session at a time, each on the other server than the one
		// before: a random pick alternates eight times in 1 of 128 runs.
		// The harness's readiness probe was a session too and takes a turn:
		// let it end first, so that its pick cannot fall between two below.
		eventually(t, "the readiness probe's session to end", func() bool { return sessionsEnded(e.md, "rr") > 0 })
		var prev string
		for i := range 8 {
			user := fmt.Sprintf("user%03d", 130+i)
			r := greeted(t, e.addrs["rr"])
			r.login(user)
			r.logout()
			server, _ := tcpLoginServer(t, e.lab, user)
			if i > 0 && server == prev {
				t.Errorf("session %d went to %s like the one before; want the servers in turn", i, server)
			}
			prev = server
		}
	})

	t.Run("leastconn", func(t *testing.T) {
		// One session stays open on A; each of the next ones ends before
		// the following starts, so B always has fewer live sessions and
		// takes them all (round robin would alternate). The harness's
		// readiness probe was a session too: let it end first.
		eventually(t, "the readiness probe's session to end", func() bool { return sessionsEnded(e.md, "lc") > 0 })
		held := greeted(t, e.addrs["lc"])
		held.login("user140")
		a, _ := tcpLoginServer(t, e.lab, "user140")
		for i := range 4 {
			user := fmt.Sprintf("user%03d", 141+i)
			ended := sessionsEnded(e.md, "lc")
			r := greeted(t, e.addrs["lc"])
			r.login(user)
			r.logout()
			if server, _ := tcpLoginServer(t, e.lab, user); server == a {
				t.Errorf("session %d went to %s, which holds a live session; want the other server", i+1, server)
			}
			eventually(t, "the session of "+user+" to end", func() bool { return sessionsEnded(e.md, "lc") > ended })
		}
		if _, tagged := held.cmd("n", "NOOP"); !strings.HasPrefix(tagged, "n OK") {
			t.Errorf("held session: got %q, want OK", tagged)
		}
		held.logout()
	})
}

// sessionsEnded counts the session log lines (one per ended session) of
// frontend in maildirector's log.
func sessionsEnded(p *process, frontend string) int {
	n := 0
	for _, l := range strings.Split(p.log.String(), "\n") {
		if strings.Contains(l, "msg=session ") && strings.Contains(l, " frontend="+frontend+" ") {
			n++
		}
	}
	return n
}
