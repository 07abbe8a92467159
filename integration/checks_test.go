package integration

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These tests prove issue 5 end to end: protocol health checks against real
// Dovecot, and server states (health and administrative) driving routing.
// The harness's config has rise = 2, fall = 2, timeout = 1s.

// TestChecksStopMarksDownStartMarksUp: a stopped Dovecot is marked down by
// its IMAP check and its users log in elsewhere without maildirector trying
// it first; started again, it comes up and new users hashed to it land there.
func TestChecksStopMarksDownStartMarksUp(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: imapFrontends(), Check: "imap", Inter: "300ms"})
	addr := e.addrs["imap"]
	users := e.usersOn("dovecot1", 6)
	in := e.instanceOf("dovecot1")
	if got := e.landedOn(addr, users[0]); got != "dovecot1" {
		t.Fatalf("%s before the stop: landed on %s, want dovecot1", users[0], got)
	}

	stopped := time.Now()
	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}
	down := checksWaitLine(t, e, 0, downLine("dovecot", "dovecot1")...)
	toDown := time.Since(stopped)
	if !strings.Contains(down, `reason="imap: `) || !strings.Contains(down, "latency=") {
		t.Errorf("down line: got %q, want an imap reason and a latency", down)
	}
	checksWaitLine(t, e, 0, stateChange("dovecot", "dovecot1", "up", "down")...)
	// Not a timing assertion: the machine may be slow. For the record only.
	t.Logf("time to down %v; fall × inter + timeout = 2 × 300ms + 1s = 1.6s (a refused connect fails at once)", toDown)

	// Marked down: users hashed to dovecot1 go straight to dovecot2,
	// without a failed attempt on dovecot1 first.
	failed := len(checksLogLines(e, "server failed, trying the next one", "server=dovecot1 "))
	for _, u := range users[1:3] {
		if got := e.landedOn(addr, u); got != "dovecot2" {
			t.Errorf("%s while dovecot1 is down: landed on %s, want dovecot2", u, got)
		}
	}
	if n := len(checksLogLines(e, "server failed, trying the next one", "server=dovecot1 ")); n != failed {
		t.Errorf("maildirector tried dovecot1 %d times after it was marked down, want 0", n-failed)
	}

	if err := in.Start(); err != nil {
		t.Fatal(err)
	}
	up := checksWaitLine(t, e, 0, upLine("dovecot", "dovecot1")...)
	if !strings.Contains(up, `reason="imap: OK in `) {
		t.Errorf("up line: got %q, want reason imap: OK", up)
	}
	checksWaitLine(t, e, 0, stateChange("dovecot", "dovecot1", "down", "up")...)
	// users[3:] never logged in: placed by the hash again.
	for _, u := range users[3:] {
		if got := e.landedOn(addr, u); got != "dovecot1" {
			t.Errorf("%s, new since dovecot1 came back: landed on %s, want dovecot1", u, got)
		}
	}
	// users[1] has a sticky assignment on dovecot2 (user_expire 15m): it stays.
	if got := e.landedOn(addr, users[1]); got != "dovecot2" {
		t.Errorf("%s, placed on dovecot2 while dovecot1 was down: landed on %s, want dovecot2 (sticky)", users[1], got)
	}
}

// TestChecksFrozenServer: a Dovecot that accepts TCP but answers nothing
// (SIGSTOP) is marked down by an IMAP check, with a timeout as the reason,
// and its users go elsewhere; a TCP check of the same server in another
// backend keeps passing, which is why protocol checks matter.
func TestChecksFrozenServer(t *testing.T) {
	e := startChecksEnv(t, setupSpec{Frontends: imapFrontends(), Check: "imap", Inter: "200ms"}, func(e *env) string {
		return checksBackend(e, "tcpchk", "type = \"tcp\"\ninter = \"200ms\"\nrise = 2\nfall = 2\ntimeout = \"1s\"")
	})
	in := e.instanceOf("dovecot1")
	// Both backends have seen dovecot1 pass before the freeze.
	checksWaitLine(t, e, 0, checksOf("dovecot", "dovecot1", true)...)
	checksWaitLine(t, e, 0, checksOf("tcpchk", "dovecot1", true)...)

	tcpPassed := len(checksLogLines(e, checksOf("tcpchk", "dovecot1", true)...))
	if err := in.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Thaw() })

	down := checksWaitLine(t, e, 0, downLine("dovecot", "dovecot1")...)
	if !strings.Contains(down, `reason="imap: timeout after 1s reading greeting"`) {
		t.Errorf("imap check down line: got %q, want reason \"imap: timeout after 1s reading greeting\"", down)
	}
	// The tcp check ran at least fall+1 more rounds during the freeze (the
	// imap check needed 2 timeouts of 1s) and passed every time.
	checksWaitLine(t, e, tcpPassed+2, checksOf("tcpchk", "dovecot1", true)...)
	if l := checksLogLines(e, downLine("tcpchk", "dovecot1")...); len(l) > 0 {
		t.Errorf("tcp check marked the frozen dovecot1 down: %q; a frozen server accepts TCP, so want it up", l)
	}
	if l := checksLogLines(e, checksOf("tcpchk", "dovecot1", false)...); len(l) > 0 {
		t.Errorf("tcp check failed on the frozen dovecot1: %q", l[0])
	}

	// Marked down by the imap check: its users go to dovecot2 at once
	// instead of hanging on the frozen greeting.
	u := e.usersOn("dovecot1", 1)[0]
	if got := e.landedOn(e.addrs["imap"], u); got != "dovecot2" {
		t.Errorf("%s while dovecot1 is frozen: landed on %s, want dovecot2", u, got)
	}

	if err := in.Thaw(); err != nil {
		t.Fatal(err)
	}
	checksWaitLine(t, e, 0, upLine("dovecot", "dovecot1")...)
}

// TestChecksThroughHAProxyListeners: checks of types imap, pop3, lmtp and
// smtp (on the submission port) against Dovecot listeners with
// haproxy = yes pass (a PROXY v2 LOCAL header goes first, from
// check.send_proxy = "auto"), and end politely: Dovecot 2.3 logs every
// pre-login IMAP LOGOUT and POP3/submission QUIT as "Disconnected: Aborted
// login by logging out (no auth attempts in 0 secs)" and every LMTP QUIT as
// "Disconnect from ...: Logged out", never "Connection closed", a reset or
// a haproxy error.
func TestChecksThroughHAProxyListeners(t *testing.T) {
	const inter = "inter = \"100ms\"\nrise = 2\nfall = 2\ntimeout = \"1s\""
	e := startChecksEnv(t, setupSpec{Frontends: imapFrontends(), Check: "imap", Inter: "100ms"}, func(e *env) string {
		return checksBackend(e, "pop3chk", "type = \"pop3\"\n"+inter) +
			checksBackend(e, "lmtpchk", "type = \"lmtp\"\n"+inter) +
			checksBackend(e, "smtpchk", "type = \"smtp\"\n"+inter)
	})
	types := []struct {
		backend, typ string
		port         func(i int) int
		// polite is what Dovecot logs for a check that ended with LOGOUT or QUIT.
		polite *regexp.Regexp
	}{
		{"dovecot", "imap", func(i int) int { return e.lab.Instances[i].Ports.IMAP },
			regexp.MustCompile(`imap-login: Info: Disconnected: Aborted login by logging out \(no auth attempts in \d+ secs\): user=<>, rip=127\.0\.0\.1, rport=\d+, lip=127\.0\.0\.1, `)},
		{"pop3chk", "pop3", func(i int) int { return e.lab.Instances[i].Ports.POP3 },
			regexp.MustCompile(`pop3-login: Info: Disconnected: Aborted login by logging out \(no auth attempts in \d+ secs\): user=<>, rip=127\.0\.0\.1, rport=\d+, lip=127\.0\.0\.1, `)},
		{"lmtpchk", "lmtp", func(i int) int { return e.lab.Instances[i].Ports.LMTP },
			regexp.MustCompile(`lmtp\(\d+\): Info: Disconnect from 127\.0\.0\.1: Logged out \(state=`)},
		{"smtpchk", "smtp", func(i int) int { return e.lab.Instances[i].Ports.Submission },
			regexp.MustCompile(`submission-login: Info: Disconnected: Aborted login by logging out \(no auth attempts in \d+ secs\): user=<>, rip=127\.0\.0\.1, rport=\d+, lip=127\.0\.0\.1, `)},
	}
	// Some rounds of every check on every server.
	const rounds = 5
	for _, ty := range types {
		for i := range e.lab.Instances {
			checksWaitLine(t, e, rounds-1, checksOf(ty.backend, serverName(i), true)...)
		}
	}

	for _, ty := range types {
		t.Run(ty.typ, func(t *testing.T) {
			for i := range e.lab.Instances {
				server := serverName(i)
				addr := fmt.Sprintf("address=127.0.0.1:%d ", ty.port(i))
				passed := len(checksLogLines(e, append(checksOf(ty.backend, server, true), "check="+ty.typ+" ", addr)...))
				if passed < rounds {
					t.Fatalf("%s: %d passing %s checks on port %d, want >= %d", server, passed, ty.typ, ty.port(i), rounds)
				}
				if f := checksLogLines(e, checksOf(ty.backend, server, false)...); len(f) > 0 {
					t.Errorf("%s: failing %s check: %q", server, ty.typ, f[0])
				}
				// Dovecot writes its log through its log process: wait until
				// every passing check counted so far has its polite line.
				eventually(t, fmt.Sprintf("%s to log %d polite %s disconnects", server, passed, ty.typ), func() bool {
					return len(ty.polite.FindAllString(dovecotLog(t, e, server), -1)) >= passed
				})
			}
		})
	}
	// Nothing else: no PROXY header complaint, no aborted connection, no error.
	for i := range e.lab.Instances {
		server := serverName(i)
		for _, l := range strings.Split(dovecotLog(t, e, server), "\n") {
			if p := checksDovecotProblem(l); p != "" {
				t.Errorf("%s logged %s: %q", server, p, l)
			}
		}
	}
}

// checksDovecotProblem says what is wrong with a Dovecot log line that a
// polite check must not cause, or returns "".
func checksDovecotProblem(l string) string {
	switch {
	case strings.Contains(strings.ToLower(l), "proxy"):
		return "a PROXY protocol problem"
	case strings.Contains(l, "Disconnected (no auth attempts"),
		strings.Contains(l, "Disconnected: Connection closed"),
		strings.Contains(l, "Connection reset"),
		strings.Contains(l, "Disconnect from") && !strings.Contains(l, "Logged out"):
		return "an impolite disconnect"
	case strings.Contains(l, ": Error: "), strings.Contains(l, ": Warning: "),
		strings.Contains(l, ": Fatal: "), strings.Contains(l, ": Panic: "):
		return "a problem"
	}
	return ""
}

// TestChecksAdminStates: state = "maint" gets no logins, state = "drain"
// gets no new users, and a reload from ready to drain keeps the live
// session and the sticky user on their server while new users go elsewhere.
func TestChecksAdminStates(t *testing.T) {
	states := []string{"maint", "drain", "ready", "ready"}
	e := startEnv(t, setupSpec{
		Instances: 4,
		Frontends: imapFrontends(),
		Check:     "imap",
		Inter:     "300ms",
		// A marker comment makes the line easy to rewrite for the reload.
		ServerExtra: func(i int) string { return fmt.Sprintf("state = %q # state of %s", states[i], serverName(i)) },
	})
	addr := e.addrs["imap"]

	for _, server := range []string{"dovecot1", "dovecot2"} {
		for _, u := range e.usersOn(server, 3) {
			if got := e.landedOn(addr, u); got != "dovecot3" && got != "dovecot4" {
				t.Errorf("%s, hashed to %s (%s): landed on %s, want a ready server", u, server, states[serverNum(server)], got)
			}
		}
	}
	for _, server := range []string{"dovecot1", "dovecot2"} {
		logins, err := e.instanceOf(server).Logins()
		if err != nil {
			t.Fatal(err)
		}
		if len(logins) > 0 {
			t.Errorf("%s (%s) had %d logins, want none: %+v", server, states[serverNum(server)], len(logins), logins[0])
		}
	}
	// Maintenance stops traffic, not checks.
	checksWaitLine(t, e, 2, checksOf("dovecot", "dovecot1", true)...)

	// A live session and a sticky user on dovecot3, then dovecot3 drains.
	users := e.usersOn("dovecot3", 3)
	live := greeted(t, addr)
	live.login(users[0])
	if _, tagged := live.cmd("s", "SELECT INBOX"); !strings.HasPrefix(tagged, "s OK") {
		t.Fatalf("SELECT INBOX: %q", tagged)
	}
	if got := e.landedOn(addr, users[1]); got != "dovecot3" {
		t.Fatalf("%s before the drain: landed on %s, want dovecot3", users[1], got)
	}

	reloads := len(checksLogLines(e, `msg="configuration reloaded"`))
	checksRewrite(t, e.cfg, `state = "ready" # state of dovecot3`, `state = "drain" # state of dovecot3`)
	if err := e.md.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	checksWaitLine(t, e, reloads, `msg="configuration reloaded"`)
	checksWaitLine(t, e, 0, stateChange("dovecot", "dovecot3", "ready", "drain")...)

	if _, tagged := live.cmd("n", "NOOP"); !strings.HasPrefix(tagged, "n OK") {
		t.Errorf("live session on dovecot3 after the drain: NOOP got %q, want OK", tagged)
	}
	if untagged, tagged := live.cmd("f", "STATUS INBOX (MESSAGES)"); !strings.HasPrefix(tagged, "f OK") {
		t.Errorf("live session on dovecot3 after the drain: STATUS got %q %q, want OK", untagged, tagged)
	}
	// The live user and the sticky user stay; a new user goes elsewhere.
	if got := e.landedOn(addr, users[0]); got != "dovecot3" {
		t.Errorf("%s with a live session on the drained dovecot3: landed on %s, want dovecot3", users[0], got)
	}
	if got := e.landedOn(addr, users[1]); got != "dovecot3" {
		t.Errorf("%s, sticky on the drained dovecot3: landed on %s, want dovecot3", users[1], got)
	}
	if got := e.landedOn(addr, users[2]); got != "dovecot4" {
		t.Errorf("%s, new, hashed to the drained dovecot3: landed on %s, want dovecot4", users[2], got)
	}
	live.logout()
}

func serverNum(name string) int {
	var n int
	fmt.Sscanf(name, "dovecot%d", &n)
	return n - 1
}

// checksRewrite replaces old by new in the file at path, exactly once.
func checksRewrite(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), old); n != 1 {
		t.Fatalf("%s: %q occurs %d times, want 1", path, old, n)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestChecksShutdownSessionsOnMarkedDown: with on_marked_down =
// "shutdown-sessions", maildirector closes the live session of a server its
// IMAP check marks down (frozen: Dovecot itself would never close it); a
// session on another server lives on.
func TestChecksShutdownSessionsOnMarkedDown(t *testing.T) {
	e := startEnv(t, setupSpec{
		Frontends: imapFrontends(),
		Check:     "imap",
		Inter:     "200ms",
		Backend:   `on_marked_down = "shutdown-sessions"`,
	})
	addr := e.addrs["imap"]
	victim := greeted(t, addr)
	victim.login(e.usersOn("dovecot1", 1)[0])
	other := greeted(t, addr)
	other.login(e.usersOn("dovecot2", 1)[0])

	in := e.instanceOf("dovecot1")
	if err := in.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Thaw() })
	checksWaitLine(t, e, 0, downLine("dovecot", "dovecot1")...)
	closed := checksWaitLine(t, e, 0, `msg="closed the sessions of a server marked down"`, "server=dovecot1 ")
	if !strings.Contains(closed, "sessions=1") {
		t.Errorf("got %q, want sessions=1", closed)
	}
	// The client's connection ends (a read deadline of 15s bounds the wait).
	lines, err := victim.drain()
	if err != nil {
		t.Errorf("session on the downed dovecot1: got %v after %q, want the connection closed", err, lines)
	}
	t.Logf("the client of the downed server saw %q before EOF", lines)
	if _, tagged := other.cmd("n", "NOOP"); !strings.HasPrefix(tagged, "n OK") {
		t.Errorf("session on dovecot2: NOOP got %q, want OK", tagged)
	}
	other.logout()
}

// TestChecksPassiveHealth: error_limit = 2 consecutive connection failures
// of real logins mark a server down before its (slow) checks notice; later
// logins of its users go straight to the other server.
func TestChecksPassiveHealth(t *testing.T) {
	e := startEnv(t, setupSpec{
		Frontends: imapFrontends(),
		Check:     "imap",
		Inter:     "1m", // the checks will not notice within the test
		Backend:   "error_limit = 2",
	})
	addr := e.addrs["imap"]
	users := e.usersOn("dovecot1", 4)
	if err := e.instanceOf("dovecot1").Kill(); err != nil {
		t.Fatal(err)
	}
	tried := []string{"server failed, trying the next one", "server=dovecot1 "}
	for _, u := range users[:2] {
		if got := e.landedOn(addr, u); got != "dovecot2" {
			t.Errorf("%s with dovecot1 killed: landed on %s, want dovecot2", u, got)
		}
	}
	if n := len(checksLogLines(e, tried...)); n != 2 {
		t.Errorf("maildirector tried dovecot1 %d times for 2 logins, want 2", n)
	}
	down := checksWaitLine(t, e, 0, downLine("dovecot", "dovecot1")...)
	if !strings.Contains(down, "2 consecutive connection failures") || !strings.Contains(down, "forced=true") {
		t.Errorf("down line: got %q, want a forced down for 2 consecutive connection failures", down)
	}
	change := checksWaitLine(t, e, 0, stateChange("dovecot", "dovecot1", "up", "down")...)
	if !strings.Contains(change, "2 consecutive connection failures") {
		t.Errorf("director: got %q, want the passive reason", change)
	}
	if n := len(checksLogLines(e, checksOf("dovecot", "dovecot1", false)...)); n > 0 {
		t.Logf("note: %d active check(s) failed too", n)
	}

	for _, u := range users[2:] {
		if got := e.landedOn(addr, u); got != "dovecot2" {
			t.Errorf("%s after the passive down: landed on %s, want dovecot2", u, got)
		}
	}
	if n := len(checksLogLines(e, tried...)); n != 2 {
		t.Errorf("maildirector tried dovecot1 %d times in all, want 2 (none after the passive down)", n)
	}
}

// TestChecksIMAPCapabilitiesAdvertised: the pre-login CAPABILITY an IMAP
// check learns from Dovecot shows up in the frontend's own pre-login
// CAPABILITY; what concerns the pre-login dialogue (AUTH=LOGIN, which the
// proxy does not implement) does not. With a tcp check nothing is learned.
func TestChecksIMAPCapabilitiesAdvertised(t *testing.T) {
	capsOf := func(t *testing.T, e *env) []string {
		r := greeted(t, e.addrs["imap"])
		untagged, tagged := r.cmd("c", "CAPABILITY")
		if !strings.HasPrefix(tagged, "c OK") || len(untagged) != 1 {
			t.Fatalf("CAPABILITY: got %q %q", untagged, tagged)
		}
		r.logout()
		return strings.Fields(strings.TrimPrefix(untagged[0], "* CAPABILITY "))
	}
	learned := []string{"LOGIN-REFERRALS", "ENABLE", "IDLE"}

	t.Run("imap check", func(t *testing.T) {
		e := startEnv(t, setupSpec{Frontends: imapFrontends(), Check: "imap", Inter: "200ms"})
		checksWaitLine(t, e, 0, checksOf("dovecot", "dovecot1", true)...)
		caps := capsOf(t, e)
		for _, c := range learned {
			if !slices.Contains(caps, c) {
				t.Errorf("pre-login CAPABILITY %q lacks Dovecot's %s", caps, c)
			}
		}
		for _, c := range []string{"AUTH=LOGIN", "STARTTLS"} {
			if slices.Contains(caps, c) {
				// STARTTLS is the frontend's own and appears once at most.
				if c == "STARTTLS" && countOf(caps, c) == 1 {
					continue
				}
				t.Errorf("pre-login CAPABILITY %q has %s from the server", caps, c)
			}
		}
	})
	t.Run("tcp check", func(t *testing.T) {
		e := startEnv(t, setupSpec{Frontends: imapFrontends(), Check: "tcp", Inter: "200ms"})
		checksWaitLine(t, e, 0, checksOf("dovecot", "dovecot1", true)...)
		caps := capsOf(t, e)
		if slices.Contains(caps, "LOGIN-REFERRALS") {
			t.Errorf("pre-login CAPABILITY %q has LOGIN-REFERRALS without an imap check", caps)
		}
	})
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}
