package integration

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/maildirector/maildirector/internal/dovecotlab"
	"github.com/maildirector/maildirector/internal/smtpsink"
)

// Helpers of the lifecycle_*_test.go files (issue 12: staying up through
// reloads, shutdowns and upgrades).

// soakScale reports whether the long versions run (make soak sets
// MAILDIRECTOR_SOAK=1); make test runs the short ones.
func soakScale() bool { return os.Getenv("MAILDIRECTOR_SOAK") != "" }

// withControl adds a [control] socket in the env's directory to a
// generated configuration and returns its path through sock.
func withControl(sock *string) func(e *env, cfg string) string {
	return func(e *env, cfg string) string {
		*sock = filepath.Join(e.dir, "ctl.sock")
		return cfg + fmt.Sprintf("\n[control]\nsocket = %q\n", *sock)
	}
}

// ctlCommand runs `maildirector ctl -s sock words...` and returns its
// output and error.
func ctlCommand(sock string, words ...string) (string, error) {
	out, err := exec.Command(binPath, append([]string{"ctl", "-s", sock}, words...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// imapLoad is a set of clients that log in, check the session with NOOP and
// log out, over and over, until stopped: the login load of the reload and
// upgrade tests. Every step that does not give the expected answer counts
// as a failure, with what happened.
type imapLoad struct {
	addr  string
	users []string
	stop  atomic.Bool
	wg    sync.WaitGroup

	ok, refused atomic.Int64
	mu          sync.Mutex
	failures    []string
}

// startIMAPLoad starts n clients on addr logging in as users, round robin.
func startIMAPLoad(addr string, users []string, n int) *imapLoad {
	l := &imapLoad{addr: addr, users: users}
	for i := range n {
		l.wg.Add(1)
		go l.client(i)
	}
	return l
}

// finish stops the clients and waits for them (each ends its session first).
func (l *imapLoad) finish() {
	l.stop.Store(true)
	l.wg.Wait()
}

func (l *imapLoad) fail(format string, args ...any) {
	l.mu.Lock()
	l.failures = append(l.failures, fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

// client is one IMAP client; it exits when the load is stopped or after
// 20 failures (a proxy that fails that often has failed the test).
func (l *imapLoad) client(i int) {
	defer l.wg.Done()
	failed := 0
	for n := i; !l.stop.Load() && failed < 20; n++ {
		user := l.users[n%len(l.users)]
		if err := l.session(user); err != nil {
			failed++
			l.fail("client %d, %s: %v", i, user, err)
		} else {
			l.ok.Add(1)
		}
	}
}

// session is one login: greeting, LOGIN, NOOP, LOGOUT.
func (l *imapLoad) session(user string) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", l.addr)
	if err != nil {
		if strings.Contains(err.Error(), "refused") {
			l.refused.Add(1)
		}
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	r := bufio.NewReader(c)
	line := func() (string, error) {
		s, err := r.ReadString('\n')
		return strings.TrimRight(s, "\r\n"), err
	}
	until := func(tag string) (string, error) {
		for range 100 {
			s, err := line()
			if err != nil {
				return s, err
			}
			if strings.HasPrefix(s, tag+" ") {
				return s, nil
			}
		}
		return "", fmt.Errorf("no %s reply in 100 lines", tag)
	}
	if g, err := line(); err != nil || !strings.HasPrefix(g, "* OK") {
		return fmt.Errorf("greeting: got %q, %v; want * OK", g, err)
	}
	for _, step := range []struct{ tag, cmd string }{
		{"a", "LOGIN " + user + " pass"},
		{"b", "NOOP"},
		{"c", "LOGOUT"},
	} {
		if _, err := fmt.Fprintf(c, "%s %s\r\n", step.tag, step.cmd); err != nil {
			return fmt.Errorf("%s: %w", step.cmd, err)
		}
		got, err := until(step.tag)
		if err != nil || !strings.HasPrefix(got, step.tag+" OK") {
			return fmt.Errorf("%s: got %q, %v; want %s OK", strings.Fields(step.cmd)[0], got, err, step.tag)
		}
	}
	return nil
}

// lmtpLoad is a set of MTA clients delivering uniquely numbered messages
// (1–3 recipients each) until stopped; every reply is kept for the count
// of copies afterwards.
type lmtpLoad struct {
	soak lmtpSoak
	stop atomic.Bool
	wg   sync.WaitGroup
}

// startLMTPLoad starts n MTA clients on addr delivering to users.
func startLMTPLoad(addr string, users []string, n int) *lmtpLoad {
	l := &lmtpLoad{soak: lmtpSoak{addr: addr, users: users}}
	for i := range n {
		l.wg.Add(1)
		go l.client(i)
	}
	return l
}

func (l *lmtpLoad) finish() {
	l.stop.Store(true)
	l.wg.Wait()
}

// client is one MTA: a new session every 20 messages, so that sessions
// begin and end across reloads as well as live through them.
func (l *lmtpLoad) client(i int) {
	defer l.wg.Done()
	s := &l.soak
	var m *lmtpMTA
	defer func() {
		if m != nil {
			m.close()
		}
	}()
	failures := 0
	for done := 0; !l.stop.Load() && failures < 20; done++ {
		if m == nil || done%20 == 0 {
			if m != nil {
				m.close()
			}
			var err error
			if m, err = lmtpConnect(s.addr); err != nil {
				s.fail(fmt.Errorf("mta %d: %w", i, err))
				m = nil
				failures++
				continue
			}
		}
		n := s.next.Add(1)
		id := "life-" + strconv.FormatInt(n, 10)
		var rcpts []string
		for k := range 1 + int(n%3) {
			rcpts = append(rcpts, lmtpAddr(s.users[(int(n)*7+k*13)%len(s.users)]))
		}
		size := 0
		if n%10 == 0 {
			size = 12 << 10
		}
		replies, err := m.send("mta@example.org", rcpts, lmtpMessage(id, size))
		s.finished.Add(1)
		if err != nil {
			s.fail(fmt.Errorf("mta %d, %s to %v: %w", i, id, rcpts, err))
			m.c.Close()
			m = nil
			failures++
			continue
		}
		s.mu.Lock()
		for _, r := range replies {
			u, _, _ := strings.Cut(r.Rcpt, "@")
			s.results = append(s.results, lmtpSoakResult{id: id, user: u, code: r.Code, text: r.Text})
		}
		s.mu.Unlock()
	}
}

// checkDelivered fails the test unless every recipient was answered 250
// and every 250 is exactly one copy in a maildir, with nothing else there
// (ids with the prefix "life-"). It returns the number of 250s.
func (l *lmtpLoad) checkDelivered(t *testing.T, e *env) int {
	t.Helper()
	s := &l.soak
	for _, err := range s.errs {
		t.Errorf("LMTP: %v", err)
	}
	found := make(map[[2]string]int)
	for _, u := range s.users {
		for _, ids := range e.lmtpIDs(u) {
			for id, n := range ids {
				if strings.HasPrefix(id, "life-") {
					found[[2]string{u, id}] += n
				}
			}
		}
	}
	delivered := 0
	for _, r := range s.results {
		key := [2]string{r.user, r.id}
		copies := found[key]
		delete(found, key)
		switch {
		case r.code != 250:
			t.Errorf("%s for %s: got %d %s, want 250 (every server is up)", r.id, r.user, r.code, r.text)
		case copies != 1:
			t.Errorf("%s for %s: got 250 and %d copies, want exactly one", r.id, r.user, copies)
		default:
			delivered++
		}
	}
	for key, n := range found {
		t.Errorf("%s for %s: %d copies that no reply accounts for", key[1], key[0], n)
	}
	return delivered
}

// startSink starts an SMTP sink for Dovecot's submission relay, closed at
// cleanup, and returns its address.
func startSink(t *testing.T) (string, error) {
	sink, err := smtpsink.Start()
	if err != nil {
		return "", err
	}
	t.Cleanup(func() { sink.Close() })
	return sink.Addr(), nil
}

// startLab is startEnvEdited without starting maildirector: the lab runs
// and the configuration is written; the test starts the binary its own way.
func startLab(t *testing.T, spec setupSpec, edit func(e *env, cfg string) string) *env {
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
	if edit != nil {
		cfg = edit(e, cfg)
	}
	if err := os.WriteFile(e.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return e
}

// mdProcess is a maildirector (or a wrapper that execs it) started by a
// lifecycle test. Its output goes to a file, not a pipe: a process it
// starts (an upgrade) inherits the file and goes on writing there, and
// Wait does not wait for that process to close a pipe.
type mdProcess struct {
	t       *testing.T
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error
}

// startMD runs bin with args and the extra environment variables env,
// logging to a file in dir; it is stopped (SIGTERM) at cleanup.
func startMD(t *testing.T, dir, bin string, args, env []string) *mdProcess {
	t.Helper()
	f, err := os.CreateTemp(dir, "maildirector-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := &mdProcess{t: t, logPath: f.Name(), done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.Env = append(os.Environ(), env...)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if strings.Contains(p.log(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in maildirector (%s)", p.logPath)
		}
		if t.Failed() {
			t.Logf("log of %s (pid %d):\n%s", bin, p.cmd.Process.Pid, p.log())
		}
	})
	return p
}

func (p *mdProcess) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

func (p *mdProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits (bounded) for the process to end.
func (p *mdProcess) stop() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("maildirector (pid %d) did not stop within 20s of SIGTERM", p.cmd.Process.Pid)
	}
}

// waitExit waits (bounded by d) for the process to end and fails the test
// unless it ended cleanly.
func (p *mdProcess) waitExit(d time.Duration, what string) {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("%s: still running after %v", what, d)
	}
	if p.err != nil {
		p.t.Errorf("%s: exit %v, want 0", what, p.err)
	}
}

// waitServing waits until every address of e accepts a connection, failing
// the test if p exits first.
func (e *env) waitServing(p *mdProcess) {
	e.t.Helper()
	for _, a := range e.addrs {
		for i := 0; ; i++ {
			if p.exited() {
				e.t.Fatalf("maildirector exited: %v\n%s", p.err, p.log())
			}
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			if i == 400 {
				e.t.Fatalf("maildirector is not listening on %s after 10s\n%s", a, p.log())
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
}

// orphan is a maildirector this test did not start (the new process of
// `ctl upgrade`, started by the old one): stopped by its pid at cleanup.
func orphan(t *testing.T, pid int) {
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGTERM)
		for range 400 {
			if !pidRunning(pid) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("maildirector pid %d did not stop within 20s of SIGTERM", pid)
	})
}

// pidRunning reports whether pid is a live process (not gone, not a zombie
// waiting for a parent that is gone).
func pidRunning(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, after, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(after, "Z") && !strings.HasPrefix(after, "X")
}

// notifySocket is a unixgram socket standing in for systemd's
// NOTIFY_SOCKET: it collects every notification maildirector sends.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	n := &notifySocket{path: filepath.Join(t.TempDir(), "notify.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	return n
}

// messages returns the notifications received so far.
func (n *notifySocket) messages() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.msgs...)
}

// waitFor waits (bounded) for a notification that has every one of the
// lines want, among those after the first skip, and returns its index.
func (n *notifySocket) waitFor(t *testing.T, skip int, want ...string) int {
	t.Helper()
	found := -1
	eventually(t, fmt.Sprintf("a notification with %q", want), func() bool {
		for i, m := range n.messages() {
			if i < skip {
				continue
			}
			lines := strings.Split(m, "\n")
			ok := true
			for _, w := range want {
				has := false
				for _, l := range lines {
					has = has || l == w || (strings.HasSuffix(w, "=") && strings.HasPrefix(l, w))
				}
				ok = ok && has
			}
			if ok {
				found = i
				return true
			}
		}
		return false
	})
	return found
}
