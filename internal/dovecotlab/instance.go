package dovecotlab

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/maildirector/maildirector/tlsutil"
)

const (
	// startTimeout bounds Start's wait for every port to answer.
	startTimeout = 20 * time.Second
	// stopTimeout bounds Stop's wait for the master and its children to exit.
	stopTimeout = 15 * time.Second
	// stopGrace is how long Stop lets the master exit by itself once its
	// ports are closed.
	stopGrace = 500 * time.Millisecond
	// killTimeout bounds Kill's wait for every process to be gone.
	killTimeout = 10 * time.Second
	// probeTimeout bounds one readiness probe (dial, greeting, goodbye).
	probeTimeout = 500 * time.Millisecond
	// pollInterval is the pause between readiness and exit checks.
	pollInterval = 20 * time.Millisecond
	// portAttempts is how often Start picks new free ports after a bind conflict.
	portAttempts = 3
)

// Instance is one Dovecot server: its own config, base_dir, state_dir, log
// and ports. Its methods are safe for concurrent use.
type Instance struct {
	// Name is dovecot1, dovecot2, …; also the last part of instance_name.
	Name string
	// Dir holds dovecot.conf, the users file, the maildirs (mail/USER/Maildir),
	// the log and the master's stderr.
	Dir string
	// Ports are the instance's listeners; they stay the same across restarts.
	Ports InstancePorts
	// Address is the IP every listener binds (Options.ListenAddress).
	Address string
	// CertFile and KeyFile are the instance's self-signed certificate (its
	// own CA) and key when Options.TLS is set; "" otherwise.
	CertFile, KeyFile string
	// LogPath is Dovecot's log_path.
	LogPath string
	// ConfigPath is the generated dovecot.conf.
	ConfigPath string
	// BaseDir is Dovecot's base_dir (UNIX sockets, master.pid). It lives
	// under the system temporary directory, not Dir, because UNIX socket
	// paths must stay short (108 bytes).
	BaseDir string

	stderrPath string
	mailRoot   string
	usersFile  string
	users      map[string]bool
	uid, gid   int
	autoPorts  InstancePorts // which ports were picked by the harness (non-zero)
	params     configParams
	logger     *slog.Logger

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when the master process has exited
	frozen bool
}

// newInstance prepares the directories and files of instance number k.
func newInstance(l *Lab, k int, fixed InstancePorts, p configParams) (_ *Instance, err error) {
	name := "dovecot" + strconv.Itoa(k)
	dir := filepath.Join(l.Dir, name)
	i := &Instance{
		Name:       name,
		Dir:        dir,
		Ports:      fixed,
		LogPath:    filepath.Join(dir, "dovecot.log"),
		ConfigPath: filepath.Join(dir, "dovecot.conf"),
		stderrPath: filepath.Join(dir, "master.stderr"),
		mailRoot:   filepath.Join(dir, "mail"),
		usersFile:  filepath.Join(dir, "users"),
		users:      make(map[string]bool, len(l.Users)),
		uid:        p.UID,
		gid:        p.GID,
		logger:     l.logger.With("instance", name),
	}
	for _, u := range l.Users {
		i.users[u] = true
	}
	if i.BaseDir, err = os.MkdirTemp("", "dcl"); err != nil {
		return nil, fmt.Errorf("make base_dir: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(i.BaseDir)
		}
	}()
	if err := os.Chmod(i.BaseDir, 0o755); err != nil {
		return nil, fmt.Errorf("make base_dir: %w", err)
	}
	for _, d := range []string{dir, filepath.Join(dir, "state"), i.mailRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("make %s: %w", d, err)
		}
	}
	if err := os.Chown(i.mailRoot, i.uid, i.gid); err != nil {
		return nil, fmt.Errorf("chown mail root: %w", err)
	}
	if err := writeUsers(i.usersFile, i.mailRoot, l.Users, l.passwords, i.uid, i.gid); err != nil {
		return nil, err
	}
	if err := seedFullUser(i.mailRoot, i.uid, i.gid); err != nil {
		return nil, err
	}
	i.Address = p.ListenAddress
	if p.SSL {
		// Read by Dovecot's config process, which runs as root: 0600 is fine.
		if i.CertFile, i.KeyFile, err = tlsutil.WriteSelfSigned(dir, "localhost", "127.0.0.1", "::1"); err != nil {
			return nil, fmt.Errorf("make certificate of %s: %w", name, err)
		}
		p.CertFile, p.KeyFile = i.CertFile, i.KeyFile
	}
	p.InstanceName = "lab-" + filepath.Base(i.BaseDir) + "-" + name
	p.BaseDir = i.BaseDir
	p.StateDir = filepath.Join(dir, "state")
	p.LogPath = i.LogPath
	p.UsersFile = i.usersFile
	p.Hostname = name + ".lab.test"
	i.params = p
	return i, nil
}

// startFirst picks the missing ports, writes and checks the config and
// starts the master, picking new ports after a bind conflict.
func (i *Instance) startFirst() error {
	fixed := i.Ports
	var err error
	for range portAttempts {
		if i.Ports, err = fillPorts(i.Address, fixed); err != nil {
			return err
		}
		i.params.Ports = i.Ports
		if err = i.writeConfig(); err != nil {
			return err
		}
		err = i.Start()
		if err == nil || !errors.Is(err, errAddrInUse) || takenFixed(err, fixed) {
			return err
		}
		i.logger.Info("port taken, picking others", "err", err)
	}
	return err
}

// writeConfig renders dovecot.conf and checks it with doveconf.
func (i *Instance) writeConfig() error {
	if i.params.OAuth2URL != "" {
		i.params.OAuth2File = filepath.Join(filepath.Dir(i.ConfigPath), "dovecot-oauth2.conf.ext")
		ext := "introspection_mode = post\nintrospection_url = " + i.params.OAuth2URL +
			"\nusername_attribute = username\nactive_attribute = active\nactive_value = true\nforce_introspection = yes\n"
		if err := os.WriteFile(i.params.OAuth2File, []byte(ext), 0o644); err != nil {
			return fmt.Errorf("write dovecot-oauth2.conf.ext: %w", err)
		}
	}
	conf, err := renderConfig(i.params)
	if err != nil {
		return err
	}
	if err := os.WriteFile(i.ConfigPath, conf, 0o644); err != nil {
		return fmt.Errorf("write dovecot.conf: %w", err)
	}
	return checkConfig(i.ConfigPath)
}

// listenFailed matches the master's bind error, e.g.
// "service(imap-login): listen(127.0.0.1, 10143) failed: Address already in use"
// (or listen(::1, …) for an IPv6 lab).
var listenFailed = regexp.MustCompile(`listen\((?:127\.0\.0\.1|::1), (\d+)\) failed: Address already in use`)

// takenFixed reports whether a bind error names a port the caller fixed,
// which picking other free ports cannot cure.
func takenFixed(err error, fixed InstancePorts) bool {
	for _, m := range listenFailed.FindAllStringSubmatch(err.Error(), -1) {
		port, _ := strconv.Atoi(m[1])
		for _, p := range fixed.list() {
			if p.port != 0 && p.port == port {
				return true
			}
		}
	}
	return false
}

// Start starts the master (dovecot -F) in its own process group and waits
// until every port answers: the haproxy = yes ports are probed with a
// PROXY v2 LOCAL header, so Dovecot logs no protocol error.
func (i *Instance) Start() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.runningLocked() {
		return fmt.Errorf("start %s: %w", i.Name, ErrRunning)
	}
	// A master.pid left by Kill could name an unrelated process by now, and
	// the master refuses to start while that pid is alive.
	_ = os.Remove(filepath.Join(i.BaseDir, "master.pid"))
	stderr, err := os.OpenFile(i.stderrPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", i.Name, err)
	}
	defer stderr.Close() // the child has its own copy
	cmd := exec.Command(dovecotPath, "-F", "-c", i.ConfigPath)
	cmd.Dir = i.Dir
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	cmd.SysProcAttr = masterProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", i.Name, err)
	}
	done := make(chan struct{})
	i.cmd, i.done, i.frozen = cmd, done, false
	go waitMaster(cmd, done)

	if err := i.waitReadyLocked(done); err != nil {
		i.killLocked()
		return err
	}
	i.logger.Info("dovecot started", "pid", cmd.Process.Pid, "ports", i.Ports)
	return nil
}

// waitMaster reaps the master; it returns, closing done, when the master exits.
func waitMaster(cmd *exec.Cmd, done chan struct{}) {
	_ = cmd.Wait() // the exit status is in the log; Stop and Kill expect non-zero
	close(done)
}

// waitReadyLocked polls every port until it answers or the master exits.
func (i *Instance) waitReadyLocked(done chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	pending := i.probes()
	var lastErr error
	for len(pending) > 0 {
		select {
		case <-done:
			return i.startError("master exited")
		default:
		}
		if time.Now().After(deadline) {
			return i.startError(fmt.Sprintf("timed out after %v: %v", startTimeout, lastErr))
		}
		p := pending[0]
		if lastErr = p.probe(i.dialer(p)); lastErr != nil {
			time.Sleep(pollInterval)
			continue
		}
		pending = pending[1:]
	}
	return nil
}

// startError describes a failed start with the tails of the log and stderr.
func (i *Instance) startError(why string) error {
	logTail := tailFile(i.LogPath, 10)
	errTail := tailFile(i.stderrPath, 5)
	err := fmt.Errorf("%w: %s: %s\nlog %s:\n%s\nstderr:\n%s", ErrNotReady, i.Name, why, i.LogPath, logTail, errTail)
	if strings.Contains(logTail, "Address already in use") || strings.Contains(errTail, "Address already in use") {
		err = fmt.Errorf("%w: %w", errAddrInUse, err)
	}
	return err
}

// Running reports whether the master process is alive.
func (i *Instance) Running() bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.runningLocked()
}

func (i *Instance) runningLocked() bool {
	if i.done == nil {
		return false
	}
	select {
	case <-i.done:
		return false
	default:
		return true
	}
}

// PID returns the master's process id, or 0 when it is not running.
func (i *Instance) PID() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.runningLocked() {
		return 0
	}
	return i.cmd.Process.Pid
}

// Stop shuts the instance down politely: SIGTERM to the master and its
// children (after SIGCONT if frozen), so logged-in IMAP clients get
// "* BYE Server shutting down."; then it waits until the ports are closed
// and every process is gone. Processes still there stopGrace after the
// ports closed are killed. Stopping a stopped instance does nothing.
func (i *Instance) Stop() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.runningLocked() {
		return nil
	}
	pgid := i.cmd.Process.Pid
	if i.frozen {
		_ = syscall.Kill(-pgid, syscall.SIGCONT)
		i.frozen = false
	}
	// SIGTERM to the whole group, as systemd's default KillMode=control-group
	// does: a 2.3 mail process left alone outlives its master by ~10 s before
	// saying "* BYE Server shutting down.".
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop %s: %w", i.Name, err)
	}
	// The listeners close within a second; a master that lingers after
	// that (2.3 can wait seconds for its log process) is killed.
	deadline := time.Now().Add(stopTimeout)
	if err := waitPortsClosed(i.Address, i.Ports, deadline); err != nil {
		i.killLocked()
		return fmt.Errorf("stop %s: %w", i.Name, err)
	}
	if waitGone(i.done, pgid, time.Now().Add(stopGrace)) != nil {
		if err := i.killLocked(); err != nil {
			return fmt.Errorf("stop %s: %w", i.Name, err)
		}
	}
	i.logger.Info("dovecot stopped")
	return nil
}

// Kill sends SIGKILL to every process of the instance (the master's process
// group, which its children keep even after the master is gone) and waits
// until none is left. Killing a stopped instance does nothing.
func (i *Instance) Kill() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.done == nil {
		return nil
	}
	if err := i.killLocked(); err != nil {
		return fmt.Errorf("kill %s: %w", i.Name, err)
	}
	i.logger.Info("dovecot killed")
	return nil
}

func (i *Instance) killLocked() error {
	pgid := i.cmd.Process.Pid
	if len(groupMembers(pgid)) == 0 && !i.runningLocked() {
		return nil
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL) // ESRCH: already gone
	i.frozen = false
	return waitGone(i.done, pgid, time.Now().Add(killTimeout))
}

// Freeze sends SIGSTOP to every process of the instance and waits until all
// are stopped. The kernel still completes TCP handshakes on the listening
// sockets, so a frozen server accepts connections but never answers.
func (i *Instance) Freeze() error {
	return i.signalGroup(syscall.SIGSTOP, true)
}

// Thaw sends SIGCONT to every process of the instance.
func (i *Instance) Thaw() error {
	return i.signalGroup(syscall.SIGCONT, false)
}

func (i *Instance) signalGroup(sig syscall.Signal, frozen bool) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.runningLocked() {
		return fmt.Errorf("signal %s %v: %w", i.Name, sig, ErrNotRunning)
	}
	pgid := i.cmd.Process.Pid
	if err := syscall.Kill(-pgid, sig); err != nil {
		return fmt.Errorf("signal %s %v: %w", i.Name, sig, err)
	}
	i.frozen = frozen
	if !frozen {
		return nil
	}
	deadline := time.Now().Add(killTimeout)
	for {
		running := 0
		for _, p := range groupMembers(pgid) {
			if p.state != 'T' && p.state != 't' {
				running++
			}
		}
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("freeze %s: %d processes still running", i.Name, running)
		}
		time.Sleep(pollInterval / 4)
	}
}

// Log returns the instance's log file.
func (i *Instance) Log() (string, error) {
	b, err := os.ReadFile(i.LogPath)
	if err != nil {
		return "", fmt.Errorf("read log of %s: %w", i.Name, err)
	}
	return string(b), nil
}

// Doveadm runs doveadm against this instance's configuration and returns
// its combined output, e.g. Doveadm("who") or Doveadm("kick", "user000").
func (i *Instance) Doveadm(args ...string) (string, error) {
	out, err := exec.Command(doveadmPath, append([]string{"-c", i.ConfigPath}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("doveadm %s on %s: %w: %s", strings.Join(args, " "), i.Name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// waitGone waits until the master has been reaped and no live process is
// left in its group.
func waitGone(done chan struct{}, pgid int, deadline time.Time) error {
	for {
		select {
		case <-done:
			if len(groupMembers(pgid)) == 0 {
				return nil
			}
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes of group %d still alive", pgid)
		}
		time.Sleep(pollInterval / 4)
	}
}

// waitPortsClosed waits until no port is in LISTEN state. It reads
// /proc/net/tcp (tcp6 for an IPv6 address) rather than dialing, so Dovecot
// logs no aborted connection.
func waitPortsClosed(addr string, ports InstancePorts, deadline time.Time) error {
	for {
		open := listeningPorts(addr, ports)
		if len(open) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("ports %v still listening", open)
		}
		time.Sleep(pollInterval)
	}
}

// listeningPorts returns the ports of p that a socket listens on at addr
// (127.0.0.1 or ::1) or the matching any-address.
func listeningPorts(addr string, p InstancePorts) []int {
	table, parse := "/proc/net/tcp", parseListenLine
	if ip := net.ParseIP(addr); ip != nil && ip.To4() == nil {
		table, parse = "/proc/net/tcp6", parseListenLine6
	}
	b, err := os.ReadFile(table)
	if err != nil {
		return nil
	}
	want := make(map[int]bool)
	for _, np := range p.list() {
		want[np.port] = true
	}
	var open []int
	for line := range strings.Lines(string(b)) {
		port, ok := parse(line)
		if ok && want[port] {
			open = append(open, port)
			delete(want, port)
		}
	}
	return open
}

// parseListenLine reads one /proc/net/tcp row (proc(5)): it reports the
// local port of a socket in LISTEN state (st 0A) bound to 127.0.0.1 or 0.0.0.0.
func parseListenLine(line string) (int, bool) {
	return parseListenRow(line, "0100007F", "00000000")
}

// parseListenLine6 is parseListenLine for /proc/net/tcp6 rows: ::1 (four
// host-order 32-bit words) or ::.
func parseListenLine6(line string) (int, bool) {
	return parseListenRow(line, "00000000000000000000000001000000", "00000000000000000000000000000000")
}

func parseListenRow(line string, ips ...string) (int, bool) {
	f := strings.Fields(line)
	if len(f) < 4 || f[3] != "0A" {
		return 0, false
	}
	ip, portHex, ok := strings.Cut(f[1], ":")
	if !ok {
		return 0, false
	}
	known := false
	for _, want := range ips {
		known = known || ip == want
	}
	if !known {
		return 0, false
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return 0, false
	}
	return int(port), true
}

// proc is one process seen in /proc.
type proc struct {
	pid   int
	state byte
}

// groupMembers scans /proc for the live (non-zombie) processes whose
// process group is pgid. Dovecot children never leave the master's group,
// so this finds them even after the master is gone.
func groupMembers(pgid int) []proc {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		st, ok := parseStat(string(b))
		if !ok || st.pgrp != pgid || st.state == 'Z' || st.state == 'X' {
			continue
		}
		out = append(out, proc{pid: pid, state: st.state})
	}
	return out
}

// statFields are the fields of /proc/PID/stat the lab uses (proc(5)).
type statFields struct {
	state      byte
	ppid, pgrp int
}

// parseStat parses "pid (comm) state ppid pgrp …"; comm may hold spaces
// and parentheses, so the fields start after the last ')'.
func parseStat(s string) (statFields, bool) {
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return statFields{}, false
	}
	f := strings.Fields(s[end+1:])
	// The state is one letter (proc(5): R S D Z T t X I ...).
	if len(f) < 3 || len(f[0]) != 1 || !isLetter(f[0][0]) {
		return statFields{}, false
	}
	ppid, err1 := strconv.Atoi(f[1])
	pgrp, err2 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil {
		return statFields{}, false
	}
	return statFields{state: f[0][0], ppid: ppid, pgrp: pgrp}, true
}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

// namedPort is one listener with its readiness probe.
type namedPort struct {
	name    string
	port    int
	probe   func(probeDialer) error
	proxied bool
	tls     bool // implicit TLS after the PROXY header (Options.TLS)
}

// hostPort is a port on 127.0.0.1, the default listen address.
func hostPort(port int) string { return net.JoinHostPort(DefaultListenAddress, strconv.Itoa(port)) }

// probes returns the instance's listeners with their TLS flags.
func (i *Instance) probes() []namedPort {
	ports := i.Ports.list()
	if i.params.SSL {
		for k := range ports {
			ports[k].tls = ports[k].proxied && ports[k].name != "lmtp"
		}
	}
	return ports
}

// probeDialer opens a probe connection to one listener.
type probeDialer func() (net.Conn, *bufio.Reader, error)

// dialer returns the probe connection of p.
func (i *Instance) dialer(p namedPort) probeDialer {
	return func() (net.Conn, *bufio.Reader, error) {
		return dialProbe(net.JoinHostPort(i.Address, strconv.Itoa(p.port)), p.proxied, p.tls)
	}
}

// proxyLocal is a PROXY v2 header with the LOCAL command and no addresses
// (PROXY protocol spec section 2.2): Dovecot then uses the real connection
// addresses, which is how health checks talk to haproxy = yes listeners.
var proxyLocal = []byte("\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00")

// dialProbe connects, sends the LOCAL header when proxied, starts TLS when
// asked (the lab's own self-signed certificate: not verified), and returns
// a reader for the greeting.
func dialProbe(addr string, proxied, useTLS bool) (net.Conn, *bufio.Reader, error) {
	c, err := net.DialTimeout("tcp", addr, probeTimeout)
	if err != nil {
		return nil, nil, err
	}
	_ = c.SetDeadline(time.Now().Add(probeTimeout))
	if proxied {
		if _, err := c.Write(proxyLocal); err != nil {
			c.Close()
			return nil, nil, err
		}
	}
	if useTLS {
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, nil, fmt.Errorf("tls: %w", err)
		}
		c = tc
	}
	return c, bufio.NewReader(c), nil
}

// probeIMAP waits for the untagged OK greeting (RFC 9051 section 7.1.1);
// Dovecot may first send "* OK Waiting for authentication process to
// respond.." while its auth process starts, so that line does not count.
func probeIMAP(dial probeDialer) error {
	c, r, err := dial()
	if err != nil {
		return err
	}
	defer c.Close()
	for range 3 {
		line, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("imap greeting: %w", err)
		}
		if !strings.HasPrefix(line, "* OK") {
			return fmt.Errorf("imap greeting %q", strings.TrimSpace(line))
		}
		if !strings.Contains(line, "Waiting for authentication") {
			return goodbye(c, r, "p LOGOUT\r\n")
		}
	}
	return fmt.Errorf("imap greeting: auth process not ready")
}

// probePOP3 waits for the +OK greeting (RFC 1939 section 4).
func probePOP3(dial probeDialer) error {
	c, r, err := dial()
	if err != nil {
		return err
	}
	defer c.Close()
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("pop3 greeting: %w", err)
	}
	if !strings.HasPrefix(line, "+OK") {
		return fmt.Errorf("pop3 greeting %q", strings.TrimSpace(line))
	}
	return goodbye(c, r, "QUIT\r\n")
}

// probeSMTP waits for the 220 greeting of LMTP or submission (RFC 5321
// section 4.2, RFC 2033 section 4.1).
func probeSMTP(dial probeDialer) error {
	c, r, err := dial()
	if err != nil {
		return err
	}
	defer c.Close()
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("smtp greeting: %w", err)
	}
	if !strings.HasPrefix(line, "220") {
		return fmt.Errorf("smtp greeting %q", strings.TrimSpace(line))
	}
	return goodbye(c, r, "QUIT\r\n")
}

// goodbye sends the protocol's logout command and reads until the server
// closes, so Dovecot logs an orderly logout rather than a reset.
func goodbye(c net.Conn, r *bufio.Reader, cmd string) error {
	if _, err := c.Write([]byte(cmd)); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, r)
	return err
}
