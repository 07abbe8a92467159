package integration

import (
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestIMAPShutdownSaysBye: on SIGTERM, a client that has not logged in yet
// gets "* BYE" at once, a logged-in session gets "* BYE" once it is quiet
// after the server's last reply (not in the middle of one), and the process
// exits. (lifecycle_shutdown_test.go has the same with hundreds of IDLE
// sessions and the other protocols.)
func TestIMAPShutdownSaysBye(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: imapFrontends()})
	pre := greeted(t, e.addrs["imap"])
	in := greeted(t, e.addrs["imap"])
	in.login("user060")
	if _, tagged := in.cmd("s", "SELECT INBOX"); !strings.HasPrefix(tagged, "s OK") {
		t.Fatalf("SELECT: %q", tagged)
	}

	e.md.cmd.Process.Signal(syscall.SIGTERM)

	lines, err := pre.drain()
	if err != nil || len(lines) == 0 || !strings.HasPrefix(lines[0], "* BYE") {
		t.Errorf("pre-login client at shutdown: got %q, %v; want * BYE and a close", lines, err)
	}
	lines, err = in.drain()
	if err != nil || len(lines) != 1 || !strings.HasPrefix(lines[0], "* BYE") {
		t.Errorf("logged-in client at shutdown: got %q, %v; want * BYE and a close", lines, err)
	}
	eventually(t, "maildirector to exit", e.md.exited)
	if !strings.Contains(e.md.log.String(), "maildirector stopped") {
		t.Errorf("no clean stop in the log")
	}
}

// TestIMAPReloadKeepsSessions: SIGHUP with a changed configuration keeps the
// listener and live sessions; a broken configuration changes nothing.
func TestIMAPReloadKeepsSessions(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: imapFrontends()})
	live := greeted(t, e.addrs["imap"])
	live.login("user061")

	orig, err := os.ReadFile(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	reload := func(content string, wantLog string) {
		t.Helper()
		if err := os.WriteFile(e.cfg, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		before := strings.Count(e.md.log.String(), wantLog)
		e.md.cmd.Process.Signal(syscall.SIGHUP)
		eventually(t, wantLog, func() bool { return strings.Count(e.md.log.String(), wantLog) > before })
	}

	reload(strings.Replace(string(orig), `balance = "user"`, "balance = \"user\"\nretries = 1", 1), "configuration reloaded")
	// A key a reload cannot apply is named in the reload's log line.
	reload(strings.Replace(string(orig), "[global]", "[global]\nmaxconn = 500", 1), "needs_restart=global.maxconn")
	reload("[frontend.broken\n", "reload failed, keeping the running configuration")
	reload(strings.Replace(string(orig), "[global]", "[global]\nno_such_key = 1", 1), "reload failed, keeping the running configuration")

	if _, tagged := live.cmd("n", "NOOP"); !strings.HasPrefix(tagged, "n OK") {
		t.Errorf("live session after reloads: %q", tagged)
	}
	live.logout()
	r := greeted(t, e.addrs["imap"])
	r.login("user062")
	r.logout()
}

// TestIMAPFailedReloadChangesNothing: a reload that fails late (a new bind
// address is taken) must not have applied any of its other changes, here a
// server put into maintenance.
func TestIMAPFailedReloadChangesNothing(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: imapFrontends()})
	user := e.usersOn("dovecot1", 1)[0]
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	orig, err := os.ReadFile(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(orig), "name = \"dovecot1\"\n", "name = \"dovecot1\"\nstate = \"maint\"\n", 1)
	cfg += fmt.Sprintf("\n[frontend.extra]\nprotocol = \"imap\"\nbind = [%q]\nbackend = \"dovecot\"\n", taken.Addr().String())
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	const failed = "reload failed, keeping the running configuration"
	before := strings.Count(e.md.log.String(), failed)
	e.md.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, "the reload to fail", func() bool { return strings.Count(e.md.log.String(), failed) > before })

	if got := e.landedOn(e.addrs["imap"], user); got != "dovecot1" {
		t.Errorf("%s after a failed reload that would have put dovecot1 in maint: landed on %s, want dovecot1", user, got)
	}
}
