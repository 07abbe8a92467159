package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// imapSessionLine runs one IMAP login and logout as user on frontend
// "imap" and returns the client's address (the session line's remote).
func imapSessionLine(t *testing.T, e *env, user string) string {
	t.Helper()
	r := greeted(t, e.addrs["imap"])
	remote := r.c.LocalAddr().String()
	r.login(user)
	r.send("Z LOGOUT\r\n")
	waitServerClose(t, r.c)
	return remote
}

// logLines returns the lines of the log file at path whose logfmt keys
// include every one of want.
func logLines(t *testing.T, path string, want map[string]string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		kv := parseLogfmt(l)
		ok := len(kv) > 0
		for k, v := range want {
			ok = ok && kv[k] == v
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// TestLogFileReopenedOnSIGUSR1: with log_file set, the log goes to the
// file (mode 0640 at most) and not to stderr; after logrotate's rename the
// lines go on to the renamed file until SIGUSR1, which opens a new file
// under the name, where the next session's line goes.
func TestLogFileReopenedOnSIGUSR1(t *testing.T) {
	path := filepath.Join(t.TempDir(), "maildirector.log")
	e := startEnv(t, setupSpec{
		Frontends: []frontendSpec{{Name: "imap", Protocol: "imap", Plaintext: "allow"}},
		Global:    fmt.Sprintf("log_file = %q", path),
	})
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []string{path, path + ".1"} {
				b, _ := os.ReadFile(p)
				t.Logf("%s:\n%s", p, b)
			}
		}
	})
	first := imapSessionLine(t, e, "user060")
	eventually(t, "the first session's line in the log file", func() bool {
		return len(logLines(t, path, map[string]string{"msg": "session", "remote": first})) == 1
	})
	if st, err := os.Stat(path); err != nil || st.Mode().Perm()&^0o640 != 0 {
		t.Errorf("log file mode: got %v (%v), want at most 0640", st.Mode().Perm(), err)
	}

	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := e.md.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new log file", func() bool {
		_, err := os.Stat(path)
		return err == nil
	})
	second := imapSessionLine(t, e, "user061")
	eventually(t, "the second session's line in the new log file", func() bool {
		return len(logLines(t, path, map[string]string{"msg": "session", "remote": second})) == 1
	})
	if got := logLines(t, path, map[string]string{"msg": "log file reopened", "log_file": path}); len(got) != 1 {
		t.Errorf("new file: got %d \"log file reopened\" lines, want 1", len(got))
	}
	if got := logLines(t, rotated, map[string]string{"msg": "session", "remote": first}); len(got) != 1 {
		t.Errorf("rotated file: got %d lines of the first session, want 1", len(got))
	}
	if got := logLines(t, rotated, map[string]string{"msg": "session", "remote": second}); len(got) != 0 {
		t.Errorf("rotated file: got the second session's line after SIGUSR1: %q", got)
	}
	if e.md.exited() {
		t.Fatalf("maildirector exited on SIGUSR1: %v", e.md.err)
	}
	if strings.Contains(e.md.log.String(), "msg=") {
		t.Errorf("stderr: got log lines, want them in the file only:\n%s", e.md.log.String())
	}
}

// TestSyslogLines: with syslog = "unix:PATH", each line reaches the socket
// as an RFC 5424 message (section 6) from this process with its level's
// severity: the session line as informational (local0: PRI 134).
func TestSyslogLines(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	msgs := make(chan string, 1024)
	go readDatagrams(ln, msgs)
	e := startEnv(t, setupSpec{
		Frontends: []frontendSpec{{Name: "imap", Protocol: "imap", Plaintext: "allow"}},
		Global:    fmt.Sprintf("syslog = %q\nsyslog_tag = \"md-test\"", "unix:"+sock),
	})
	remote := imapSessionLine(t, e, "user062")
	header := regexp.MustCompile(`^<([0-9]+)>1 \S+ \S+ md-test ([0-9]+) - - (.*)$`)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-msgs:
			h := header.FindStringSubmatch(m)
			if h == nil {
				t.Fatalf("not an RFC 5424 message from md-test: %q", m)
			}
			if h[2] != fmt.Sprint(e.md.cmd.Process.Pid) {
				t.Errorf("PROCID: got %s, want maildirector's %d", h[2], e.md.cmd.Process.Pid)
			}
			kv := parseLogfmt(h[3])
			if kv["msg"] != "session" || kv["remote"] != remote {
				continue
			}
			if h[1] != "134" {
				t.Errorf("PRI of the session line: got %s, want 134 (local0, informational)", h[1])
			}
			if kv["user"] != "user062" || kv["end"] == "" {
				t.Errorf("session line: got %v", kv)
			}
			return
		case <-deadline:
			t.Fatal("no session line reached the syslog socket in 10s")
		}
	}
}

// readDatagrams sends each datagram read from c to out until c is closed.
func readDatagrams(c *net.UnixConn, out chan<- string) {
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return
		}
		select {
		case out <- string(buf[:n]):
		default: // the test stopped reading
		}
	}
}
