package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The end-to-end tests of the control socket (issue 10, "Act on the
// fleet"): `maildirector ctl` run as a subprocess against the real binary
// in front of real Dovecot servers, with real clients.

// ctlSocket is the control socket of a test deployment with ControlOn.
func (e *env) ctlSocket() string { return filepath.Join(e.dir, "ctl.sock") }

// startCtlEnv is startEnv with a control socket, once it accepts.
func startCtlEnv(t *testing.T, spec setupSpec) *env {
	t.Helper()
	spec.ControlOn = true
	e := startEnv(t, spec)
	e.waitCtl()
	return e
}

// waitCtl waits (bounded) until the control socket accepts: it opens
// after the frontends' listeners, which startProcess waits for.
func (e *env) waitCtl() {
	e.t.Helper()
	eventually(e.t, "the control socket to accept", func() bool {
		c, err := net.Dial("unix", e.ctlSocket())
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
}

// ctlResult is one run of `maildirector ctl`.
type ctlResult struct {
	stdout, stderr string
	code           int
}

// runCtl runs `maildirector ctl -s sock args...` as cred (nil: as the
// test process), bounded to a minute. It does not touch a testing.T, so
// that another goroutine may call it.
func runCtl(sock string, cred *syscall.Credential, args ...string) (ctlResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, append([]string{"ctl", "-s", sock}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The binary is built with -race, whose runtime sleeps a second at a
	// successful exit unless told otherwise.
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	err := cmd.Run()
	res := ctlResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		return res, fmt.Errorf("ctl %s: %w", strings.Join(args, " "), err)
	}
	return res, nil
}

func (e *env) ctlRun(cred *syscall.Credential, args ...string) ctlResult {
	e.t.Helper()
	res, err := runCtl(e.ctlSocket(), cred, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return res
}

// ctl runs a command that must succeed (exit 0, nothing on stderr) and
// returns its answer.
func (e *env) ctl(args ...string) string {
	e.t.Helper()
	res := e.ctlRun(nil, args...)
	if res.code != 0 || res.stderr != "" {
		e.t.Fatalf("ctl %s: exit %d, stderr %q, stdout %q; want exit 0 and no stderr", strings.Join(args, " "), res.code, res.stderr, res.stdout)
	}
	return strings.TrimSuffix(res.stdout, "\n")
}

// ctlJSON runs a command with --json and decodes its answer into v.
func (e *env) ctlJSON(v any, args ...string) {
	e.t.Helper()
	out := e.ctl(append([]string{"--json"}, args...)...)
	if strings.Contains(out, "\n") {
		e.t.Fatalf("ctl --json %s: got %d lines, want one JSON line: %q", strings.Join(args, " "), strings.Count(out, "\n")+1, out)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		e.t.Fatalf("ctl --json %s: %v in %q", strings.Join(args, " "), err, out)
	}
}

// ctlFails runs a command that must fail: exit 1, nothing on stdout, one
// line on stderr, which it returns.
func (e *env) ctlFails(args ...string) string {
	e.t.Helper()
	res := e.ctlRun(nil, args...)
	if res.code != 1 || res.stdout != "" || strings.Count(res.stderr, "\n") != 1 || !strings.HasSuffix(res.stderr, "\n") {
		e.t.Fatalf("ctl %s: exit %d, stdout %q, stderr %q; want exit 1, no stdout and one line on stderr", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	return strings.TrimSuffix(res.stderr, "\n")
}

// infoFields splits "show info"'s "key: value" lines.
func infoFields(out string) map[string]string {
	m := make(map[string]string)
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

// tableRows splits a human table into its rows' columns, header first.
func tableRows(out string) [][]string {
	var rows [][]string
	for _, l := range strings.Split(out, "\n") {
		rows = append(rows, strings.Fields(l))
	}
	return rows
}

// rowOf returns the row of a human table whose first column is key.
func rowOf(t *testing.T, out, key string) []string {
	t.Helper()
	for _, r := range tableRows(out)[1:] {
		if len(r) > 0 && r[0] == key {
			return r
		}
	}
	t.Fatalf("no row %q in\n%s", key, out)
	return nil
}

// ctlServer is a row of "show servers --json".
type ctlServer struct {
	Backend  string `json:"backend"`
	Server   string `json:"server"`
	Status   string `json:"status"`
	Admin    string `json:"admin"`
	Weight   int    `json:"weight"`
	Sessions int    `json:"sessions"`
	Assigned int    `json:"assigned"`
	Check    string `json:"check"`
}

// ctlSession is a row of "show sessions --json".
type ctlSession struct {
	ID        uint64 `json:"id"`
	SessionID string `json:"session"`
	Frontend  string `json:"frontend"`
	Protocol  string `json:"protocol"`
	Backend   string `json:"backend"`
	User      string `json:"user"`
	Server    string `json:"server"`
	Remote    string `json:"remote"`
}

// ctlWhere is one backend's answer of "where USER --json".
type ctlWhere struct {
	Backend  string       `json:"backend"`
	User     string       `json:"user"`
	Server   string       `json:"server"`
	Reason   string       `json:"reason"`
	Hashed   string       `json:"hashed"`
	Moved    bool         `json:"moved"`
	Frozen   bool         `json:"frozen"`
	Sessions []ctlSession `json:"sessions"`
}

// ctlServers returns "show servers --json" by "backend/server".
func (e *env) ctlServers() map[string]ctlServer {
	e.t.Helper()
	var rows []ctlServer
	e.ctlJSON(&rows, "show", "servers")
	m := make(map[string]ctlServer)
	for _, r := range rows {
		m[r.Backend+"/"+r.Server] = r
	}
	return m
}

// ctlSessions returns "show sessions [FILTER] --json".
func (e *env) ctlSessions(filter string) []ctlSession {
	e.t.Helper()
	var ss []ctlSession
	e.ctlJSON(&ss, strings.Fields("show sessions "+filter)...)
	return ss
}

// ctlWhere returns "where USER --json" for the one backend "dovecot".
func (e *env) ctlWhere(user string) ctlWhere {
	e.t.Helper()
	var ws []ctlWhere
	e.ctlJSON(&ws, "where", user)
	if len(ws) != 1 || ws[0].Backend != "dovecot" {
		e.t.Fatalf("where %s: got %+v, want one answer for backend dovecot", user, ws)
	}
	return ws[0]
}

// ctlIMAPFrontend is one plaintext IMAP frontend named "imap".
var ctlIMAPFrontend = frontendSpec{Name: "imap", Protocol: "imap", TLS: "starttls", Plaintext: "allow"}

// loggedIn is a logged-in IMAP session of user with INBOX selected.
func loggedIn(t *testing.T, e *env, user string) *rawIMAP {
	t.Helper()
	r := greeted(t, e.addrs["imap"])
	r.login(user)
	r.selectInbox()
	return r
}

// kicked fails the test unless the session hears "* BYE" and is closed.
func kicked(t *testing.T, r *rawIMAP, what string) {
	t.Helper()
	lines, err := r.drain()
	if err != nil || !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "* BYE") }) {
		t.Errorf("%s: got %q, %v; want * BYE and a close", what, lines, err)
	}
}

// stillServed fails the test unless the session answers NOOP with OK.
func stillServed(t *testing.T, r *rawIMAP, what string) {
	t.Helper()
	if _, tagged := r.cmd("N1", "NOOP"); !strings.HasPrefix(tagged, "N1 OK") {
		t.Errorf("%s: NOOP got %q, want N1 OK", what, tagged)
	}
}

// TestCtlVerbs runs every command of the control socket against a running
// instance, through `maildirector ctl`, and checks its human answer and
// its --json answer; a wrong command or argument is one line on stderr
// and exit status 1.
func TestCtlVerbs(t *testing.T) {
	e := startCtlEnv(t, setupSpec{Frontends: []frontendSpec{ctlIMAPFrontend}, Global: "maxconn = 777"})
	a, b := e.usersOn("dovecot1", 1)[0], e.usersOn("dovecot2", 1)[0]
	live := loggedIn(t, e, a)
	// The sessions of the harness's probes for the listeners end soon
	// after they close: wait until this one is all there is.
	eventually(t, "the one live session", func() bool { return len(e.ctlSessions("")) == 1 })

	t.Run("help", func(t *testing.T) {
		if out := e.ctl("help"); !strings.HasPrefix(out, "commands:") || !strings.Contains(out, "release USER [SERVER]") {
			t.Errorf("help: got %q, want the list of commands", out)
		}
	})

	t.Run("show info", func(t *testing.T) {
		data, err := os.ReadFile(e.cfg)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		vcmd := exec.Command(binPath, "version")
		vcmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
		vout, err := vcmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		// The first line is "maildirector VERSION"; the second says what
		// signs with RSA keys (internal/rsasign).
		first, _, _ := strings.Cut(string(vout), "\n")
		version := strings.TrimPrefix(strings.TrimSpace(first), "maildirector ")
		info := infoFields(e.ctl("show", "info"))
		want := map[string]string{"version": version, "pid": strconv.Itoa(e.md.cmd.Process.Pid), "config": e.cfg,
			"config sha256": hex.EncodeToString(sum[:]), "sessions": "1", "maxconn": "777", "frontends": "1", "backends": "1", "frozen users": "0"}
		for k, v := range want {
			if info[k] != v {
				t.Errorf("show info %s: got %q, want %q", k, info[k], v)
			}
		}
		var j struct {
			Version   string `json:"version"`
			PID       int    `json:"pid"`
			Config    string `json:"config"`
			SHA256    string `json:"config_sha256"`
			Sessions  int    `json:"sessions"`
			MaxConn   int    `json:"maxconn"`
			Frontends int    `json:"frontends"`
			Frozen    int    `json:"frozen_users"`
		}
		e.ctlJSON(&j, "show", "info")
		if j.Version != version || j.PID != e.md.cmd.Process.Pid || j.Config != e.cfg || j.SHA256 != hex.EncodeToString(sum[:]) ||
			j.Sessions != 1 || j.MaxConn != 777 || j.Frontends != 1 || j.Frozen != 0 {
			t.Errorf("show info --json: got %+v, want version %s, pid %d, config %s, sha256 %x, 1 session, maxconn 777, 1 frontend",
				j, version, e.md.cmd.Process.Pid, e.cfg, sum)
		}
	})

	t.Run("show stat", func(t *testing.T) {
		r := csv.NewReader(strings.NewReader(e.ctl("show", "stat")))
		r.FieldsPerRecord = -1
		recs, err := r.ReadAll()
		if err != nil || len(recs) < 4 {
			t.Fatalf("show stat: %v, %d records; want CSV with a header and rows", err, len(recs))
		}
		if !strings.HasPrefix(recs[0][0], "# ") {
			t.Errorf("show stat: header starts %q, want \"# pxname\" as HAProxy's", recs[0][0])
		}
		ours := append([]string{strings.TrimPrefix(recs[0][0], "# ")}, recs[0][1:]...)
		want := haproxyCSVHeader(t)
		// HAProxy's columns in HAProxy's places, up to the balance algorithm.
		upto := slicesIndex(want, "algo")
		if upto < 0 || len(ours) <= upto || !slices.Equal(ours[:upto+1], want[:upto+1]) {
			t.Errorf("show stat header:\n got %v\nwant HAProxy's first %d columns %v", ours, upto+1, want[:upto+1])
		}
		rows := map[string]bool{}
		for _, rec := range recs[1:] {
			rows[rec[0]+"/"+rec[1]] = true
		}
		for _, k := range []string{"imap/FRONTEND", "dovecot/dovecot1", "dovecot/dovecot2", "dovecot/BACKEND"} {
			if !rows[k] {
				t.Errorf("show stat: no row %s in %v", k, rows)
			}
		}
		var snap struct {
			Backends []struct {
				Name    string `json:"name"`
				Servers []struct {
					Name string `json:"name"`
					Cur  int    `json:"scur"`
				} `json:"servers"`
			} `json:"backends"`
		}
		e.ctlJSON(&snap, "show", "stat")
		if len(snap.Backends) != 1 || snap.Backends[0].Name != "dovecot" || len(snap.Backends[0].Servers) != 2 || snap.Backends[0].Servers[0].Cur != 1 {
			t.Errorf("show stat --json: got %+v, want backend dovecot with two servers, one session on dovecot1", snap)
		}
	})

	t.Run("show servers", func(t *testing.T) {
		out := e.ctl("show", "servers")
		if h := tableRows(out)[0]; !slices.Equal(h, []string{"BACKEND/SERVER", "STATUS", "ADMIN", "WEIGHT", "SESSIONS", "USERS", "SINCE", "CHECK"}) {
			t.Errorf("show servers header: got %q", h)
		}
		for s, sessions := range map[string]string{"dovecot/dovecot1": "1", "dovecot/dovecot2": "0"} {
			r := rowOf(t, out, s)
			if len(r) < 7 || r[1] != "UP" || r[2] != "ready" || r[3] != "100" || r[4] != sessions || r[5] != sessions {
				t.Errorf("show servers %s: got %q, want UP ready 100 with %s session and user", s, r, sessions)
			}
		}
		j := e.ctlServers()
		if s := j["dovecot/dovecot1"]; s.Status != "UP" || s.Admin != "ready" || s.Weight != 100 || s.Sessions != 1 || s.Assigned != 1 {
			t.Errorf("show servers --json dovecot1: got %+v, want UP ready 100, 1 session, 1 user", s)
		}
		if s := j["dovecot/dovecot2"]; s.Status != "UP" || s.Sessions != 0 || len(j) != 2 {
			t.Errorf("show servers --json: got %+v, want two servers, dovecot2 UP without sessions", j)
		}
	})

	t.Run("show sessions", func(t *testing.T) {
		for _, filter := range []string{"", a, "dovecot1", "dovecot/dovecot1"} {
			out := e.ctl(strings.Fields("show sessions " + filter)...)
			rows := tableRows(out)
			if len(rows) != 2 || rows[0][0] != "ID" || rows[1][3] != a || rows[1][4] != "dovecot/dovecot1" {
				t.Errorf("show sessions %s: got\n%s\nwant one session of %s on dovecot/dovecot1", filter, out, a)
			}
			if j := e.ctlSessions(filter); len(j) != 1 || j[0].User != a || j[0].Server != "dovecot1" || j[0].Backend != "dovecot" || j[0].Frontend != "imap" || j[0].Protocol != "imap" {
				t.Errorf("show sessions %s --json: got %+v, want one imap session of %s on dovecot/dovecot1", filter, j, a)
			}
		}
		for _, filter := range []string{b, "dovecot/dovecot2"} {
			if out := e.ctl("show", "sessions", filter); out != "no sessions" {
				t.Errorf("show sessions %s: got %q, want no sessions", filter, out)
			}
			if j := e.ctlSessions(filter); len(j) != 0 {
				t.Errorf("show sessions %s --json: got %+v, want none", filter, j)
			}
		}
	})

	t.Run("show users", func(t *testing.T) {
		out := e.ctl("show", "users", "dovecot/dovecot1")
		if r := rowOf(t, out, a); r[1] != "dovecot/dovecot1" || r[2] != "1" {
			t.Errorf("show users dovecot/dovecot1: got %q, want %s with 1 session", r, a)
		}
		var j []struct {
			User     string `json:"user"`
			Server   string `json:"server"`
			Sessions int    `json:"sessions"`
			Moved    bool   `json:"moved"`
		}
		e.ctlJSON(&j, "show", "users", "dovecot1")
		if len(j) != 1 || j[0].User != a || j[0].Server != "dovecot1" || j[0].Sessions != 1 || j[0].Moved {
			t.Errorf("show users dovecot1 --json: got %+v, want %s with 1 session, not moved", j, a)
		}
		if out := e.ctl("show", "users", "dovecot2"); out != "no users assigned" {
			t.Errorf("show users dovecot2: got %q, want no users assigned", out)
		}
	})

	t.Run("where", func(t *testing.T) {
		out := e.ctl("where", a)
		if !strings.Contains(out, a+" → dovecot1") || !strings.Contains(out, "sticky: 1 live session") {
			t.Errorf("where %s: got\n%s\nwant it on dovecot1, sticky with 1 live session", a, out)
		}
		if w := e.ctlWhere(a); w.User != a || w.Server != "dovecot1" || w.Hashed != "dovecot1" || w.Moved || w.Frozen || len(w.Sessions) != 1 {
			t.Errorf("where %s --json: got %+v, want dovecot1, hashed there, one session", a, w)
		}
		if w := e.ctlWhere(b); w.Server != "dovecot2" || len(w.Sessions) != 0 || !strings.Contains(w.Reason, "no assignment") {
			t.Errorf("where %s --json: got %+v, want dovecot2 by the hash, no assignment, no session", b, w)
		}
	})

	t.Run("set server", func(t *testing.T) {
		if out := e.ctl("set", "server", "dovecot/dovecot2", "weight", "50"); out != "dovecot/dovecot2: weight 50" {
			t.Errorf("set weight: got %q", out)
		}
		if s := rowOf(t, e.ctl("show", "servers"), "dovecot/dovecot2"); s[3] != "50" {
			t.Errorf("show servers after set weight 50: got %q", s)
		}
		var msg string
		if e.ctlJSON(&msg, "set", "server", "dovecot2", "weight", "100"); msg != "dovecot2: weight 100" {
			t.Errorf("set weight --json: got %q", msg)
		}
		for _, st := range []string{"drain", "maint", "ready"} {
			if out := e.ctl("set", "server", "dovecot/dovecot2", "state", st); out != "dovecot/dovecot2: state "+st {
				t.Errorf("set state %s: got %q", st, out)
			}
			if s := e.ctlServers()["dovecot/dovecot2"]; s.Admin != st {
				t.Errorf("show servers after set state %s: got admin %q", st, s.Admin)
			}
		}
		if e.ctlJSON(&msg, "set", "server", "dovecot/dovecot2", "state", "ready"); msg != "dovecot/dovecot2: state ready" {
			t.Errorf("set state --json: got %q", msg)
		}
		if s := e.ctlServers()["dovecot/dovecot2"]; s.Weight != 100 || s.Admin != "ready" {
			t.Errorf("dovecot2 at the end: got %+v, want weight 100, ready", s)
		}
	})

	t.Run("move", func(t *testing.T) {
		if out := e.ctl("move", a, "dovecot/dovecot2"); out != a+" moved to dovecot/dovecot2; 1 sessions kicked" {
			t.Errorf("move: got %q", out)
		}
		kicked(t, live, "the moved user's session")
		if w := e.ctlWhere(a); w.Server != "dovecot2" || !w.Moved || w.Hashed != "dovecot1" {
			t.Errorf("where after move: got %+v, want dovecot2, moved, hashed dovecot1", w)
		}
		var m struct {
			User   string `json:"user"`
			Server string `json:"server"`
			Kicked int    `json:"kicked"`
		}
		if e.ctlJSON(&m, "move", a, "dovecot1"); m.User != a || m.Server != "dovecot/dovecot1" || m.Kicked != 0 {
			t.Errorf("move --json: got %+v", m)
		}
		if got := e.landedOn(e.addrs["imap"], a); got != "dovecot1" {
			t.Errorf("login after the move back: landed on %s, want dovecot1", got)
		}
	})

	t.Run("kick", func(t *testing.T) {
		r := loggedIn(t, e, a)
		if out := e.ctl("kick", a); out != a+": 1 sessions kicked" {
			t.Errorf("kick: got %q", out)
		}
		kicked(t, r, "the kicked session")
		var msg string
		if e.ctlJSON(&msg, "kick", a); msg != a+": 0 sessions kicked" {
			t.Errorf("kick --json: got %q", msg)
		}
	})

	t.Run("shutdown sessions", func(t *testing.T) {
		r := loggedIn(t, e, a)
		if out := e.ctl("shutdown", "sessions", "server", "dovecot/dovecot1"); out != "dovecot/dovecot1: 1 sessions closed" {
			t.Errorf("shutdown sessions: got %q", out)
		}
		kicked(t, r, "a session of the server whose sessions were shut down")
		var msg string
		if e.ctlJSON(&msg, "shutdown", "sessions", "server", "dovecot1"); msg != "dovecot1: 0 sessions closed" {
			t.Errorf("shutdown sessions --json: got %q", msg)
		}
	})

	t.Run("flush", func(t *testing.T) {
		r := loggedIn(t, e, a)
		if out := e.ctl("flush", "dovecot/dovecot1"); out != "dovecot/dovecot1: 1 users forgotten; 1 sessions kicked" {
			t.Errorf("flush: got %q", out)
		}
		kicked(t, r, "a session of the flushed server")
		if out := e.ctl("show", "users", "dovecot1"); out != "no users assigned" {
			t.Errorf("show users after flush: got %q", out)
		}
		// --max-parallel: the sessions are kicked in the background.
		r = loggedIn(t, e, b)
		var f struct {
			Server string `json:"server"`
			Users  int    `json:"users"`
			Kicked int    `json:"kicked"`
		}
		if e.ctlJSON(&f, "flush", "dovecot/dovecot2", "--max-parallel", "2"); f.Server != "dovecot/dovecot2" || f.Users != 1 {
			t.Errorf("flush --max-parallel 2 --json: got %+v, want dovecot/dovecot2 with 1 user", f)
		}
		kicked(t, r, "a session of the server flushed with --max-parallel")
		if out := e.ctl("show", "users", "dovecot2"); out != "no users assigned" {
			t.Errorf("show users after flush --max-parallel: got %q", out)
		}
	})

	t.Run("freeze and release", func(t *testing.T) {
		if out := e.ctl("show", "frozen"); out != "none" {
			t.Errorf("show frozen: got %q, want none", out)
		}
		if out := e.ctl("freeze", a); out != a+" frozen; 0 sessions kicked; nothing under way" {
			t.Errorf("freeze: got %q", out)
		}
		if out := e.ctl("show", "frozen"); out != a {
			t.Errorf("show frozen: got %q, want %s", out, a)
		}
		var frozen []string
		if e.ctlJSON(&frozen, "show", "frozen"); !slices.Equal(frozen, []string{a}) {
			t.Errorf("show frozen --json: got %q, want [%s]", frozen, a)
		}
		if info := infoFields(e.ctl("show", "info")); info["frozen users"] != "1" {
			t.Errorf("show info frozen users: got %q, want 1", info["frozen users"])
		}
		if w := e.ctlWhere(a); !w.Frozen {
			t.Errorf("where of a frozen user: got %+v, want frozen", w)
		}
		if out := e.ctl("release", a); out != a+" released" {
			t.Errorf("release: got %q", out)
		}
		var fz struct {
			User   string `json:"user"`
			Kicked int    `json:"kicked"`
			Live   int    `json:"live"`
		}
		if e.ctlJSON(&fz, "freeze", a); fz.User != a || fz.Kicked != 0 || fz.Live != 0 {
			t.Errorf("freeze --json: got %+v", fz)
		}
		var rel struct {
			User   string `json:"user"`
			Server string `json:"server"`
		}
		if e.ctlJSON(&rel, "release", a, "dovecot/dovecot2"); rel.User != a || rel.Server != "dovecot/dovecot2" {
			t.Errorf("release to a server --json: got %+v", rel)
		}
		if w := e.ctlWhere(a); w.Frozen || w.Server != "dovecot2" || !w.Moved {
			t.Errorf("where after release to dovecot2: got %+v", w)
		}
		if e.ctlJSON(&frozen, "show", "frozen"); len(frozen) != 0 {
			t.Errorf("show frozen --json after release: got %q, want []", frozen)
		}
		if l := e.ctlFails("release", a); l != "error: "+a+" is not frozen" {
			t.Errorf("release of a user not frozen: got %q", l)
		}
	})

	t.Run("reload", func(t *testing.T) {
		orig := readFile(t, e.cfg)
		if out := e.ctl("reload"); out != "OK" {
			t.Errorf("reload: got %q, want OK", out)
		}
		var msg string
		if e.ctlJSON(&msg, "reload"); msg != "OK" {
			t.Errorf("reload --json: got %q, want OK", msg)
		}
		// Two problems: both are named by their key path.
		broken := strings.Replace(orig, `balance = "user"`, `balance = "bogus"`, 1)
		broken = strings.Replace(broken, "[control]\n", "[control]\nfreeze_wait = \"10m\"\n", 1)
		if err := os.WriteFile(e.cfg, []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.WriteFile(e.cfg, []byte(orig), 0o644) })
		res := e.ctlRun(nil, "reload")
		if res.code != 1 || res.stdout != "" || !strings.HasPrefix(res.stderr, "error: ") ||
			!strings.Contains(res.stderr, "backend.dovecot.balance") || !strings.Contains(res.stderr, "control.freeze_wait") {
			t.Errorf("reload of a broken file: exit %d, stdout %q, stderr %q; want exit 1 naming backend.dovecot.balance and control.freeze_wait",
				res.code, res.stdout, res.stderr)
		}
		res = e.ctlRun(nil, "--json", "reload")
		var je struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal([]byte(res.stderr), &je); res.code != 1 || err != nil || !strings.Contains(je.Error, "backend.dovecot.balance") {
			t.Errorf("reload --json of a broken file: exit %d, stderr %q; want exit 1 and {\"error\": ...}", res.code, res.stderr)
		}
		if err := os.WriteFile(e.cfg, []byte(orig), 0o644); err != nil {
			t.Fatal(err)
		}
		// The running configuration stayed: users still land where they did.
		if got := e.landedOn(e.addrs["imap"], b); got != "dovecot2" {
			t.Errorf("after the failed reload %s landed on %s, want dovecot2", b, got)
		}
		if out := e.ctl("reload"); out != "OK" {
			t.Errorf("reload of the restored file: got %q, want OK", out)
		}
	})

	t.Run("wrong commands", func(t *testing.T) {
		for _, c := range []struct{ cmd, want string }{
			{"bogus", `error: unknown command "bogus"; try help`},
			{"show", "error: show: missing what to show"},
			{"show bogus", "error: show bogus: unknown"},
			{"show info extra", "error: show info: too many arguments"},
			{"show users", "error: show users: missing SERVER"},
			{"show users nosuch", `error: no server "nosuch" in any backend`},
			{"set server dovecot/nosuch state ready", `error: backend dovecot has no server "nosuch"`},
			{"set server nobackend/dovecot1 state ready", `error: no backend "nobackend"`},
			{"set server dovecot1 state bogus", `error: state "bogus": want ready, drain or maint`},
			{"set server dovecot1 weight x", `error: weight "x": want a number`},
			{"set server dovecot1 weight 100000", "error: weight 100000: want 0.."},
			{"set server dovecot1 color red", `error: set server: unknown field "color"`},
			{"set dovecot1", "error: usage: set server SERVER"},
			{"shutdown sessions dovecot1", "error: usage: shutdown sessions server SERVER"},
			{"where", "error: where: missing USER"},
			{"where " + a + " " + b, "error: where " + a + ": too many arguments"},
			{"move " + a, "error: move " + a + ": missing SERVER"},
			{"move " + a + " nosuch", `error: no server "nosuch" in any backend`},
			{"kick", "error: kick: missing USER"},
			{"flush", "error: flush: missing SERVER"},
			{"flush dovecot1 --max-parallel 0", "error: --max-parallel wants a number from 1 to 10000"},
			{"flush dovecot1 --max-parallel", "error: --max-parallel needs a number"},
			{"freeze", "error: freeze: missing USER"},
			{"release " + b + " dovecot1 extra", "error: release " + b + " dovecot1: too many arguments"},
			{"reload now", "error: reload: too many arguments"},
			{"show info --bogus", `error: unknown flag "--bogus"`},
		} {
			if got := e.ctlFails(strings.Fields(c.cmd)...); !strings.HasPrefix(got, c.want) {
				t.Errorf("ctl %s: got %q, want a line starting %q", c.cmd, got, c.want)
			}
			got := e.ctlFails(append([]string{"--json"}, strings.Fields(c.cmd)...)...)
			var je struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal([]byte(got), &je); err != nil || !strings.HasPrefix("error: "+je.Error, c.want) {
				t.Errorf("ctl --json %s: got %q, want {\"error\": %q...}", c.cmd, got, strings.TrimPrefix(c.want, "error: "))
			}
		}
		// None of them changed anything.
		for name, s := range e.ctlServers() {
			if s.Admin != "ready" || s.Weight != 100 {
				t.Errorf("%s after the wrong commands: got %+v, want ready, weight 100", name, s)
			}
		}
	})
}

// TestCtlMoveIdleSession: "move" of a user in IMAP IDLE ends the session
// with "* BYE"; the client's next login lands on the new server (as
// Dovecot's own login log says), and an LMTP delivery right after the move
// lands on the new server only.
func TestCtlMoveIdleSession(t *testing.T) {
	fes := append(lmtpFrontends(""), ctlIMAPFrontend)
	e := startCtlEnv(t, setupSpec{Frontends: fes, Backend: lmtpBackend})
	u := e.lmtpUsersOn("dovecot1", 1)[0]

	r := loggedIn(t, e, u)
	r.send("I1 IDLE\r\n")
	if l := r.line(); !strings.HasPrefix(l, "+ ") {
		t.Fatalf("IDLE: got %q, want a continuation", l)
	}
	if server, _ := e.landedOnce(t, u); server != "dovecot1" {
		t.Fatalf("%s logged in on %s, want dovecot1 (the hash)", u, server)
	}

	if out := e.ctl("move", u, "dovecot2"); out != lmtpAddr(u)+" moved to dovecot/dovecot2; 1 sessions kicked" {
		t.Errorf("move: got %q", out)
	}
	kicked(t, r, "the IDLE session of the moved user")

	m := lmtpDial(t, e.addrs["lmtp"])
	replies, err := m.send("mta@example.org", []string{lmtpAddr(u)}, lmtpMessage("after-move", 0))
	if err != nil || len(replies) != 1 || replies[0].Code != 250 {
		t.Fatalf("LMTP delivery after the move: %v, %v; want 250", replies, err)
	}
	m.close()
	if got := e.lmtpIDs(u); len(got) != 1 || got["dovecot2"]["after-move"] != 1 || len(got["dovecot2"]) != 1 {
		t.Errorf("%s's mail per server: got %v, want only the one message, on dovecot2", u, got)
	}

	if got := e.landedOn(e.addrs["imap"], u); got != "dovecot2" {
		t.Errorf("login after the move: landed on %s, want dovecot2", got)
	}
	if got := e.loginsOf(u); got["dovecot1"] != 1 || got["dovecot2"] != 1 {
		t.Errorf("Dovecot's logins of %s: got %v, want one on each (before and after the move)", u, got)
	}
}

// TestCtlFreeze: while a user is frozen, a login waits and gets NO
// [UNAVAILABLE] after freeze_wait, or goes through when the user is
// released meanwhile, to the release's server; LMTP deliveries get 451
// 4.2.0, and once released the MTA's retries deliver exactly one copy of
// each message, all on the new server.
func TestCtlFreeze(t *testing.T) {
	fes := append(lmtpFrontends(""), ctlIMAPFrontend)
	e := startCtlEnv(t, setupSpec{Frontends: fes, Backend: lmtpBackend, Control: `freeze_wait = "2s"`})
	u := e.lmtpUsersOn("dovecot1", 1)[0]
	live := loggedIn(t, e, u)

	if out := e.ctl("freeze", u); out != lmtpAddr(u)+" frozen; 1 sessions kicked; nothing under way" {
		t.Errorf("freeze: got %q", out)
	}
	kicked(t, live, "the session of the frozen user")

	// Mail during the freeze: 451 4.2.0 at RCPT, nothing stored.
	ids := []string{"frozen-1", "frozen-2", "frozen-3"}
	m := lmtpDial(t, e.addrs["lmtp"])
	for _, id := range ids {
		replies, err := m.send("mta@example.org", []string{lmtpAddr(u)}, lmtpMessage(id, 0))
		if err != nil || len(replies) != 1 || replies[0].Code != 451 || !strings.HasPrefix(replies[0].Text, "4.2.0") {
			t.Fatalf("LMTP %s during the freeze: %v, %v; want 451 4.2.0", id, replies, err)
		}
	}

	// A login during the freeze waits freeze_wait, then NO [UNAVAILABLE].
	r := greeted(t, e.addrs["imap"])
	if _, tagged := r.cmd("L1", "LOGIN "+u+" pass"); !strings.HasPrefix(tagged, "L1 NO [UNAVAILABLE]") {
		t.Errorf("login during the freeze: got %q, want L1 NO [UNAVAILABLE]", tagged)
	}
	r.c.Close()
	eventually(t, "no session of "+u+" left", func() bool { return e.ctl("show", "sessions", u) == "no sessions" })

	// A login started during the freeze goes through when another
	// goroutine releases the user to dovecot2.
	r = greeted(t, e.addrs["imap"])
	r.send("L1 LOGIN " + u + " pass\r\n")
	released := make(chan ctlResult, 1)
	go releaseWhenWaiting(e.ctlSocket(), u, released)
	if _, tagged := r.until("L1"); !strings.HasPrefix(tagged, "L1 OK") {
		t.Errorf("login released during its wait: got %q, want L1 OK", tagged)
	}
	if res := <-released; res.code != 0 || strings.TrimSpace(res.stdout) != lmtpAddr(u)+" released to dovecot/dovecot2" {
		t.Errorf("release: exit %d, stdout %q, stderr %q", res.code, res.stdout, res.stderr)
	}
	r.selectInbox()
	eventually(t, "Dovecot's log of the released login", func() bool { return e.loginsOf(u)["dovecot2"] == 1 })
	if got := e.loginsOf(u); got["dovecot1"] != 1 {
		t.Errorf("Dovecot's logins of %s: got %v, want the one before the freeze on dovecot1, the released one on dovecot2", u, got)
	}

	// The MTA retries: each message is delivered once, on dovecot2.
	for _, id := range ids {
		replies, err := m.send("mta@example.org", []string{lmtpAddr(u)}, lmtpMessage(id, 0))
		if err != nil || len(replies) != 1 || replies[0].Code != 250 {
			t.Fatalf("LMTP retry of %s after the release: %v, %v; want 250", id, replies, err)
		}
	}
	m.close()
	want := map[string]int{"frozen-1": 1, "frozen-2": 1, "frozen-3": 1}
	if got := e.lmtpIDs(u); len(got) != 1 || !maps.Equal(got["dovecot2"], want) {
		t.Errorf("%s's mail per server: got %v, want one copy of each message, all on dovecot2", u, got)
	}
}

// releaseWhenWaiting releases user to dovecot2 once a session of the
// user's is waiting for a server (it has a user and no server yet), and
// sends the ctl's result. Bounded: it releases anyway after 10s.
func releaseWhenWaiting(sock, u string, done chan<- ctlResult) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		res, err := runCtl(sock, nil, "--json", "show", "sessions", u)
		var ss []ctlSession
		if err == nil && json.Unmarshal([]byte(res.stdout), &ss) == nil && len(ss) == 1 && ss[0].Server == "" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The login is past its user name; let it reach the wait.
	time.Sleep(100 * time.Millisecond)
	res, err := runCtl(sock, nil, "release", u, "dovecot2")
	if err != nil {
		res = ctlResult{code: -1, stderr: err.Error()}
	}
	done <- res
}

// TestCtlServerStates: "maint" takes no new session, sticky users
// included, but leaves live sessions alone; "shutdown sessions server"
// closes them; "drain" keeps the users assigned to the server and sends
// new ones elsewhere.
func TestCtlServerStates(t *testing.T) {
	e := startCtlEnv(t, setupSpec{Frontends: []frontendSpec{ctlIMAPFrontend}})
	us := e.usersOn("dovecot1", 5)
	liveUser, sticky, fresh, drainSticky, drainFresh := us[0], us[1], us[2], us[3], us[4]

	live := loggedIn(t, e, liveUser)
	if got := e.landedOn(e.addrs["imap"], sticky); got != "dovecot1" {
		t.Fatalf("%s: landed on %s, want dovecot1 (the hash)", sticky, got)
	}

	e.ctl("set", "server", "dovecot/dovecot1", "state", "maint")
	stillServed(t, live, "a live session on the server put in maint")
	if got := e.landedOn(e.addrs["imap"], fresh); got != "dovecot2" {
		t.Errorf("new user %s during maint: landed on %s, want dovecot2", fresh, got)
	}
	if got := e.landedOn(e.addrs["imap"], sticky); got != "dovecot2" {
		t.Errorf("user %s assigned to dovecot1, during maint: landed on %s, want dovecot2", sticky, got)
	}
	stillServed(t, live, "a live session on the server in maint, after other logins")
	if ss := e.ctlSessions("dovecot/dovecot1"); len(ss) != 1 || ss[0].User != liveUser {
		t.Errorf("sessions on dovecot1 in maint: got %+v, want the live one of %s", ss, liveUser)
	}

	if out := e.ctl("shutdown", "sessions", "server", "dovecot/dovecot1"); out != "dovecot/dovecot1: 1 sessions closed" {
		t.Errorf("shutdown sessions: got %q", out)
	}
	kicked(t, live, "the live session after shutdown sessions")
	eventually(t, "dovecot1 without sessions", func() bool { return e.ctlServers()["dovecot/dovecot1"].Sessions == 0 })

	e.ctl("set", "server", "dovecot/dovecot1", "state", "ready")
	if got := e.landedOn(e.addrs["imap"], drainSticky); got != "dovecot1" {
		t.Fatalf("%s: landed on %s, want dovecot1", drainSticky, got)
	}
	e.ctl("set", "server", "dovecot/dovecot1", "state", "drain")
	if got := e.landedOn(e.addrs["imap"], drainSticky); got != "dovecot1" {
		t.Errorf("user %s assigned to dovecot1, during drain: landed on %s, want dovecot1", drainSticky, got)
	}
	if got := e.landedOn(e.addrs["imap"], drainFresh); got != "dovecot2" {
		t.Errorf("new user %s during drain: landed on %s, want dovecot2", drainFresh, got)
	}
}

// TestCtlSocketRefusesStrangers: the socket has the configured mode and
// refuses a user without write permission on it; the same user gets in
// once the mode lets it, so the refusal was the socket's mode.
func TestCtlSocketRefusesStrangers(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("running the client as nobody needs root, and CI runs as root")
		}
		t.Skip("running the client as nobody needs root (CI runs as root and runs this)")
	}
	e := startCtlEnv(t, setupSpec{Instances: 1, Frontends: []frontendSpec{ctlIMAPFrontend}, Control: `mode = "0600"`})
	fi, err := os.Stat(e.ctlSocket())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket: got mode %v, want a socket with 0600", fi.Mode())
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	// Let nobody reach the socket and run the binary: only the socket's
	// own mode is left to refuse it.
	for _, d := range []string{e.dir, filepath.Dir(e.dir), filepath.Dir(binPath)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}

	res := e.ctlRun(cred, "show", "info")
	if res.code != 1 || res.stdout != "" || !strings.Contains(res.stderr, "permission denied") {
		t.Errorf("ctl as nobody: exit %d, stdout %q, stderr %q; want exit 1, permission denied", res.code, res.stdout, res.stderr)
	}
	if info := infoFields(e.ctl("show", "info")); info["config"] != e.cfg {
		t.Errorf("ctl as root after the refusal: got %v", info)
	}
	if err := os.Chmod(e.ctlSocket(), 0o666); err != nil {
		t.Fatal(err)
	}
	if res := e.ctlRun(cred, "show", "info"); res.code != 0 {
		t.Errorf("ctl as nobody with the socket at 0666: exit %d, stderr %q; want it let in", res.code, res.stderr)
	}
}

// ctlConn is a raw connection to the control socket.
type ctlConn struct {
	t  *testing.T
	c  *net.UnixConn
	br *bufio.Reader
}

func dialCtl(t *testing.T, e *env) *ctlConn {
	t.Helper()
	c, err := net.Dial("unix", e.ctlSocket())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return &ctlConn{t: t, c: c.(*net.UnixConn), br: bufio.NewReader(c)}
}

func (c *ctlConn) write(b []byte) {
	c.t.Helper()
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatalf("write to the control socket: %v", err)
	}
}

// answer reads one answer: its lines up to the empty line.
func (c *ctlConn) answer() []string {
	c.t.Helper()
	var lines []string
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read an answer: got %q and %v, want lines ended by an empty line", lines, err)
		}
		if l = strings.TrimSuffix(l, "\n"); l == "" {
			return lines
		}
		lines = append(lines, l)
	}
}

// errorAnswer fails the test unless the next answer is one error line.
func (c *ctlConn) errorAnswer(what string) {
	c.t.Helper()
	if a := c.answer(); len(a) != 1 || !strings.HasPrefix(a[0], "error: ") {
		c.t.Errorf("%s: got %q, want one line \"error: ...\"", what, a)
	}
}

// closed fails the test unless the server closed the connection.
func (c *ctlConn) closed(what string) {
	c.t.Helper()
	// A server that closes with input unread makes Linux report
	// ECONNRESET after the data instead of the end of input.
	if rest, err := io.ReadAll(c.br); (err != nil && !errors.Is(err, syscall.ECONNRESET)) || len(rest) != 0 {
		c.t.Errorf("%s: got %q, %v; want the connection closed", what, rest, err)
	}
}

// TestCtlSocketGarbage: whatever a client sends on the control socket
// gets an answer, and the process stays up and serves the next command.
func TestCtlSocketGarbage(t *testing.T) {
	e := startCtlEnv(t, setupSpec{Instances: 1, Frontends: []frontendSpec{ctlIMAPFrontend}})
	stillUp := func(after string) {
		t.Helper()
		if e.md.exited() {
			t.Fatalf("maildirector exited after %s", after)
		}
		if info := infoFields(e.ctl("show", "info")); info["config"] != e.cfg {
			t.Errorf("show info after %s: got %v", after, info)
		}
	}
	rng := rand.New(rand.NewPCG(10, 10))

	t.Run("random bytes", func(t *testing.T) {
		c := dialCtl(t, e)
		junk := make([]byte, 300)
		for i := range junk {
			for junk[i] = byte(rng.IntN(256)); junk[i] == '\n'; junk[i] = byte(rng.IntN(256)) {
			}
		}
		junk[0] = 0x01 // not blank
		c.write(append(junk, '\n'))
		c.errorAnswer("a line of random bytes")
		// The connection goes on.
		c.write([]byte("show info\n"))
		if a := c.answer(); len(a) == 0 || !strings.HasPrefix(a[0], "version:") {
			t.Errorf("show info after random bytes on the same connection: got %q", a)
		}
		stillUp("random bytes")
	})

	t.Run("empty line", func(t *testing.T) {
		c := dialCtl(t, e)
		c.write([]byte("\n"))
		c.errorAnswer("an empty line")
		c.write([]byte(" \t\r\n"))
		c.errorAnswer("a blank line")
		c.write([]byte("show frozen\n"))
		if a := c.answer(); !slices.Equal(a, []string{"none"}) {
			t.Errorf("show frozen after empty lines on the same connection: got %q", a)
		}
		stillUp("an empty line")
	})

	t.Run("10 KB line", func(t *testing.T) {
		c := dialCtl(t, e)
		// The server stops reading at its limit: write from a goroutine,
		// whose error (the server closed) is not the test's business.
		go c.c.Write(append(bytes.Repeat([]byte("show "), 2048), '\n'))
		c.errorAnswer("a 10 KB line")
		c.closed("a 10 KB line")
		stillUp("a 10 KB line")
	})

	t.Run("binary blob", func(t *testing.T) {
		c := dialCtl(t, e)
		blob := make([]byte, 2000)
		for i := range blob {
			blob[i] = byte(rng.IntN(256))
		}
		blob = append(blob, '\n')
		c.write(blob)
		c.c.CloseWrite()
		for i := range bytes.Count(blob, []byte("\n")) {
			c.errorAnswer(fmt.Sprintf("line %d of a binary blob", i+1))
		}
		c.closed("a binary blob, half-closed")
		stillUp("a binary blob")
	})

	t.Run("half-closed connection", func(t *testing.T) {
		// A command, then the end of input (as `echo ... | socat` does):
		// the command is answered.
		c := dialCtl(t, e)
		c.write([]byte("show frozen\n"))
		c.c.CloseWrite()
		if a := c.answer(); !slices.Equal(a, []string{"none"}) {
			t.Errorf("show frozen, then half-closed: got %q, want none", a)
		}
		c.closed("a half-closed connection")
		// A command cut off by the end of input is not run (it may be
		// cut short): an error says so.
		c = dialCtl(t, e)
		c.write([]byte("set server dovecot/dovecot1 state maint"))
		c.c.CloseWrite()
		c.errorAnswer("a command without its newline, then half-closed")
		c.closed("a half-closed connection after a cut-off command")
		if s := e.ctlServers()["dovecot/dovecot1"]; s.Admin != "ready" {
			t.Errorf("dovecot1 after a cut-off \"state maint\": got admin %q, want ready", s.Admin)
		}
		// A client that closes without waiting for its answer.
		c = dialCtl(t, e)
		c.write([]byte("show stat\n"))
		c.c.Close()
		stillUp("a half-closed connection")
	})
}

// TestCtlStateSurvivesReloadAndRestart: an admin state, a weight, a move
// and a freeze set at run time are still in force after a reload that
// rebuilds the backend's director, and, with control.state_file, after a
// restart of the process.
func TestCtlStateSurvivesReloadAndRestart(t *testing.T) {
	stateFile := filepath.Join(t.TempDir(), "state.json")
	fes := append(lmtpFrontends(""), ctlIMAPFrontend)
	e := startCtlEnv(t, setupSpec{Frontends: fes, Backend: lmtpBackend, Control: fmt.Sprintf("state_file = %q", stateFile)})
	moved := e.lmtpUsersOn("dovecot1", 1)[0]
	us := e.lmtpUsersOn("dovecot2", 2)
	frozen, drained := us[0], us[1]

	e.ctl("set", "server", "dovecot/dovecot2", "state", "drain")
	e.ctl("set", "server", "dovecot/dovecot1", "weight", "7")
	e.ctl("move", moved, "dovecot/dovecot2")
	e.ctl("freeze", frozen)

	check := func(when string) {
		t.Helper()
		servers := e.ctlServers()
		if s := servers["dovecot/dovecot2"]; s.Admin != "drain" {
			t.Errorf("%s: dovecot2 admin %q, want drain", when, s.Admin)
		}
		if s := servers["dovecot/dovecot1"]; s.Weight != 7 {
			t.Errorf("%s: dovecot1 weight %d, want 7", when, s.Weight)
		}
		if w := e.ctlWhere(moved); w.Server != "dovecot2" || !w.Moved {
			t.Errorf("%s: where %s: got %+v, want dovecot2, moved", when, moved, w)
		}
		var fz []string
		if e.ctlJSON(&fz, "show", "frozen"); !slices.Equal(fz, []string{lmtpAddr(frozen)}) {
			t.Errorf("%s: show frozen: got %q, want [%s]", when, fz, lmtpAddr(frozen))
		}
		// And they act: the moved user lands on dovecot2 although it is
		// draining and the hash says dovecot1; a new user of dovecot2 goes
		// to dovecot1; the frozen user's mail is refused for now.
		if got := e.landedOn(e.addrs["imap"], moved); got != "dovecot2" {
			t.Errorf("%s: the moved user landed on %s, want dovecot2", when, got)
		}
		if got := e.landedOn(e.addrs["imap"], drained); got != "dovecot1" {
			t.Errorf("%s: a user hashed to the drained dovecot2 landed on %s, want dovecot1", when, got)
		}
		e.ctl("flush", "dovecot/dovecot1") // the next check sees drained as new again
		m := lmtpDial(t, e.addrs["lmtp"])
		replies, err := m.send("mta@example.org", []string{lmtpAddr(frozen)}, lmtpMessage("survive", 0))
		if err != nil || len(replies) != 1 || replies[0].Code != 451 {
			t.Errorf("%s: LMTP for the frozen user: %v, %v; want 451", when, replies, err)
		}
		m.close()
	}
	check("before the reload")

	// A reload that builds a new director (user_expire changed), which
	// starts without the runtime changes until they are applied again.
	cfg := readFile(t, e.cfg)
	if err := os.WriteFile(e.cfg, []byte(strings.Replace(cfg, `user_expire = "15m"`, `user_expire = "14m"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	const reloaded = "configuration reloaded"
	before := strings.Count(e.md.log.String(), reloaded)
	e.md.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, "the reload", func() bool { return strings.Count(e.md.log.String(), reloaded) > before })
	check("after a reload")

	e.restart()
	e.waitCtl()
	check("after a restart")
}

// TestCtlHTTPAdmin: with [stats] admin = true, POST /ctl takes a command
// from a client with the stats credentials and answers as the socket does;
// without them, or with wrong ones, 401.
func TestCtlHTTPAdmin(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: []frontendSpec{ctlIMAPFrontend}, StatsOn: true, Stats: "admin = true\nauth = [\"admin:secret\"]"})
	url := "http://" + e.addrs["stats"] + "/ctl"

	out := curl(t, "-u", "admin:secret", "-X", "POST", "--data", "show servers", url)
	if h := tableRows(out)[0]; len(h) == 0 || h[0] != "BACKEND/SERVER" {
		t.Errorf("POST /ctl show servers: got %q, want the servers table", out)
	}
	rowOf(t, out, "dovecot/dovecot1")
	rowOf(t, out, "dovecot/dovecot2")
	if out := curl(t, "-u", "admin:secret", "-X", "POST", "--data", "set server dovecot/dovecot2 weight 9", url); out != "dovecot/dovecot2: weight 9\n" {
		t.Errorf("POST /ctl set weight: got %q", out)
	}
	if r := rowOf(t, curl(t, "-u", "admin:secret", "-X", "POST", "--data", "show servers", url), "dovecot/dovecot2"); r[3] != "9" {
		t.Errorf("weight of dovecot2 after POST /ctl set weight 9: got %q", r)
	}
	code := func(args ...string) string {
		t.Helper()
		return curl(t, append([]string{"-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"}, args...)...)
	}
	if got := code("--data", "bogus", "-u", "admin:secret", url); got != "422" {
		t.Errorf("POST /ctl with a wrong command: got HTTP %s, want 422", got)
	}
	if got := code("--data", "set server dovecot/dovecot2 weight 1", url); got != "401" {
		t.Errorf("POST /ctl without credentials: got HTTP %s, want 401", got)
	}
	if got := code("--data", "set server dovecot/dovecot2 weight 1", "-u", "admin:wrong", url); got != "401" {
		t.Errorf("POST /ctl with a wrong password: got HTTP %s, want 401", got)
	}
	if r := rowOf(t, curl(t, "-u", "admin:secret", "-X", "POST", "--data", "show servers", url), "dovecot/dovecot2"); r[3] != "9" {
		t.Errorf("weight of dovecot2 after refused requests: got %q, want 9", r)
	}
}
