// Package postfixlab runs a real Postfix on loopback for maildirector's
// integration tests: the MTA in front of the LMTP frontend. It owns one
// non-system instance's life (start, stop), its configuration, and a look
// at its queue and log; it never touches the packaged Postfix service or
// /etc/postfix.
//
// An instance has its own configuration directory (main.cf and master.cf,
// read with `postfix -c DIR`), queue directory, data directory and log file
// (maillog_file through postlogd: no syslog needed). Its smtpd listens on
// one loopback port and relays the lab's domains over LMTP to one address:
//
//	relay_domains   = lab.test
//	relay_transport = lmtp:inet:127.0.0.1:PORT   (maildirector's LMTP frontend)
//
// Mail to any other domain (bounces to the test's senders, say) is
// discarded, so that the queue can end empty. Retries are fast
// (queue_run_delay and minimal_backoff_time 1s, maximal_backoff_time 2s):
// a recipient deferred with a 4xx is tried again within seconds.
//
// Usage in a test:
//
//	mta := postfixlab.StartT(t, postfixlab.Options{LMTP: lmtpAddr})
//	// … submit over SMTP to mta.SMTPAddr …
//	empty, err := mta.QueueEmpty()
//	log, err := mta.Log() // "status=sent", "status=deferred" lines
//
// The machine needs the Debian package postfix (scripts/deps.sh) and root:
// Postfix's master starts as root and runs its daemons as mail_owner
// (postfix).
package postfixlab

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// stopTimeout bounds how long Stop waits for the instance's processes
	// to end after `postfix stop` before it kills them.
	stopTimeout = 10 * time.Second
	// listenTimeout bounds how long Start waits for smtpd's port.
	listenTimeout = 5 * time.Second
)

// Options configures an instance.
type Options struct {
	// LMTP is the host:port that mail for Domains is relayed to over LMTP.
	// Required.
	LMTP string
	// Domains are the relayed domains. Empty means "lab.test".
	Domains []string
	// Dir holds the instance's directories and log. Empty means a new
	// temporary directory, removed by Stop. Every directory above it must
	// be searchable by the postfix user.
	Dir string
	// Concurrency is how many LMTP deliveries run at once (the LMTP
	// destination's concurrency limit). Zero means 4.
	Concurrency int
}

func (o Options) domains() []string {
	if len(o.Domains) == 0 {
		return []string{"lab.test"}
	}
	return o.Domains
}

func (o Options) concurrency() int {
	if o.Concurrency <= 0 {
		return 4
	}
	return o.Concurrency
}

// Instance is a running Postfix.
type Instance struct {
	// Dir holds etc (main.cf, master.cf), queue, data and maillog.
	Dir string
	// SMTPAddr is smtpd's host:port on loopback.
	SMTPAddr string

	confDir  string
	removeOn bool // Stop removes Dir
	stopped  bool
}

// Start writes the configuration and starts the instance; it returns once
// smtpd accepts connections.
func Start(opts Options) (*Instance, error) {
	if opts.LMTP == "" {
		return nil, errors.New("postfixlab: Options.LMTP is required")
	}
	for _, bin := range []string{"postfix", "postqueue"} {
		if _, err := exec.LookPath(bin); err != nil {
			return nil, fmt.Errorf("postfixlab: %w (install the postfix package: scripts/deps.sh)", err)
		}
	}
	owner, err := user.Lookup("postfix")
	if err != nil {
		return nil, fmt.Errorf("postfixlab: look up mail_owner: %w", err)
	}
	uid, _ := strconv.Atoi(owner.Uid)
	gid, _ := strconv.Atoi(owner.Gid)

	in := &Instance{Dir: opts.Dir}
	if in.Dir == "" {
		if in.Dir, err = os.MkdirTemp("", "postfixlab-"); err != nil {
			return nil, fmt.Errorf("postfixlab: %w", err)
		}
		in.removeOn = true
	}
	in.confDir = filepath.Join(in.Dir, "etc")
	fail := func(err error) (*Instance, error) {
		if in.removeOn {
			os.RemoveAll(in.Dir)
		}
		return nil, fmt.Errorf("postfixlab: %w", err)
	}
	// The daemons run as postfix and must reach the queue and data
	// directories; postfix-script wants the data directory owned by
	// mail_owner and creates the queue's subdirectories itself.
	if err := os.Chmod(in.Dir, 0o755); err != nil {
		return fail(err)
	}
	for _, d := range []string{"etc", "queue", "data"} {
		if err := os.MkdirAll(filepath.Join(in.Dir, d), 0o755); err != nil {
			return fail(err)
		}
	}
	if err := os.Chown(filepath.Join(in.Dir, "data"), uid, gid); err != nil {
		return fail(err)
	}
	port, err := freePort()
	if err != nil {
		return fail(err)
	}
	in.SMTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := os.WriteFile(filepath.Join(in.confDir, "main.cf"), []byte(mainCF(in.Dir, opts)), 0o644); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(in.confDir, "master.cf"), []byte(masterCF(in.SMTPAddr)), 0o644); err != nil {
		return fail(err)
	}
	if out, err := in.postfix("start"); err != nil {
		return fail(fmt.Errorf("postfix start: %w: %s%s", err, out, in.logTail()))
	}
	if err := waitListening(in.SMTPAddr, time.Now().Add(listenTimeout)); err != nil {
		in.Stop()
		return fail(fmt.Errorf("smtpd: %w%s", err, in.logTail()))
	}
	return in, nil
}

// StartT starts an instance for a test: it fails the test when Start fails
// and stops the instance at cleanup, logging the mail log if the test failed.
func StartT(t testing.TB, opts Options) *Instance {
	t.Helper()
	in, err := Start(opts)
	if err != nil {
		t.Fatalf("start postfix: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if log, err := in.Log(); err == nil {
				t.Logf("postfix log (%s):\n%s", filepath.Join(in.Dir, "maillog"), tail(log, 200))
			}
		}
		if err := in.Stop(); err != nil {
			t.Errorf("stop postfix: %v", err)
		}
	})
	return in
}

// mainCF is the instance's main.cf.
func mainCF(dir string, opts Options) string {
	return fmt.Sprintf(`# postfixlab: a test instance, started with postfix -c %[1]s/etc
compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfixlab
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
myhostname = mta.lab.test
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
relay_domains = %[2]s
relay_transport = lmtp:inet:%[3]s
# Anything else (bounces to the test's senders) goes nowhere, so that the
# queue ends empty; a bounce is logged as status=bounced.
default_transport = discard
smtpd_peername_lookup = no
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
# Accept as fast as the test submits: no pause when the queue is busy.
in_flow_delay = 0
# A deferred recipient is tried again within seconds.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
lmtp_destination_concurrency_limit = %[4]d
lmtp_initial_destination_concurrency = %[4]d
lmtp_connect_timeout = 5s
`, dir, strings.Join(opts.domains(), ", "), opts.LMTP, opts.concurrency())
}

// masterCF is the instance's master.cf: smtpd on addr, the services the
// queue needs, lmtp for delivery, postlogd for maillog_file. Nothing is
// chrooted (the queue directory is not a chroot jail).
func masterCF(addr string) string {
	return addr + ` inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
lmtp      unix  - - n -  - lmtp
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
`
}

// postfix runs `postfix -c etc args...`.
func (in *Instance) postfix(args ...string) ([]byte, error) {
	return exec.Command("postfix", append([]string{"-c", in.confDir}, args...)...).CombinedOutput()
}

// Queue returns `postqueue -p`'s listing of the queue.
func (in *Instance) Queue() (string, error) {
	out, err := exec.Command("postqueue", "-c", in.confDir, "-p").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("postqueue -p: %w: %s", err, out)
	}
	return string(out), nil
}

// QueueEmpty reports whether the queue holds no message.
func (in *Instance) QueueEmpty() (bool, error) {
	q, err := in.Queue()
	if err != nil {
		return false, err
	}
	return strings.Contains(q, "Mail queue is empty"), nil
}

// Log returns the mail log so far.
func (in *Instance) Log() (string, error) {
	b, err := os.ReadFile(filepath.Join(in.Dir, "maillog"))
	return string(b), err
}

// logTail is the end of the log, for error messages.
func (in *Instance) logTail() string {
	log, err := in.Log()
	if err != nil || log == "" {
		return ""
	}
	return "\nmaillog:\n" + tail(log, 20)
}

// Stop stops the instance (`postfix stop`) and waits until none of its
// processes is left; those still there after stopTimeout are killed. It
// removes Dir if Start made it. Stopping twice does nothing.
func (in *Instance) Stop() error {
	if in.stopped {
		return nil
	}
	in.stopped = true
	var errs []error
	if out, err := in.postfix("stop"); err != nil {
		errs = append(errs, fmt.Errorf("postfix stop: %w: %s", err, out))
	}
	deadline := time.Now().Add(stopTimeout)
	for len(in.processes()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if left := in.processes(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("processes %v still running %v after postfix stop: killed", left, stopTimeout))
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL) // ESRCH: gone meanwhile
		}
	}
	if in.removeOn {
		if err := os.RemoveAll(in.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("postfixlab: stop: %w", err)
	}
	return nil
}

// processes returns the pids of the instance's processes: the master and
// its daemons, which all carry MAIL_CONFIG=<etc> in their environment
// (postfix -c sets it, the master passes it on).
func (in *Instance) processes() []int {
	want := []byte("MAIL_CONFIG=" + in.confDir + "\x00")
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue // gone, or a kernel thread
		}
		if bytes.HasPrefix(env, want) || bytes.Contains(env, append([]byte{0}, want...)) {
			out = append(out, pid)
		}
	}
	return out
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(addr string, deadline time.Time) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s: %w", addr, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
