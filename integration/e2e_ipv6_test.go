package integration

import (
	"net"
	"strings"
	"testing"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

// TestE2EIPv6: a frontend bound on [::1], servers at ::1 (Dovecot
// listening on ::1 only). A client from ::1 logs in on the hashed server,
// and Dovecot logs the client's IPv6 address and port from the PROXY v2
// header (an AF_INET6 address block).
func TestE2EIPv6(t *testing.T) {
	e := startEnvEdited(t, setupSpec{
		Frontends: []frontendSpec{{Name: "imap", Protocol: "imap", TLS: "starttls", Plaintext: "allow"}},
		Check:     "imap",
		Lab:       dovecotlab.Options{ListenAddress: "::1"},
	}, nil, func(e *env, cfg string) string {
		for name, addr := range e.addrs {
			_, port, _ := net.SplitHostPort(addr)
			e.addrs[name] = net.JoinHostPort("::1", port)
			cfg = strings.Replace(cfg, "bind = [\""+addr+"\"]", "bind = [\""+e.addrs[name]+"\"]", 1)
		}
		return strings.ReplaceAll(cfg, `address = "127.0.0.1"`, `address = "[::1]"`)
	})
	if strings.Contains(readFile(t, e.cfg), "127.0.0.1") {
		t.Fatalf("configuration still names 127.0.0.1:\n%s", readFile(t, e.cfg))
	}
	for i := range e.lab.Instances {
		checksWaitLine(t, e, 0, checksOf("dovecot", serverName(i), true)...)
	}
	for _, user := range []string{"user050", "user051", "user052"} {
		r := greetedFrom(t, net.IPv6loopback, e.addrs["imap"])
		clientPort := r.c.LocalAddr().(*net.TCPAddr).Port
		r.login(user)
		r.selectInbox()
		r.logout()
		server, l := e.landedOnce(t, user)
		if want := e.hashServer(user); server != want {
			t.Errorf("%s landed on %s, want %s", user, server, want)
		}
		if l.RemoteIP != "::1" || l.RemotePort != clientPort || l.LocalIP != "::1" {
			t.Errorf("%s: Dovecot logged rip=%s rport=%d lip=%s, want the client's ::1 port %d and lip ::1",
				user, l.RemoteIP, l.RemotePort, l.LocalIP, clientPort)
		}
	}
}
