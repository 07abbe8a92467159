package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

// Helpers of the e2e_*_test.go files (issue 18: gaps in the end-to-end proof).

// startEnvEdited is startEnv with two hooks that see the running lab:
// serverExtra (if not nil) gives more TOML lines for server i, like
// spec.ServerExtra; edit (if not nil) rewrites the generated configuration
// before maildirector starts and may change e.addrs (the addresses waited
// on and dialed).
func startEnvEdited(t *testing.T, spec setupSpec, serverExtra func(e *env, i int) string, edit func(e *env, cfg string) string) *env {
	t.Helper()
	if spec.Instances == 0 {
		spec.Instances = 2
	}
	labOpts := spec.Lab
	labOpts.Instances = spec.Instances
	lab := dovecotlab.StartT(t, labOpts)
	e := &env{t: t, lab: lab, spec: spec, dir: t.TempDir(), addrs: make(map[string]string)}
	e.cfg = filepath.Join(e.dir, "maildirector.toml")
	if serverExtra != nil {
		e.spec.ServerExtra = func(i int) string { return serverExtra(e, i) }
	}
	cfg := e.config()
	if edit != nil {
		cfg = edit(e, cfg)
	}
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	e.md = startProcess(t, e.cfg, e.addrs)
	return e
}

// dialFrom connects to addr from the local IP from (nil: the kernel's choice).
func dialFrom(t testing.TB, from net.IP, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != nil {
		d.LocalAddr = &net.TCPAddr{IP: from}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %v: %v", addr, from, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// greetedFrom is greeted for a client at the local IP from.
func greetedFrom(t testing.TB, from net.IP, addr string) *rawIMAP {
	t.Helper()
	r := newRawIMAP(t, dialFrom(t, from, addr))
	if g := r.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting: got %q, want * OK", g)
	}
	return r
}

// selectInbox fails the test unless SELECT INBOX answers OK: the session
// is logged in on a working mail process, not just past the login.
func (r *rawIMAP) selectInbox() {
	r.t.Helper()
	if _, tagged := r.cmd("S1", "SELECT INBOX"); !strings.HasPrefix(tagged, "S1 OK") {
		r.t.Fatalf("SELECT INBOX: got %q, want OK", tagged)
	}
}

// loginLines returns the Dovecot login lines of user, per server name.
func (e *env) loginLines(user string) map[string][]dovecotlab.Login {
	e.t.Helper()
	out := make(map[string][]dovecotlab.Login)
	for i, in := range e.lab.Instances {
		logins, err := in.Logins()
		if err != nil {
			e.t.Fatal(err)
		}
		for _, l := range logins {
			if l.User == user {
				out[serverName(i)] = append(out[serverName(i)], l)
			}
		}
	}
	return out
}

// landedOnce waits (bounded) for Dovecot's login line of user and returns
// the one server it landed on and the line; the test fails if the user
// logged in more than once or on more than one server.
func (e *env) landedOnce(t *testing.T, user string) (string, dovecotlab.Login) {
	t.Helper()
	eventually(t, "the login line of "+user, func() bool { return len(e.loginLines(user)) > 0 })
	got := e.loginLines(user)
	if len(got) != 1 {
		t.Fatalf("%s: got logins on %d servers (%v), want one", user, len(got), got)
	}
	for server, lines := range got {
		if len(lines) != 1 {
			t.Fatalf("%s: got %d logins on %s, want 1", user, len(lines), server)
		}
		return server, lines[0]
	}
	panic("unreachable")
}

// sessionLines returns maildirector's "msg=session" log lines as key/value maps.
func sessionLines(e *env) []map[string]string {
	var out []map[string]string
	for _, l := range strings.Split(e.md.log.String(), "\n") {
		kv := parseLogfmt(l)
		if kv["msg"] == "session" {
			out = append(out, kv)
		}
	}
	return out
}

// parseLogfmt splits one slog text line (key=value, values with spaces or
// quotes written as Go quoted strings) into a map; a malformed line gives
// what was read up to the fault.
func parseLogfmt(line string) map[string]string {
	kv := make(map[string]string)
	for line = strings.TrimSpace(line); line != ""; line = strings.TrimLeft(line, " ") {
		key, rest, ok := strings.Cut(line, "=")
		if !ok || strings.Contains(key, " ") {
			return kv
		}
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return kv
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else {
			val, rest, _ = strings.Cut(rest, " ")
		}
		kv[key] = val
		line = rest
	}
	return kv
}

// waitSession waits (bounded) for the session line that match selects.
func waitSession(t *testing.T, e *env, what string, match func(kv map[string]string) bool) map[string]string {
	t.Helper()
	var found map[string]string
	eventually(t, "maildirector's session line of "+what, func() bool {
		for _, kv := range sessionLines(e) {
			if match(kv) {
				found = kv
				return true
			}
		}
		return false
	})
	return found
}

// serverTLSLines is a server's [backend.dovecot.server] TLS table as an
// inline table (TOML v1.0 section "Inline Table").
func serverTLSLines(ca string) string {
	return fmt.Sprintf("tls = { enabled = true, ca = %q, server_name = \"localhost\" }", ca)
}

// readFile returns a file's content, failing the test if it is unreadable.
func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
