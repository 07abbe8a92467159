package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proxyProc is a proxy under test: a child process and where it listens.
type proxyProc struct {
	name string
	cmd  *exec.Cmd
	addr string   // where clients connect
	log  *os.File // its stdout and stderr
	done chan error
	// stats is maildirector's stats listener ("" for HAProxy), which
	// serves /debug/pprof/ when the bench profiles (-profile).
	stats string
}

const (
	// startTimeout bounds the wait for a proxy to accept connections.
	startTimeout = 10 * time.Second
	// stopTimeout bounds a graceful stop before the process is killed.
	stopTimeout = 10 * time.Second
)

// startProc runs argv with output to logPath and waits until addr accepts
// a TCP connection.
func startProc(name, addr, logPath string, argv ...string) (*proxyProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proxyProc{name: name, cmd: cmd, addr: addr, log: logf, done: make(chan error, 1)}
	go p.wait()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case err := <-p.done:
			logf.Close()
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%s exited at start (%v): %s", name, err, bytes.TrimSpace(out))
		default:
		}
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return p, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.stop()
	return nil, fmt.Errorf("%s did not listen on %s within %v", name, addr, startTimeout)
}

// wait reaps the process; it exits when the process does.
func (p *proxyProc) wait() { p.done <- p.cmd.Wait() }

// pid is the process id.
func (p *proxyProc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM, waits up to stopTimeout, then kills.
func (p *proxyProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		p.cmd.Process.Kill()
		<-p.done
	}
	p.log.Close()
}

// haproxyConfig is HAProxy in mode tcp with one server and hour-long
// timeouts (as an IMAP IDLE deployment would set them). serverOpts ends the
// server line: "" for none, "send-proxy-v2" for a server that wants a
// PROXY header (Dovecot's haproxy = yes listeners).
func haproxyConfig(listen, server, serverOpts string, maxconn int) string {
	return fmt.Sprintf(`global
    maxconn %[3]d

defaults
    mode tcp
    timeout connect 5s
    timeout client 1h
    timeout server 1h
    maxconn %[3]d

frontend bench
    bind %[1]s
    default_backend server

backend server
    server server1 %[2]s %[4]s
`, listen, server, maxconn, serverOpts)
}

// startHAProxy writes cfg to dir/name.cfg and runs bin -f that -db
// (foreground, one process, no master), which listens on listen.
func startHAProxy(bin, dir, name, listen, cfg string) (*proxyProc, error) {
	path := filepath.Join(dir, name+".cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return startProc(name, listen, filepath.Join(dir, name+".log"), bin, "-f", path, "-db")
}

// maildirectorConfig is one frontend of protocol (imap or tcp) in front of
// one server, checks off so probes stay out of the measurement.
func maildirectorConfig(protocol, listen, server, logLevel string) string {
	host, port, _ := net.SplitHostPort(server)
	balance, extra := "user", "plaintext_login = \"allow\"\n"
	if protocol == "tcp" {
		balance, extra = "roundrobin", ""
	}
	return fmt.Sprintf(`[global]
log_level = %[5]q
maxconn = 0
shutdown_grace = "1s"
[global.timeouts]
idle = "1h"

# The bench's clients all come from one address.
[global.limits]
max_per_client = 0
max_rate = 0

[frontend.bench]
protocol = %[1]q
bind = [%[2]q]
backend = "fake"
%[6]s
[backend.fake]
balance = %[7]q
[backend.fake.check]
type = "none"

[[backend.fake.server]]
name = "fake1"
address = %[3]q
ports = { %[1]s = %[4]s }
send_proxy = "none"
`, protocol, listen, host, port, logLevel, extra, balance)
}

// maildirectorLMTPConfig is one lmtp frontend in front of one server,
// which gets a PROXY header as sendProxy says ("v2-ssl", "none"); checks
// are off so probes stay out of the measurement. Recipients are routed by
// user with Dovecot's lab domain, as the integration tests set it up.
func maildirectorLMTPConfig(listen, server, sendProxy, logLevel string) string {
	host, port, _ := net.SplitHostPort(server)
	return fmt.Sprintf(`[global]
log_level = %[5]q
maxconn = 0
shutdown_grace = "1s"

[frontend.bench]
protocol = "lmtp"
bind = [%[1]q]
backend = "lmtp"

[backend.lmtp]
balance = "user"
default_domain = %[6]q
[backend.lmtp.check]
type = "none"

[[backend.lmtp.server]]
name = "lmtp1"
address = %[2]q
ports = { lmtp = %[3]s }
send_proxy = %[4]q
`, listen, host, port, sendProxy, logLevel, lmtpDomain)
}

// startMaildirector writes cfg to dir/name.toml and runs bin run -c that,
// which listens on listen. Every configuration gets a stats listener, as
// in production (their cost is part of the figures), with pprof on when
// the bench profiles.
func startMaildirector(bin, dir, name, listen, cfg string, pprof bool) (*proxyProc, error) {
	stats, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfg = withStats(cfg, stats, pprof)
	path := filepath.Join(dir, name+".toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	p, err := startProc(name, listen, filepath.Join(dir, name+".log"), bin, "run", "-c", path)
	if p != nil {
		p.stats = stats
	}
	return p, err
}

// withStats is cfg with a stats listener on bind, pprof on or off.
func withStats(cfg, bind string, pprof bool) string {
	return cfg + fmt.Sprintf("\n[stats]\nbind = %q\npprof = %t\n", bind, pprof)
}

// profile fetches a CPU profile of d from maildirector's pprof into
// dir/name.pprof while a measurement runs; the returned func waits for it.
// Without a directory, or for HAProxy, it does nothing.
func (p *proxyProc) profile(dir, name string, d time.Duration) (wait func()) {
	if dir == "" || p == nil || p.stats == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		secs := max(1, int(d.Round(time.Second)/time.Second))
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.stats, secs)
		if err := fetchTo(url, filepath.Join(dir, name+".pprof"), d+30*time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "bench: profile %s: %v\n", name, err)
		}
	}()
	return func() { <-done }
}

// profileCount bounds a profiled run's work, which its time limit ends.
const profileCount = 1_000_000

// profileRun runs work for d while maildirector's CPU profile of that
// time goes to dir/name.pprof. Nothing runs without a directory or for
// HAProxy: a profiled run is extra, never one of the measured ones.
func (p *proxyProc) profileRun(dir, name string, d time.Duration, work func(time.Duration)) {
	if dir == "" || p == nil || p.stats == "" {
		return
	}
	wait := p.profile(dir, name, d)
	work(d)
	wait()
}

// fetchTo writes the body of a GET of url to path.
func fetchTo(url, path string, timeout time.Duration) error {
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// procStats is what the kernel says about a process.
type procStats struct {
	RSSKiB  int64         `json:"vmrss_kib"`   // VmRSS
	AnonKiB int64         `json:"rssanon_kib"` // RssAnon: heap, stacks, pools; not the mapped binary
	FDs     int           `json:"fds"`         // entries of /proc/PID/fd
	Threads int           `json:"threads"`
	CPU     time.Duration `json:"cpu_ns"`     // user + system time so far
	SysCPU  time.Duration `json:"sys_cpu_ns"` // of which system time (in the kernel, on the process's behalf)
}

// readProcStats reads /proc/PID/status, /proc/PID/stat and counts /proc/PID/fd.
func readProcStats(pid int) (procStats, error) {
	dir := fmt.Sprintf("/proc/%d", pid)
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return procStats{}, err
	}
	st, err := parseStatus(status)
	if err != nil {
		return procStats{}, err
	}
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return procStats{}, err
	}
	st.FDs = len(fds)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return procStats{}, err
	}
	st.CPU, st.SysCPU, err = parseStatCPUSplit(stat)
	return st, err
}

// parseStatus takes VmRSS, RssAnon and Threads from /proc/PID/status (proc(5)).
func parseStatus(b []byte) (procStats, error) {
	var st procStats
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(val)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			continue
		}
		switch key {
		case "VmRSS":
			st.RSSKiB = n
			found++
		case "RssAnon":
			st.AnonKiB = n
		case "Threads":
			st.Threads = int(n)
		}
	}
	if found == 0 {
		return st, errors.New("no VmRSS in status")
	}
	return st, nil
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat; 100
// on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// parseStatCPU returns utime + stime from /proc/PID/stat (proc(5): fields
// 14 and 15, counted after the parenthesised command name, which may hold
// spaces).
func parseStatCPU(b []byte) (time.Duration, error) {
	total, _, err := parseStatCPUSplit(b)
	return total, err
}

// parseStatCPUSplit returns utime + stime and stime alone.
func parseStatCPUSplit(b []byte) (total, sys time.Duration, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, errors.New("malformed stat")
	}
	fields := strings.Fields(string(b[i+1:]))
	// fields[0] is field 3 (state): utime is field 14, stime field 15.
	if len(fields) < 13 {
		return 0, 0, errors.New("short stat")
	}
	ut, err1 := strconv.ParseInt(fields[11], 10, 64)
	st, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("parse stat: %w", err)
	}
	return time.Duration(ut+st) * clockTick, time.Duration(st) * clockTick, nil
}
