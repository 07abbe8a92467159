package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

// startChecksEnv is startEnv with more configuration appended after the
// generated file (extra backends with other check types, for instance);
// extra runs once the lab's ports are known.
func startChecksEnv(t *testing.T, spec setupSpec, extra func(e *env) string) *env {
	t.Helper()
	if spec.Instances == 0 {
		spec.Instances = 2
	}
	labOpts := spec.Lab
	labOpts.Instances = spec.Instances
	lab := dovecotlab.StartT(t, labOpts)
	e := &env{t: t, lab: lab, spec: spec, dir: t.TempDir(), addrs: make(map[string]string)}
	e.cfg = filepath.Join(e.dir, "maildirector.toml")
	cfg := e.config()
	if extra != nil {
		cfg += "\n" + extra(e)
	}
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	e.md = startProcess(t, e.cfg, e.addrs)
	return e
}

// checksBackend returns a [backend.NAME] over every lab instance, like the
// harness's "dovecot" backend (send_proxy = "v2-ssl", so checks send a
// PROXY v2 LOCAL header), with its own check table. checkLines go into
// [backend.NAME.check].
func checksBackend(e *env, name, checkLines string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[backend.%s]\nbalance = \"user\"\n\n[backend.%s.check]\n%s\n\n", name, name, checkLines)
	for i, in := range e.lab.Instances {
		p := in.Ports
		fmt.Fprintf(&b, "[[backend.%s.server]]\nname = %q\naddress = \"127.0.0.1\"\n", name, serverName(i))
		// tcp: the IMAP listener, for type tcp checks of a backend no frontend uses.
		fmt.Fprintf(&b, "ports = { imap = %d, pop3 = %d, lmtp = %d, submission = %d, tcp = %d }\n", p.IMAP, p.POP3, p.LMTP, p.Submission, p.IMAP)
		b.WriteString("send_proxy = \"v2-ssl\"\n\n")
	}
	return b.String()
}

// checksLogLines returns maildirector's log lines that contain every one
// of parts.
func checksLogLines(e *env, parts ...string) []string {
	var out []string
	for _, l := range strings.Split(e.md.log.String(), "\n") {
		if containsAll(l, parts) {
			out = append(out, l)
		}
	}
	return out
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// checksWaitLine waits (bounded) until maildirector logged more than
// `after` lines containing every one of parts and returns the newest.
func checksWaitLine(t *testing.T, e *env, after int, parts ...string) string {
	t.Helper()
	var lines []string
	eventually(t, fmt.Sprintf("maildirector to log %q", parts), func() bool {
		lines = checksLogLines(e, parts...)
		return len(lines) > after
	})
	return lines[len(lines)-1]
}

// checksOf selects the debug lines of one server's check results in one
// backend; ok picks passing or failing ones.
func checksOf(backend, server string, ok bool) []string {
	return []string{"msg=check ", "backend=" + backend + " ", "server=" + server + " ", fmt.Sprintf("ok=%v ", ok)}
}

// downLine and upLine select the checker's transition lines.
func downLine(backend, server string) []string {
	return []string{`msg="server down" `, "backend=" + backend + " ", "server=" + server + " "}
}

func upLine(backend, server string) []string {
	return []string{`msg="server up" `, "backend=" + backend + " ", "server=" + server + " "}
}

// stateChange selects the director's line for server going from → to.
func stateChange(backend, server, from, to string) []string {
	return []string{`msg="server state change" `, "backend=" + backend + " ", "server=" + server + " ", "from=" + from + " ", "to=" + to + " "}
}

// dovecotLog returns an instance's log, failing the test if it is unreadable.
func dovecotLog(t *testing.T, e *env, server string) string {
	t.Helper()
	s, err := e.instanceOf(server).Log()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
