// Package nginxlab runs real nginx instances on loopback as the object
// storage of maildirector's HTTP tests and benchmarks: nginx's WebDAV
// module stores PUT bodies as files and DELETEs them, and its static
// handler serves GET and HEAD with Range, as Scality sproxyd or an S3-like
// store answers Dovecot. It owns each instance's life (start, stop, start
// again on the same port), its configuration and its logs; it never
// touches the packaged nginx service or /etc/nginx.
//
// Every instance has its own prefix directory (nginx -p DIR -c
// DIR/nginx.conf, its pid file, error and access logs, temporary files)
// and listens on one loopback port. The instances of a lab share one data
// directory, as the nodes of an object store share their objects: an
// object PUT through one is there for a GET through another.
//
//	lab := nginxlab.StartT(t, nginxlab.Options{Instances: 3})
//	// … lab.Instances[i].Addr is 127.0.0.1:PORT; GET /health answers 200 …
//	lab.Instances[1].Stop()  // a server that is down
//	lab.Instances[1].Start() // back on the same port
//
// The machine needs the Debian package nginx (scripts/deps.sh), whose
// build includes the WebDAV module (PUT, DELETE).
package nginxlab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
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
	// listenTimeout bounds how long Start waits for nginx's port.
	listenTimeout = 5 * time.Second
	// stopTimeout bounds how long Stop waits for nginx to exit after
	// SIGTERM before it kills it.
	stopTimeout = 5 * time.Second
)

// Options configures a lab.
type Options struct {
	// Instances is the number of nginx instances. Zero means 1.
	Instances int
	// Dir holds the data directory and each instance's prefix. Empty
	// means a new temporary directory, removed by Close.
	Dir string
	// Workers is each instance's worker_processes. Zero means 1.
	Workers int
	// AccessLog writes each instance's access log (off by default: a
	// benchmark's millions of lines are not wanted).
	AccessLog bool
}

// Lab is a set of running nginx instances sharing one data directory.
type Lab struct {
	// Dir holds data/ (the objects) and one prefix per instance.
	Dir string
	// Data is the directory the objects are stored in.
	Data      string
	Instances []*Instance
	removeOn  bool
}

// Instance is one nginx.
type Instance struct {
	// Name is "nginx1", "nginx2", ...
	Name string
	// Addr is its host:port on loopback.
	Addr string
	// Prefix is its own directory: nginx.conf, logs, temporary files.
	Prefix string

	cmd  *exec.Cmd
	done chan struct{}
}

// Start writes the configurations and starts every instance; it returns
// once all of them accept connections.
func Start(opts Options) (*Lab, error) {
	if _, err := exec.LookPath(binary()); err != nil {
		return nil, fmt.Errorf("nginxlab: %w (install the nginx package: scripts/deps.sh)", err)
	}
	n := max(opts.Instances, 1)
	l := &Lab{Dir: opts.Dir}
	if l.Dir == "" {
		dir, err := os.MkdirTemp("", "nginxlab-")
		if err != nil {
			return nil, fmt.Errorf("nginxlab: %w", err)
		}
		l.Dir, l.removeOn = dir, true
	}
	l.Data = filepath.Join(l.Dir, "data")
	if err := os.MkdirAll(l.Data, 0o755); err != nil {
		l.Close()
		return nil, fmt.Errorf("nginxlab: %w", err)
	}
	ports, err := freePorts(n)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("nginxlab: %w", err)
	}
	for i := range n {
		in := &Instance{
			Name:   "nginx" + strconv.Itoa(i+1),
			Addr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])),
			Prefix: filepath.Join(l.Dir, "nginx"+strconv.Itoa(i+1)),
		}
		if err := in.configure(l.Data, opts); err != nil {
			l.Close()
			return nil, fmt.Errorf("nginxlab: %s: %w", in.Name, err)
		}
		l.Instances = append(l.Instances, in)
		if err := in.Start(); err != nil {
			l.Close()
			return nil, err
		}
	}
	return l, nil
}

// StartT starts a lab for a test: it fails the test when Start fails and
// closes the lab at cleanup, logging the instances' error logs if the
// test failed.
func StartT(t testing.TB, opts Options) *Lab {
	t.Helper()
	l, err := Start(opts)
	if err != nil {
		t.Fatalf("start nginx lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, in := range l.Instances {
				t.Logf("%s error log:\n%s", in.Name, in.ErrorLog())
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("close nginx lab: %v", err)
		}
	})
	return l
}

// Close stops every instance and removes the lab's directory if Start made
// it.
func (l *Lab) Close() error {
	var errs []error
	for _, in := range l.Instances {
		errs = append(errs, in.Stop())
	}
	if l.removeOn {
		errs = append(errs, os.RemoveAll(l.Dir))
	}
	return errors.Join(errs...)
}

func binary() string {
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	return "nginx"
}

// configure writes the instance's prefix and nginx.conf.
func (in *Instance) configure(data string, opts Options) error {
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(in.Prefix, d), 0o755); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(in.Prefix, "nginx.conf"), []byte(config(in, data, opts)), 0o644)
}

// config is an instance's nginx.conf: one loopback server whose root is
// the shared data directory, WebDAV PUT and DELETE (creating the
// directories of a key), no body size limit, GET /health for the checks.
func config(in *Instance, data string, opts Options) string {
	user := ""
	if os.Geteuid() == 0 {
		// As root nginx would run its workers as nobody, who may not
		// enter the test's temporary directories.
		user = "user root;\n"
	}
	access := "off"
	if opts.AccessLog {
		access = filepath.Join(in.Prefix, "logs", "access.log")
	}
	tmp := filepath.Join(in.Prefix, "tmp")
	return fmt.Sprintf(`# nginxlab: a test instance, started with nginx -p %[1]s -c %[1]s/nginx.conf
%[2]sworker_processes %[3]d;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log info;
events { worker_connections 4096; }
http {
	access_log %[4]s;
	client_body_temp_path %[5]s/body;
	proxy_temp_path %[5]s/proxy;
	fastcgi_temp_path %[5]s/fastcgi;
	uwsgi_temp_path %[5]s/uwsgi;
	scgi_temp_path %[5]s/scgi;
	client_max_body_size 0;
	client_body_buffer_size 64k;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 100000;
	keepalive_timeout 10m;
	default_type application/octet-stream;
	server {
		listen %[6]s;
		root %[7]s;
		location = /health {
			return 200 "ok\n";
		}
		location / {
			dav_methods PUT DELETE;
			create_full_put_path on;
			dav_access user:rw group:r all:r;
		}
	}
}
`, in.Prefix, user, max(opts.Workers, 1), access, tmp, in.Addr, data)
}

// Start starts the instance (again, after Stop: on the same port) and
// waits until it accepts connections.
func (in *Instance) Start() error {
	if in.cmd != nil && !in.exited() {
		return fmt.Errorf("nginxlab: %s is running", in.Name)
	}
	// The error log named at the command line is the one nginx writes
	// before it has read its configuration.
	cmd := exec.Command(binary(), "-p", in.Prefix, "-c", filepath.Join(in.Prefix, "nginx.conf"),
		"-e", filepath.Join(in.Prefix, "logs", "error.log"), "-g", "daemon off;")
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("nginxlab: %s: %w", in.Name, err)
	}
	in.cmd, in.done = cmd, make(chan struct{})
	go in.wait(cmd, in.done)
	deadline := time.Now().Add(listenTimeout)
	for {
		if in.exited() {
			return fmt.Errorf("nginxlab: %s exited at start:\n%s", in.Name, in.ErrorLog())
		}
		c, err := net.DialTimeout("tcp", in.Addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			in.Stop()
			return fmt.Errorf("nginxlab: %s not listening on %s after %v:\n%s", in.Name, in.Addr, listenTimeout, in.ErrorLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wait reaps the process; done closes when it has exited.
func (in *Instance) wait(cmd *exec.Cmd, done chan struct{}) {
	cmd.Wait()
	close(done)
}

func (in *Instance) exited() bool {
	select {
	case <-in.done:
		return true
	default:
		return false
	}
}

// Stop ends the instance (SIGTERM: nginx's fast shutdown, open connections
// are closed) and waits for it; a stopped instance is left alone.
func (in *Instance) Stop() error {
	if in.cmd == nil || in.exited() {
		return nil
	}
	in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.done:
		return nil
	case <-time.After(stopTimeout):
		in.cmd.Process.Kill()
		<-in.done
		return fmt.Errorf("nginxlab: %s did not stop within %v of SIGTERM", in.Name, stopTimeout)
	}
}

// PID is the process id of the running instance's master, or 0.
func (in *Instance) PID() int {
	if in.cmd == nil || in.exited() {
		return 0
	}
	return in.cmd.Process.Pid
}

// ErrorLog returns the instance's error log (its last 64 KiB).
func (in *Instance) ErrorLog() string {
	b, err := os.ReadFile(filepath.Join(in.Prefix, "logs", "error.log"))
	if err != nil {
		return err.Error()
	}
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	return strings.TrimSpace(string(b))
}

// freePorts returns n distinct free loopback ports below Linux's ephemeral
// range (32768 and up): a port from that range could be taken by any
// outgoing connection before nginx binds it, or while a stopped instance
// waits to start again on it. They are held open together, so they differ.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			return nil, errors.New("pick free port: none free between 20000 and 32000")
		}
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		lns = append(lns, ln)
		ports = append(ports, port)
	}
	return ports, nil
}
