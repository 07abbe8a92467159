package dovecotlab

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// Paths of the Debian packages' binaries (dovecot-core 2.3.19).
const (
	dovecotPath  = "/usr/sbin/dovecot"
	doveconfPath = "/usr/bin/doveconf"
	doveadmPath  = "/usr/bin/doveadm"
	// mailUserName owns the maildirs and runs the mail processes. The
	// "dovecot" user exists as soon as dovecot-core is installed, so a fresh
	// machine needs no extra account.
	mailUserName = "dovecot"
)

// Password is the password of every lab user.
const Password = "pass"

// FullUser is a user of every instance that is over its quota (one byte,
// and a message already stored): Dovecot's LMTP refuses it at RCPT
// (lmtp_rcpt_check_quota). It is not in Lab.Users.
const FullUser = "full"

// Defaults for zero Options fields.
const (
	DefaultInstances       = 2
	DefaultUsers           = 200
	DefaultTrustedNetworks = "127.0.0.0/8 ::1"
	DefaultListenAddress   = "127.0.0.1"
)

// Errors callers can test with errors.Is.
var (
	// ErrNotInstalled means the Dovecot binaries or the dovecot user are
	// missing: run scripts/deps.sh.
	ErrNotInstalled = errors.New("dovecot is not installed (run scripts/deps.sh)")
	// ErrConfig means doveconf rejected the generated configuration.
	ErrConfig = errors.New("dovecot configuration rejected")
	// ErrNotReady means the master exited, or its ports did not all answer, in time.
	ErrNotReady = errors.New("dovecot instance not ready")
	// ErrRunning means Start was called on a running instance.
	ErrRunning = errors.New("dovecot instance already running")
	// ErrNotRunning means Freeze or Thaw was called on a stopped instance.
	ErrNotRunning = errors.New("dovecot instance not running")
	// ErrUnknownUser means the user is not one of the lab's users.
	ErrUnknownUser = errors.New("unknown lab user")
	// errAddrInUse marks a start that failed because a port was taken.
	errAddrInUse = errors.New("address already in use")
)

// Options configures Start. The zero value starts two instances with 200
// users each on free loopback ports in a fresh temporary directory.
type Options struct {
	// Dir is the root of all instance directories (one subdirectory per
	// instance: config, users file, maildirs, log). "" makes a temporary
	// directory that Close removes; a given Dir is kept for inspection.
	// The directory and its ancestors are made traversable (o+x) because
	// the mail processes run as the unprivileged dovecot user.
	Dir string
	// Instances is the number of Dovecot instances; zero or negative means DefaultInstances.
	Instances int
	// Users is the number of test users user000 … userNNN (three digits);
	// zero or negative means DefaultUsers. "alice" and "bob" always exist too.
	// Every user's password is Password, unless Passwords names another.
	Users int
	// Passwords gives some lab users a password of their own instead of
	// Password (tests that look for a password where it must not be need
	// one that appears nowhere else). No ':' or newline.
	Passwords map[string]string
	// Ports optionally fixes the ports of instance i (Ports[i]); missing
	// entries and zero fields get free loopback ports.
	Ports []InstancePorts
	// TrustedNetworks is Dovecot's haproxy_trusted_networks; "" means DefaultTrustedNetworks.
	TrustedNetworks string
	// LoginTrustedNetworks is Dovecot's login_trusted_networks: the
	// addresses whose IMAP ID x-originating-ip/x-session-ext-id fields and
	// POP3 XCLIENT Dovecot's login processes honour (a proxy forwarding
	// the client in-band, maildirector's forward = "id"). Measured on
	// 2.3.19: on a haproxy = yes listener it is checked against the PROXY
	// header's client address, so it serves the Direct listeners. "" leaves
	// it unset (Dovecot's default: nobody).
	LoginTrustedNetworks string
	// DisablePlaintextAuth sets disable_plaintext_auth = yes: LOGIN and
	// AUTH PLAIN are then refused unless the session is secured (a PROXY v2
	// SSL TLV with the client bit, or a loopback-to-loopback connection).
	// False means "no": plaintext logins always work.
	DisablePlaintextAuth bool
	// SubmissionRelay is the host:port of the SMTP server that Dovecot's
	// submission service relays to (see package smtpsink). "" points the
	// relay at 127.0.0.1:1, where nothing listens.
	SubmissionRelay string
	// TLS sets ssl = yes with implicit TLS on the haproxy = yes IMAP, POP3
	// and submission listeners: TLS starts right after the PROXY header, as
	// a proxy with TLS to its servers speaks it. Each instance gets its own
	// self-signed certificate for "localhost", 127.0.0.1 and ::1, which is
	// also its CA (Instance.CertFile). LMTP and the Direct listeners stay
	// plaintext. False means ssl = no.
	TLS bool
	// ListenAddress is the loopback IP every listener binds, e.g. "::1" for
	// an IPv6 lab; "" means DefaultListenAddress.
	ListenAddress string
	// LoginProcessPerConnection runs one login process per connection
	// (service_count = 1) instead of the high-performance mode. Measured on
	// 2.3.19: a login process in high-performance mode logs the local_name
	// of a PROXY v2 AUTHORITY TLV only for its first two connections, then
	// none; tests that look at local_name need this.
	LoginProcessPerConnection bool
	// OAuth2URL, when set, gives every instance an oauth2 passdb (the
	// OAUTHBEARER and XOAUTH2 mechanisms) that introspects tokens at this
	// URL (RFC 7662: POST token=..., answer {"active": true, "username":
	// ...}). "" means none.
	OAuth2URL string
	// ManageSieve adds a ManageSieve listener (RFC 5804) with haproxy = yes
	// on Ports.ManageSieve, plaintext even with TLS (clients reach it with
	// STARTTLS, which a proxy in front answers itself), and the Sieve
	// plugin's script storage in each user's home. It needs Debian's
	// dovecot-managesieved. False: no ManageSieve, and the configuration
	// is the same as without this option.
	ManageSieve bool
	// Logger receives one line per instance start and stop; nil discards.
	Logger *slog.Logger
}

// InstancePorts are the loopback TCP ports of one instance. IMAP, POP3,
// LMTP, Submission and ManageSieve require a PROXY v1/v2 header (haproxy =
// yes); the Direct ports take plain connections. ManageSieve is 0 unless
// Options.ManageSieve is set.
type InstancePorts struct {
	IMAP, IMAPDirect, POP3, POP3Direct, LMTP, LMTPDirect, Submission int
	// ManageSieve is the sieve listener (Options.ManageSieve), else 0.
	ManageSieve int
}

// list returns the ports in a fixed order, with their listener names.
func (p InstancePorts) list() []namedPort {
	ports := []namedPort{
		{"imap", p.IMAP, probeIMAP, true, false},
		{"imap-direct", p.IMAPDirect, probeIMAP, false, false},
		{"pop3", p.POP3, probePOP3, true, false},
		{"pop3-direct", p.POP3Direct, probePOP3, false, false},
		{"lmtp", p.LMTP, probeSMTP, true, false},
		{"lmtp-direct", p.LMTPDirect, probeSMTP, false, false},
		{"submission", p.Submission, probeSMTP, true, false},
	}
	if p.ManageSieve != 0 {
		ports = append(ports, namedPort{"sieve", p.ManageSieve, probeManageSieve, true, false})
	}
	return ports
}

// Lab is a set of running Dovecot instances. Close stops them all.
type Lab struct {
	// Instances are the lab's servers, named dovecot1, dovecot2, ….
	Instances []*Instance
	// Dir is the root directory (Options.Dir or the temporary one).
	Dir string
	// Users are the lab's user names, in order: user000 … then alice, bob.
	Users []string

	ownDir    bool
	logger    *slog.Logger
	passwords map[string]string // Options.Passwords
}

// Start writes the configuration of every instance, checks it with
// doveconf, starts the masters and waits until every port answers. On error
// nothing is left running.
func Start(opts Options) (*Lab, error) {
	if err := checkInstalled(opts.ManageSieve); err != nil {
		return nil, err
	}
	mailUser, err := user.Lookup(mailUserName)
	if err != nil {
		return nil, fmt.Errorf("%w: look up user %s: %v", ErrNotInstalled, mailUserName, err)
	}
	uid, _ := strconv.Atoi(mailUser.Uid)
	gid, _ := strconv.Atoi(mailUser.Gid)

	l := &Lab{Dir: opts.Dir, logger: opts.Logger, passwords: opts.Passwords}
	if l.logger == nil {
		l.logger = slog.New(slog.DiscardHandler)
	}
	if l.Dir == "" {
		if l.Dir, err = os.MkdirTemp("", "dovecotlab-"); err != nil {
			return nil, fmt.Errorf("make lab dir: %w", err)
		}
		l.ownDir = true
	} else if l.Dir, err = filepath.Abs(l.Dir); err != nil {
		return nil, fmt.Errorf("lab dir: %w", err)
	}
	if err := os.MkdirAll(l.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("make lab dir: %w", err)
	}
	if err := makeTraversable(l.Dir); err != nil {
		l.Close()
		return nil, err
	}

	l.Users = userNames(opts.Users)
	relayHost, relayPort, err := splitRelay(opts.SubmissionRelay)
	if err != nil {
		l.Close()
		return nil, err
	}
	trusted := opts.TrustedNetworks
	if trusted == "" {
		trusted = DefaultTrustedNetworks
	}
	listen := opts.ListenAddress
	if listen == "" {
		listen = DefaultListenAddress
	}
	if ip := net.ParseIP(listen); ip == nil {
		l.Close()
		return nil, fmt.Errorf("listen address %q: not an IP address", listen)
	}
	n := opts.Instances
	if n <= 0 {
		n = DefaultInstances
	}
	for k := range n {
		var fixed InstancePorts
		if k < len(opts.Ports) {
			fixed = opts.Ports[k]
		}
		inst, err := newInstance(l, k+1, fixed, configParams{
			TrustedNetworks:           trusted,
			LoginTrustedNetworks:      opts.LoginTrustedNetworks,
			DisablePlaintextAuth:      opts.DisablePlaintextAuth,
			RelayHost:                 relayHost,
			RelayPort:                 relayPort,
			UID:                       uid,
			GID:                       gid,
			ListenAddress:             listen,
			SSL:                       opts.TLS,
			LoginProcessPerConnection: opts.LoginProcessPerConnection,
			OAuth2URL:                 opts.OAuth2URL,
			ManageSieve:               opts.ManageSieve,
		})
		if err != nil {
			l.Close()
			return nil, err
		}
		l.Instances = append(l.Instances, inst)
		if err := inst.startFirst(); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// Close kills every instance (SIGKILL: fast and certain, which is what test
// cleanup wants; use Instance.Stop for a polite shutdown), removes the
// runtime directories and, when Start made it, the lab directory. It is
// safe to call more than once.
func (l *Lab) Close() error {
	var errs []error
	for _, inst := range l.Instances {
		if err := inst.Kill(); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(inst.BaseDir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", inst.BaseDir, err))
		}
	}
	if l.ownDir {
		if err := os.RemoveAll(l.Dir); err != nil {
			errs = append(errs, fmt.Errorf("remove lab dir: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Instance returns the instance with the given name (dovecot1 …), or nil.
func (l *Lab) Instance(name string) *Instance {
	for _, inst := range l.Instances {
		if inst.Name == name {
			return inst
		}
	}
	return nil
}

// userNames lists user000 … user(n-1), then alice and bob.
func userNames(n int) []string {
	if n <= 0 {
		n = DefaultUsers
	}
	users := make([]string, 0, n+2)
	for k := range n {
		users = append(users, fmt.Sprintf("user%03d", k))
	}
	return append(users, "alice", "bob")
}

// checkInstalled looks for the binaries the lab runs; sieve adds
// Pigeonhole's ManageSieve (dovecot-managesieved).
func checkInstalled(sieve bool) error {
	bins := []string{dovecotPath, doveconfPath,
		"/usr/lib/dovecot/imap-login", "/usr/lib/dovecot/pop3-login",
		"/usr/lib/dovecot/lmtp", "/usr/lib/dovecot/submission-login"}
	if sieve {
		bins = append(bins, "/usr/lib/dovecot/managesieve-login", "/usr/lib/dovecot/managesieve")
	}
	for _, p := range bins {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%w: %v", ErrNotInstalled, err)
		}
	}
	return nil
}

// makeTraversable adds o+x to dir and each ancestor that lacks it, so that
// the dovecot user can reach the users file and the maildirs (a temporary
// directory is created 0700).
func makeTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("make %s traversable: %w", d, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
				return fmt.Errorf("make %s traversable: %w", d, err)
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tailFile returns the last n lines of a file, or a note why it cannot.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "(no " + filepath.Base(path) + ")"
	}
	if err != nil {
		return err.Error()
	}
	return lastLines(string(b), n)
}
