package dovecotlab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// directorPath is the director service of Debian's dovecot-core 2.3.19.
// Dovecot 2.4 CE removed the director; 2.3 still ships it.
const directorPath = "/usr/lib/dovecot/director"

// DirectorOptions configures StartDirector.
type DirectorOptions struct {
	// MailServers is director_mail_servers: the IP addresses of the mail
	// servers the director places users on (loopback ones such as
	// 127.0.0.2 will do: the director never connects to them). Required.
	MailServers []string
	// UsernameHash is director_username_hash; "" keeps Dovecot's default, %Lu.
	UsernameHash string
	// Dir holds the director's dovecot.conf, state and log. "" makes a
	// temporary directory that Close removes.
	Dir string
}

// Director is a running Dovecot 2.3 director: a master with the director
// service alone, a ring of one (itself, on a loopback port) and the
// director-admin socket that doveadm director talks to. It places users
// (doveadm director status USER) without any mail server running.
type Director struct {
	// Dir holds dovecot.conf, the state directory and dovecot.log.
	Dir string
	// ConfigPath is the generated dovecot.conf.
	ConfigPath string
	// LogPath is Dovecot's log_path.
	LogPath string
	// Port is the director ring's loopback port.
	Port int

	baseDir string
	ownDir  bool
	cmd     *exec.Cmd
	done    chan struct{}
}

var directorTemplate = template.Must(template.New("director.conf").Parse(`# Written by maildirector's dovecotlab: a Dovecot 2.3 director alone.
instance_name = {{.Name}}
base_dir = {{.BaseDir}}
state_dir = {{.StateDir}}
protocols =
listen = 127.0.0.1
log_path = {{.LogPath}}
director_servers = 127.0.0.1:{{.Port}}
director_mail_servers = {{.MailServers}}
{{- if .UsernameHash}}
director_username_hash = {{.UsernameHash}}
{{- end}}
service director {
  inet_listener {
    address = 127.0.0.1
    port = {{.Port}}
  }
  unix_listener director-admin {
    mode = 0600
  }
}
`))

// StartDirector writes the director's configuration, checks it with
// doveconf, starts the master and waits until doveadm director status
// answers with every mail server. On error nothing is left running.
func StartDirector(opts DirectorOptions) (_ *Director, err error) {
	if _, err := os.Stat(directorPath); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotInstalled, err)
	}
	if err := checkInstalled(false); err != nil {
		return nil, err
	}
	if len(opts.MailServers) == 0 {
		return nil, errors.New("start director: no mail servers")
	}
	for _, ip := range opts.MailServers {
		if net.ParseIP(ip) == nil {
			return nil, fmt.Errorf("start director: mail server %q: not an IP address", ip)
		}
	}
	d := &Director{Dir: opts.Dir}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.Dir == "" {
		if d.Dir, err = os.MkdirTemp("", "dovecotlab-director-"); err != nil {
			return nil, fmt.Errorf("make director dir: %w", err)
		}
		d.ownDir = true
	}
	if d.baseDir, err = os.MkdirTemp("", "dcd"); err != nil { // UNIX socket paths must stay short
		return nil, fmt.Errorf("make base_dir: %w", err)
	}
	if err := os.Chmod(d.baseDir, 0o755); err != nil {
		return nil, err
	}
	state := filepath.Join(d.Dir, "state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		return nil, err
	}
	d.ConfigPath = filepath.Join(d.Dir, "dovecot.conf")
	d.LogPath = filepath.Join(d.Dir, "dovecot.log")
	if d.Port, err = freeLoopbackPort(); err != nil {
		return nil, err
	}
	var conf strings.Builder
	if err := directorTemplate.Execute(&conf, map[string]any{
		"Name": "lab-" + filepath.Base(d.baseDir) + "-director", "BaseDir": d.baseDir, "StateDir": state,
		"LogPath": d.LogPath, "Port": d.Port, "MailServers": strings.Join(opts.MailServers, " "),
		"UsernameHash": opts.UsernameHash,
	}); err != nil {
		return nil, fmt.Errorf("render director dovecot.conf: %w", err)
	}
	if err := os.WriteFile(d.ConfigPath, []byte(conf.String()), 0o644); err != nil {
		return nil, err
	}
	if err := checkConfig(d.ConfigPath); err != nil {
		return nil, err
	}
	stderr, err := os.Create(filepath.Join(d.Dir, "master.stderr"))
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	d.cmd = exec.Command(dovecotPath, "-F", "-c", d.ConfigPath)
	d.cmd.Stdout, d.cmd.Stderr = stderr, stderr
	d.cmd.SysProcAttr = masterProcAttr()
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start director: %w", err)
	}
	d.done = make(chan struct{})
	go waitMaster(d.cmd, d.done)

	// Ready once the director lists every mail server (its ring of one is
	// then complete and it answers lookups).
	deadline := time.Now().Add(startTimeout)
	for {
		out, err := d.Doveadm("director", "status")
		if err == nil && strings.Count(out, "\n") > len(opts.MailServers) {
			return d, nil
		}
		select {
		case <-d.done:
			return nil, fmt.Errorf("%w: director exited: %s", ErrNotReady, tailFile(d.LogPath, 10))
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: director: %v: %s", ErrNotReady, err, strings.TrimSpace(out))
		}
		time.Sleep(pollInterval)
	}
}

// StartDirectorT is StartDirector for a test: it fails the test on error
// and closes the director when the test ends.
func StartDirectorT(t testing.TB, opts DirectorOptions) *Director {
	t.Helper()
	d, err := StartDirector(opts)
	if err != nil {
		t.Fatalf("start director: %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close director: %v", err)
		}
	})
	return d
}

// Doveadm runs doveadm against the director's configuration, e.g.
// Doveadm("director", "add", "127.0.0.2", "50"), and returns its output.
func (d *Director) Doveadm(args ...string) (string, error) {
	out, err := exec.Command(doveadmPath, append([]string{"-c", d.ConfigPath}, args...)...).Output()
	if err != nil {
		var stderr string
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = strings.TrimSpace(string(ee.Stderr))
		}
		return string(out), fmt.Errorf("doveadm %s: %w: %s", strings.Join(args, " "), err, stderr)
	}
	return string(out), nil
}

// Hashed returns the server the director's ring gives user: the "Hashed:"
// line of doveadm director status USER.
func (d *Director) Hashed(user string) (string, error) {
	out, err := d.Doveadm("director", "status", user)
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(out) {
		if ip, ok := strings.CutPrefix(line, "Hashed: "); ok {
			return strings.TrimSpace(ip), nil
		}
	}
	return "", fmt.Errorf("doveadm director status %s: no Hashed line in %q", user, out)
}

// Close kills the director and removes its runtime directory and, when
// StartDirector made it, its directory.
func (d *Director) Close() error {
	var errs []error
	if d.cmd != nil && d.cmd.Process != nil {
		pgid := d.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // ESRCH: already gone
		if err := waitGone(d.done, pgid, time.Now().Add(killTimeout)); err != nil {
			errs = append(errs, err)
		}
	}
	if d.baseDir != "" {
		errs = append(errs, os.RemoveAll(d.baseDir))
	}
	if d.ownDir {
		errs = append(errs, os.RemoveAll(d.Dir))
	}
	return errors.Join(errs...)
}

// freeLoopbackPort returns a TCP port of 127.0.0.1 free right now.
func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
