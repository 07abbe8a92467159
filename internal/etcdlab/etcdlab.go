// Package etcdlab runs a real etcd cluster on loopback for maildirector's
// cluster tests: each member on its own 127.0.0.x address (client and peer
// ports), its own data directory and log file. It owns the members' life
// (start, stop, start again on the same addresses and data) and never
// touches the packaged etcd service.
//
//	lab := etcdlab.StartT(t, etcdlab.Options{Members: 3})
//	// lab.Endpoints() are "127.0.0.21:PORT", ...
//	lab.Stop()  // every member: etcd unreachable
//	lab.Start() // back with its data
//
// The machine needs Debian's etcd-server (scripts/deps.sh), etcd 3.4.
package etcdlab

import (
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
	"testing"
	"time"
)

const (
	// Binary is where Debian's etcd-server installs etcd.
	Binary = "/usr/bin/etcd"
	// readyTimeout bounds how long Start waits for every member to be
	// healthy (a leader elected).
	readyTimeout = 30 * time.Second
	// stopTimeout bounds how long Stop waits for a member to exit after
	// SIGTERM before it kills it.
	stopTimeout = 10 * time.Second
	// firstIP is the last byte of the first member's 127.0.0.x address.
	firstIP = 21
)

// Options configures a lab.
type Options struct {
	// Members is the cluster size. Zero means 3.
	Members int
	// Dir holds each member's data directory and log. Empty means a new
	// temporary directory, removed by Close.
	Dir string
}

// Lab is a running etcd cluster.
type Lab struct {
	Dir      string
	Members  []*Member
	removeOn bool
}

// Member is one etcd.
type Member struct {
	Name string
	// IP is its own loopback address; Client and Peer its ports' host:port.
	IP, Client, Peer string
	Data, Log        string
	initialCluster   string
	cmd              *exec.Cmd
	exited           chan struct{}
}

// Start starts opts.Members members and waits until the cluster is healthy.
func Start(opts Options) (*Lab, error) {
	if _, err := os.Stat(Binary); err != nil {
		return nil, fmt.Errorf("etcdlab: %s missing (install etcd-server: scripts/deps.sh): %w", Binary, err)
	}
	n := opts.Members
	if n <= 0 {
		n = 3
	}
	l := &Lab{Dir: opts.Dir}
	if l.Dir == "" {
		d, err := os.MkdirTemp("", "etcdlab-")
		if err != nil {
			return nil, err
		}
		l.Dir, l.removeOn = d, true
	} else if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return nil, err
	}
	var initial []string
	for i := range n {
		ip := "127.0.0." + strconv.Itoa(firstIP+i)
		ports, err := freePorts(ip, 2)
		if err != nil {
			l.Close()
			return nil, err
		}
		m := &Member{
			Name: fmt.Sprintf("etcd%d", i+1), IP: ip,
			Client: net.JoinHostPort(ip, strconv.Itoa(ports[0])), Peer: net.JoinHostPort(ip, strconv.Itoa(ports[1])),
		}
		m.Data = filepath.Join(l.Dir, m.Name+".data")
		m.Log = filepath.Join(l.Dir, m.Name+".log")
		initial = append(initial, m.Name+"=http://"+m.Peer)
		l.Members = append(l.Members, m)
	}
	for _, m := range l.Members {
		m.initialCluster = strings.Join(initial, ",")
	}
	if err := l.Start(); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// StartT starts a lab for a test and closes it at its end, with every
// member's log in the test output when the test failed.
func StartT(t testing.TB, opts Options) *Lab {
	t.Helper()
	l, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range l.Members {
				data, _ := os.ReadFile(m.Log)
				if len(data) > 4000 {
					data = data[len(data)-4000:]
				}
				t.Logf("%s log (tail):\n%s", m.Name, data)
			}
		}
		l.Close()
	})
	return l
}

// Endpoints returns the members' client addresses.
func (l *Lab) Endpoints() []string {
	out := make([]string, len(l.Members))
	for i, m := range l.Members {
		out[i] = m.Client
	}
	return out
}

// PIDs returns the running members' process ids.
func (l *Lab) PIDs() []int {
	var out []int
	for _, m := range l.Members {
		if m.cmd != nil {
			out = append(out, m.cmd.Process.Pid)
		}
	}
	return out
}

// Start starts every member that is not running and waits until all are
// healthy.
func (l *Lab) Start() error {
	for _, m := range l.Members {
		if err := m.start(); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(readyTimeout)
	for _, m := range l.Members {
		if err := m.waitHealthy(deadline); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops every member.
func (l *Lab) Stop() {
	for _, m := range l.Members {
		m.Stop()
	}
}

// Close stops the members and removes the lab's directory if it made it.
func (l *Lab) Close() {
	l.Stop()
	if l.removeOn {
		os.RemoveAll(l.Dir)
	}
}

func (m *Member) start() error {
	if m.cmd != nil {
		return nil
	}
	logf, err := os.OpenFile(m.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(Binary,
		"--name", m.Name, "--data-dir", m.Data,
		"--listen-client-urls", "http://"+m.Client, "--advertise-client-urls", "http://"+m.Client,
		"--listen-peer-urls", "http://"+m.Peer, "--initial-advertise-peer-urls", "http://"+m.Peer,
		"--initial-cluster", m.initialCluster, "--initial-cluster-state", "new",
		"--initial-cluster-token", "etcdlab",
		// Loopback: elections in a fraction of a second, so that a
		// restarted cluster has a leader quickly.
		"--heartbeat-interval", "50", "--election-timeout", "500",
		"--logger", "zap", "--log-outputs", "stderr",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("etcdlab: start %s: %w", m.Name, err)
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go m.wait(cmd, m.exited)
	return nil
}

// wait reaps the process; it ends when etcd exits.
func (m *Member) wait(cmd *exec.Cmd, exited chan struct{}) {
	cmd.Wait()
	close(exited)
}

// waitHealthy polls the member's /health until it says true.
func (m *Member) waitHealthy(deadline time.Time) error {
	client := &http.Client{Timeout: time.Second}
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-m.exited:
			return fmt.Errorf("etcdlab: %s exited at start; see %s", m.Name, m.Log)
		default:
		}
		resp, err := client.Get("http://" + m.Client + "/health")
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"true"`) {
				return nil
			}
			last = string(body)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("etcdlab: %s not healthy within %s: %s", m.Name, readyTimeout, last)
}

// Stop stops the member (SIGTERM, then SIGKILL past stopTimeout).
func (m *Member) Stop() {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(stopTimeout):
		m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

// freePorts returns n ports free on ip.
func freePorts(ip string, n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []int
	for len(ports) < n {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return nil, errors.Join(fmt.Errorf("etcdlab: free port on %s", ip), err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
