package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/maildirector/maildirector/director"
	"github.com/maildirector/maildirector/internal/dovecotlab"
	"github.com/maildirector/maildirector/tlsutil"
)

// binPath is the maildirector binary under test, built by TestMain.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "maildirector-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "maildirector")
	// Built with the race detector: the end-to-end tests (the soak above
	// all) drive the real concurrency, and a race report fails the test
	// whose process printed it (see startProcess).
	build := exec.Command("go", "build", "-race", "-o", binPath, "../cmd/maildirector")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build maildirector:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// clientIP is the loopback address test clients connect from. It differs
// from the address maildirector listens on (127.0.0.1) because Dovecot
// treats a connection whose remote and local IPs are equal as "secured",
// which would hide whether the PROXY v2 SSL TLV did it.
var clientIP = net.IPv4(127, 0, 0, 2)

// dial connects to addr from clientIP.
func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialTLS connects to an implicit-TLS frontend.
func dialTLS(t testing.TB, addr string) *tls.Conn {
	t.Helper()
	tc := tls.Client(dial(t, addr), clientTLS())
	if err := tc.Handshake(); err != nil {
		t.Fatalf("tls handshake with %s: %v", addr, err)
	}
	return tc
}

func clientTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"}
}

func freePort(t testing.TB) int {
	t.Helper()
	// Below Linux's ephemeral range (32768 and up): a port the kernel gave
	// this test could otherwise be taken by any outgoing connection (of
	// another test, of Dovecot) before maildirector binds it.
	for range 200 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		return port
	}
	t.Fatal("no free port between 20000 and 32000")
	return 0
}

// frontendSpec is one [frontend.NAME] of a test configuration.
type frontendSpec struct {
	Name      string
	Protocol  string // imap, pop3, submission, lmtp, tcp
	TLS       string // none, starttls, implicit
	Plaintext string // auto, allow, deny ("" = auto)
	Extra     string // more TOML lines for the frontend table
	// Host is the IP the frontend listens on; "" means 127.0.0.1. A client
	// that cannot choose its source address (an external program) comes
	// from 127.0.0.1, so a frontend on 127.0.0.3 keeps rip and lip apart.
	Host string
}

// setupSpec describes a test deployment.
type setupSpec struct {
	Instances  int
	Frontends  []frontendSpec
	Balance    string // default user
	UserExpire string // default 15m
	Check      string // check type; default tcp
	Inter      string // default 500ms
	Backend    string // more TOML lines for the backend table
	CheckExtra string // more TOML lines for [backend.dovecot.check]
	Global     string // more TOML lines for [global]
	// ForwardID points the servers' imap and pop3 ports at the lab's
	// plain (Direct) listeners and leaves send_proxy to its default, for
	// frontends with forward = "id"; Lab.LoginTrustedNetworks must then
	// cover 127.0.0.1, maildirector's source address.
	ForwardID bool
	// ServerExtra returns more TOML lines for server i ("dovecot<i+1>").
	ServerExtra func(i int) string
	// Lab holds options for the Dovecot lab; Instances above wins.
	Lab dovecotlab.Options
	// Limits are the [global.limits] lines; "" means noLimits.
	Limits string
	// Stats adds a [stats] listener (addrs["stats"]) with these more
	// TOML lines, e.g. `refresh = "500ms"`; "" and StatsOn false: none.
	Stats   string
	StatsOn bool
	// Control adds a [control] table with its socket at e.ctlSocket()
	// and these more TOML lines, e.g. `mode = "0600"`; "" and ControlOn
	// false: none.
	Control   string
	ControlOn bool
}

// env is a running lab with maildirector in front of it.
type env struct {
	t     *testing.T
	lab   *dovecotlab.Lab
	spec  setupSpec
	dir   string
	cfg   string
	addrs map[string]string // frontend name → host:port
	md    *process
}

// startEnv starts the Dovecot lab and maildirector with a configuration
// generated from spec.
func startEnv(t *testing.T, spec setupSpec) *env {
	t.Helper()
	if spec.Instances == 0 {
		spec.Instances = 2
	}
	labOpts := spec.Lab
	labOpts.Instances = spec.Instances
	lab := dovecotlab.StartT(t, labOpts)
	e := &env{t: t, lab: lab, spec: spec, dir: t.TempDir(), addrs: make(map[string]string)}
	e.cfg = filepath.Join(e.dir, "maildirector.toml")
	if err := os.WriteFile(e.cfg, []byte(e.config()), 0o644); err != nil {
		t.Fatal(err)
	}
	e.md = startProcess(t, e.cfg, e.addrs)
	return e
}

func (e *env) config() string {
	t := e.t
	certFile, keyFile, err := tlsutil.WriteSelfSigned(e.dir, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\nlog_level = \"debug\"\nshutdown_grace = \"2s\"\n%s\n\n", e.spec.Global)
	// Every test client comes from one address: the per-client limits are
	// off unless a test is about them.
	fmt.Fprintf(&b, "[global.limits]\n%s\n\n", or(e.spec.Limits, noLimits))
	for _, f := range e.spec.Frontends {
		addr := fmt.Sprintf("%s:%d", or(f.Host, "127.0.0.1"), freePort(t))
		e.addrs[f.Name] = addr
		fmt.Fprintf(&b, "[frontend.%s]\nprotocol = %q\nbind = [%q]\nbackend = \"dovecot\"\n", f.Name, f.Protocol, addr)
		if f.Plaintext != "" {
			fmt.Fprintf(&b, "plaintext_login = %q\n", f.Plaintext)
		}
		b.WriteString(f.Extra + "\n")
		if f.TLS != "" && f.TLS != "none" {
			fmt.Fprintf(&b, "[frontend.%s.tls]\nmode = %q\n[[frontend.%s.tls.cert]]\ncert = %q\nkey = %q\n",
				f.Name, f.TLS, f.Name, certFile, keyFile)
		}
		b.WriteString("\n")
	}
	if e.spec.StatsOn {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		e.addrs["stats"] = addr
		fmt.Fprintf(&b, "[stats]\nbind = %q\n%s\n\n", addr, e.spec.Stats)
	}
	if e.spec.ControlOn {
		fmt.Fprintf(&b, "[control]\nsocket = %q\n%s\n\n", e.ctlSocket(), e.spec.Control)
	}
	balance := or(e.spec.Balance, "user")
	fmt.Fprintf(&b, "[backend.dovecot]\nbalance = %q\n", balance)
	if balance == "user" {
		fmt.Fprintf(&b, "user_expire = %q\n", or(e.spec.UserExpire, "15m"))
	}
	b.WriteString(e.spec.Backend + "\n")
	fmt.Fprintf(&b, "[backend.dovecot.check]\ntype = %q\ninter = %q\nrise = 2\nfall = 2\ntimeout = \"1s\"\n%s\n\n",
		or(e.spec.Check, "tcp"), or(e.spec.Inter, "500ms"), e.spec.CheckExtra)
	for i, in := range e.lab.Instances {
		p := in.Ports
		fmt.Fprintf(&b, "[[backend.dovecot.server]]\nname = %q\naddress = \"127.0.0.1\"\n", serverName(i))
		sieve := ""
		if p.ManageSieve != 0 {
			sieve = fmt.Sprintf(", managesieve = %d", p.ManageSieve)
		}
		if e.spec.ForwardID {
			fmt.Fprintf(&b, "ports = { imap = %d, pop3 = %d }\n", p.IMAPDirect, p.POP3Direct)
		} else {
			fmt.Fprintf(&b, "ports = { imap = %d, pop3 = %d, lmtp = %d, submission = %d%s }\n", p.IMAP, p.POP3, p.LMTP, p.Submission, sieve)
			b.WriteString("send_proxy = \"v2-ssl\"\n")
		}
		if e.spec.ServerExtra != nil {
			b.WriteString(e.spec.ServerExtra(i) + "\n")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// noLimits turns the per-client limits and the login penalty off.
const noLimits = "max_per_client = 0\nmax_rate = 0\npenalty_init = \"0s\"\nblock_after = 0"

func or(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

func serverName(i int) string { return fmt.Sprintf("dovecot%d", i+1) }

// instanceOf maps a server name back to its lab instance.
func (e *env) instanceOf(server string) *dovecotlab.Instance {
	for i, in := range e.lab.Instances {
		if serverName(i) == server {
			return in
		}
	}
	e.t.Fatalf("no instance for server %q", server)
	return nil
}

// hashServer is the server the director's consistent hash names for user
// while every server is up: what a fresh maildirector must pick.
func (e *env) hashServer(user string) string {
	opts := director.Options{Name: "dovecot"}
	for i := range e.lab.Instances {
		opts.Servers = append(opts.Servers, director.ServerOptions{Name: serverName(i), Weight: 100})
	}
	d, err := director.New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return d.HashOrder(user)[0]
}

// loginsOf returns, per server name, how many logins of user its Dovecot logged.
func (e *env) loginsOf(user string) map[string]int {
	e.t.Helper()
	out := make(map[string]int)
	for i, in := range e.lab.Instances {
		logins, err := in.Logins()
		if err != nil {
			e.t.Fatal(err)
		}
		for _, l := range logins {
			if l.User == user {
				out[serverName(i)]++
			}
		}
	}
	return out
}

// restart stops maildirector (SIGTERM) and starts it again with the same configuration.
func (e *env) restart() {
	e.t.Helper()
	e.md.stop()
	e.md = startProcess(e.t, e.cfg, e.addrs)
}

// process is a running maildirector binary.
type process struct {
	t    testing.TB
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error
}

// startProcess runs `maildirector run -c cfg` and waits until every address accepts.
func startProcess(t testing.TB, cfg string, addrs map[string]string) *process {
	t.Helper()
	p := &process{t: t, log: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binPath, "run", "-c", cfg)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.wait()
	t.Cleanup(func() {
		p.stop()
		if strings.Contains(p.log.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in maildirector")
		}
		if t.Failed() {
			t.Logf("maildirector log:\n%s", p.log.String())
		}
	})
	for _, a := range addrs {
		waitListening(t, a, p)
	}
	return p
}

func (p *process) wait() {
	p.err = p.cmd.Wait()
	close(p.done)
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits (bounded) for the process to end.
func (p *process) stop() {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("maildirector did not stop within 15s of SIGTERM")
	}
}

func waitListening(t testing.TB, addr string, p *process) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if p.exited() {
			t.Fatalf("maildirector exited: %v\n%s", p.err, p.log.String())
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("maildirector is not listening on %s after 5s\n%s", addr, p.log.String())
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// eventually retries cond until it holds or 10s passed (bounded polling,
// not a timing assertion).
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if cond() {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
