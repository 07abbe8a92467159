package integration

import (
	"strings"
	"testing"

	"github.com/maildirector/maildirector/internal/dovecotlab"
	"github.com/maildirector/maildirector/tlsutil"
)

// TestE2EServerTLS: Dovecot with implicit TLS (ssl = yes) on its
// haproxy = yes listeners, maildirector with [backend.NAME.server.tls]
// enabled and each instance's own CA. The IMAP checks (check.tls unset, so
// they follow the server's TLS) pass, logins work, and Dovecot logs the
// server leg as TLS, with the client's address from the PROXY header that
// precedes the handshake.
func TestE2EServerTLS(t *testing.T) {
	e := startEnvEdited(t, setupSpec{
		Frontends: imapFrontends(),
		Check:     "imap",
		Lab:       dovecotlab.Options{TLS: true},
	}, func(e *env, i int) string {
		return serverTLSLines(e.lab.Instances[i].CertFile)
	}, nil)
	for i := range e.lab.Instances {
		checksWaitLine(t, e, 0, checksOf("dovecot", serverName(i), true)...)
	}
	for _, user := range []string{"user040", "user041", "user042", "user043"} {
		r := greeted(t, e.addrs["imap"])
		r.login(user)
		r.selectInbox()
		r.logout()
		server, l := e.landedOnce(t, user)
		if want := e.hashServer(user); server != want {
			t.Errorf("%s landed on %s, want %s", user, server, want)
		}
		if !l.TLS {
			t.Errorf("%s: Dovecot's login line lacks TLS, want the server leg encrypted: %+v", user, l)
		}
		if l.RemoteIP != clientIP.String() {
			t.Errorf("%s: rip %s, want the client's %s", user, l.RemoteIP, clientIP)
		}
	}
	// The checks really ran over TLS: Dovecot logged their sessions as TLS
	// (the check logs out before authenticating: user=<>).
	for i, in := range e.lab.Instances {
		log, err := in.Log()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log, "imap-login: Info: Disconnected: Aborted login by logging out") || !containsCheckTLS(log) {
			t.Errorf("%s: no check session logged over TLS:\n%s", serverName(i), lastN(log, 10))
		}
	}
}

// containsCheckTLS reports whether an imap-login line of a session that
// logged out unauthenticated carries TLS.
func containsCheckTLS(log string) bool {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "imap-login: Info: Disconnected: Aborted login by logging out") && strings.Contains(l, ", TLS") {
			return true
		}
	}
	return false
}

func lastN(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestE2EServerTLSWrongCA: the same lab, but maildirector trusts another
// self-signed CA. The server certificate fails verification, so no login
// reaches Dovecot: the client gets NO [UNAVAILABLE] and maildirector logs
// the verification failure. Checks are off so the session path itself
// dials (with checks the server would just be down).
func TestE2EServerTLSWrongCA(t *testing.T) {
	otherCA, _, err := tlsutil.WriteSelfSigned(t.TempDir(), "localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, setupSpec{
		Frontends: imapFrontends(),
		Lab:       dovecotlab.Options{TLS: true},
		ServerExtra: func(i int) string {
			return serverTLSLines(otherCA) + "\ncheck = false"
		},
	})
	const user = "user044"
	r := greeted(t, e.addrs["imap"])
	if _, tagged := r.cmd("L1", "LOGIN "+user+" pass"); !strings.HasPrefix(tagged, "L1 NO [UNAVAILABLE]") {
		t.Fatalf("LOGIN with an untrusted server certificate: got %q, want L1 NO [UNAVAILABLE]", tagged)
	}
	eventually(t, "maildirector to log the failed verification", func() bool {
		return strings.Contains(e.md.log.String(), "tls to dovecot") &&
			strings.Contains(e.md.log.String(), "x509: certificate signed by unknown authority")
	})
	if got := e.loginsOf(user); len(got) != 0 {
		t.Errorf("logins of %s in Dovecot's logs: %v, want none", user, got)
	}
}
