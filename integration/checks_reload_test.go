package integration

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
)

// reloadAndWait sends SIGHUP and waits for the reload's log line.
func reloadAndWait(t *testing.T, e *env) {
	t.Helper()
	reloads := len(checksLogLines(e, `msg="configuration reloaded"`))
	if err := e.md.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	checksWaitLine(t, e, reloads, `msg="configuration reloaded"`)
}

// TestChecksFollowReloadedPorts: a reload that changes only a server's
// IMAP port moves its checks to the new port (they probe what sessions
// use): moved to a port where nothing listens, the server goes down;
// moved back, it comes up again.
func TestChecksFollowReloadedPorts(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: imapFrontends(), Check: "imap", Inter: "200ms"})
	checksWaitLine(t, e, 1, checksOf("dovecot", "dovecot1", true)...)
	p := e.lab.Instances[0].Ports
	old := fmt.Sprintf("imap = %d,", p.IMAP)
	dead := fmt.Sprintf("imap = %d,", freePort(t))

	downs := len(checksLogLines(e, downLine("dovecot", "dovecot1")...))
	checksRewrite(t, e.cfg, old, dead)
	reloadAndWait(t, e)
	checksWaitLine(t, e, downs, downLine("dovecot", "dovecot1")...)

	ups := len(checksLogLines(e, upLine("dovecot", "dovecot1")...))
	checksRewrite(t, e.cfg, dead, old)
	reloadAndWait(t, e)
	checksWaitLine(t, e, ups, upLine("dovecot", "dovecot1")...)
	if got := e.landedOn(e.addrs["imap"], e.usersOn("dovecot1", 1)[0]); got != "dovecot1" {
		t.Errorf("a dovecot1 user after the port came back: landed on %s, want dovecot1", got)
	}
}

// TestReloadKeepsServerStates: a reload that rebuilds the backend (a
// server is added) keeps a dead server down (it does not start as up and
// take users), and the new server takes no users before its first passing
// check.
func TestReloadKeepsServerStates(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: imapFrontends(), Check: "imap", Inter: "200ms"})
	addr := e.addrs["imap"]
	checksWaitLine(t, e, 0, checksOf("dovecot", "dovecot2", true)...)
	if err := e.instanceOf("dovecot2").Stop(); err != nil {
		t.Fatal(err)
	}
	checksWaitLine(t, e, 0, downLine("dovecot", "dovecot2")...)

	// A third server where nothing listens: its checks never pass.
	extra := fmt.Sprintf("\n[[backend.dovecot.server]]\nname = \"dovecot3\"\naddress = \"127.0.0.1\"\nports = { imap = %d }\n", freePort(t))
	checksRewrite(t, e.cfg, "[[backend.dovecot.server]]\nname = \"dovecot1\"", strings.TrimPrefix(extra, "\n")+"\n[[backend.dovecot.server]]\nname = \"dovecot1\"")
	reloadAndWait(t, e)

	// Every login goes to dovecot1, the only server that is up: none
	// lands on the dead dovecot2, and none is sent to dovecot3 (a failure
	// there would show as a passive failure, or as a failover line).
	for i := range 12 {
		u := fmt.Sprintf("user%03d", 100+i)
		if got := e.landedOn(addr, u); got != "dovecot1" {
			t.Errorf("%s after the reload: landed on %q, want dovecot1", u, got)
		}
	}
	if lines := checksLogLines(e, "server failed, trying the next one"); len(lines) > 0 {
		t.Errorf("logins were sent to a server that is down after the reload:\n%s", strings.Join(lines, "\n"))
	}
	if lines := checksLogLines(e, upLine("dovecot", "dovecot2")...); len(lines) > 0 {
		t.Errorf("the dead dovecot2 came up after the reload: %s", lines[0])
	}
}
