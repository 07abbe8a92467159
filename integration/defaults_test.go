package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

// TestDefaultsWorkWithTheDovecotRecipe: a configuration that says nothing
// about PROXY headers or checks works against Dovecot set up as the README
// says (haproxy = yes listeners): servers get a PROXY v2 header with the
// SSL TLV, checks speak IMAP (the frontend's protocol) with a LOCAL header
// and mark the servers up, and logins land on the hashed server.
func TestDefaultsWorkWithTheDovecotRecipe(t *testing.T) {
	lab := dovecotlab.StartT(t, dovecotlab.Options{Instances: 2})
	e := &env{t: t, lab: lab, dir: t.TempDir(), addrs: map[string]string{}}
	e.addrs["imap"] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\nlog_level = \"debug\"\n\n[frontend.imap]\nprotocol = \"imap\"\nbind = [%q]\nbackend = \"dovecot\"\nplaintext_login = \"allow\"\n\n[backend.dovecot]\n", e.addrs["imap"])
	for i, in := range lab.Instances {
		fmt.Fprintf(&b, "\n[[backend.dovecot.server]]\nname = %q\naddress = \"127.0.0.1\"\nports = { imap = %d }\n", serverName(i), in.Ports.IMAP)
	}
	e.cfg = filepath.Join(e.dir, "maildirector.toml")
	if err := os.WriteFile(e.cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	e.md = startProcess(t, e.cfg, e.addrs)

	for i := range lab.Instances {
		checksWaitLine(t, e, 0, "msg=check ", "check=imap", "server="+serverName(i)+" ", "ok=true")
	}
	for _, server := range []string{"dovecot1", "dovecot2"} {
		u := e.usersOn(server, 1)[0]
		if got := e.landedOn(e.addrs["imap"], u); got != server {
			t.Errorf("%s: landed on %q, want %s", u, got, server)
		}
	}
	// The PROXY header carried the client (rip is the test client, not
	// maildirector's address) and the checks' LOCAL headers were accepted.
	for _, in := range lab.Instances {
		logins, err := in.Logins()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range logins {
			if l.RemoteIP != clientIP.String() {
				t.Errorf("%s logged a login from %s, want the client %s (a PROXY header)", in.Name, l.RemoteIP, clientIP)
			}
		}
	}
}
