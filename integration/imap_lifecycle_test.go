package integration

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestIMAPShutdownSaysBye: on SIGTERM, a client that has not logged in yet
// gets "* BYE" at once, a logged-in session may finish within the grace
// period and is then closed with "* BYE", and the process exits.
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
	if err != nil || len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], "* BYE") {
		t.Errorf("logged-in client at the end of the grace period: got %q, %v; want * BYE and a close", lines, err)
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
