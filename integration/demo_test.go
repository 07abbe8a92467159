package integration

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runDemo starts scripts/demo.sh (what `make demo` runs) with its ports
// moved to free ones and its state in a temporary directory. It returns the
// script's combined output so far (read by calling it) and the process.
func runDemo(t *testing.T, backendBase, frontBase int) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command("bash", "../scripts/demo.sh")
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("DEMO_BACKEND_PORT_BASE=%d", backendBase),
		fmt.Sprintf("DEMO_PORT_BASE=%d", frontBase),
		"DEMO_DIR="+filepath.Join(t.TempDir(), "demo"),
		"MAILDIRECTOR="+binPath,
	)
	out := new(syncBuffer)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	return cmd, out
}

// demoPortBase returns a base b whose demo ports are free on loopback now:
// the Dovecot instances' at b+24 .. b+1587, maildirector's listeners at
// b+2000 plus 24 .. 995 (pass b+2000 as DEMO_PORT_BASE).
func demoPortBase(t *testing.T) int {
	t.Helper()
	// Below Linux's ephemeral range (32768 and up), so that no outgoing
	// connection of another test holds one of them.
	const first, step, n = 20000, 3000, 4
	for k := range n {
		b := first + (os.Getpid()+k)%n*step
		free := true
		for _, off := range []int{24, 25, 26, 110, 111, 143, 144, 587, 1024, 1025, 1110, 1111, 1143, 1144, 1587,
			2024, 2110, 2143, 2404, 2465, 2587, 2993, 2995} {
			if !portFree(b + off) {
				free = false
				break
			}
		}
		if free {
			return b
		}
	}
	t.Fatal("no free port range for the demo")
	return 0
}

// TestDemoStarts: the README's `make demo` starts two Dovecot instances and
// maildirector, prints how to use them, and a user can log in over
// implicit TLS through it.
func TestDemoStarts(t *testing.T) {
	bbase := demoPortBase(t)
	fbase := bbase + 2000
	_, out := runDemo(t, bbase, fbase)
	eventually(t, "the demo to say it is running", func() bool { return strings.Contains(out.String(), "Press Ctrl-C") })
	if s := out.String(); !strings.Contains(s, "maildirector is running") || strings.Contains(s, "make demo:") {
		t.Fatalf("demo output:\n%s", s)
	}

	addr := fmt.Sprintf("127.0.0.1:%d", fbase+993)
	c := dialTLS(t, addr)
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "* OK") {
		t.Fatalf("greeting from %s: %q, %v", addr, line, err)
	}
	fmt.Fprintf(c, "a LOGIN user001 pass\r\n")
	for {
		line, err = r.ReadString('\n')
		if err != nil {
			t.Fatalf("LOGIN through the demo: %v", err)
		}
		if strings.HasPrefix(line, "a ") {
			break
		}
	}
	if !strings.HasPrefix(line, "a OK") {
		t.Fatalf("LOGIN through the demo: got %q, want a OK", line)
	}

	// The stats listener and the control socket the demo prints work.
	csv := curl(t, fmt.Sprintf("http://127.0.0.1:%d/stats.csv", fbase+404))
	if !strings.HasPrefix(csv, "# pxname,svname,") || !strings.Contains(csv, "dovecot,dovecot1,") {
		t.Errorf("the demo's /stats.csv:\n%s", csv)
	}
	m := regexp.MustCompile(`ctl -s (\S+) show servers`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("the demo does not print how to use the control socket:\n%s", out.String())
	}
	got, err := exec.Command(binPath, "ctl", "-s", m[1], "show", "servers").CombinedOutput()
	if err != nil || !strings.Contains(string(got), "dovecot/dovecot1") {
		t.Errorf("ctl show servers on the demo: %v\n%s", err, got)
	}
}

// TestDemoFailsLoudly: when a Dovecot instance cannot start (here one of
// its ports is taken), `make demo` stops with that instance's error rather
// than announcing a demo whose logins would all fail.
func TestDemoFailsLoudly(t *testing.T) {
	bbase := demoPortBase(t)
	taken := listenLoopback(t, bbase+1024) // dovecot2's LMTP port
	defer taken.Close()

	cmd, out := runDemo(t, bbase, bbase+2000)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("demo still running with a backend that cannot start; output:\n%s", out.String())
	}
	s := out.String()
	if err == nil {
		t.Fatalf("demo exited 0 with a backend that cannot start; output:\n%s", s)
	}
	if !strings.Contains(s, "did not start") || !strings.Contains(s, "Address already in use") {
		t.Errorf("demo output does not name the failure:\n%s", s)
	}
	if strings.Contains(s, "maildirector is running") {
		t.Errorf("demo announced itself running although a backend failed:\n%s", s)
	}
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

func listenLoopback(t *testing.T, port int) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
