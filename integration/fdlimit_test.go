//go:build linux

package integration

import (
	"bufio"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestFDExhaustion lowers maildirector's RLIMIT_NOFILE (prlimit) to a few
// descriptors above what it uses, then opens more connections than that:
// the process stays up, logs the condition, keeps the sessions it has, and
// serves new clients again once connections close.
func TestFDExhaustion(t *testing.T) {
	e := startEnv(t, setupSpec{Instances: 1, Frontends: []frontendSpec{{Name: "imap", Protocol: "imap", Plaintext: "allow"}}})
	pid := e.md.cmd.Process.Pid
	fds, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Fatal(err)
	}
	limit := uint64(len(fds) + 10)
	if err := unix.Prlimit(pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Fatalf("prlimit: %v", err)
	}

	// A logged-in session made before the limit bites keeps working.
	live := greetedFrom(t, clientIP, e.addrs["imap"])
	live.login("user001")

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	greeted := 0
	for range 40 {
		c := dialFrom(t, clientIP, e.addrs["imap"]) // the kernel completes it; maildirector may not accept it
		conns = append(conns, c)
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if l, _ := bufio.NewReader(c).ReadString('\n'); strings.HasPrefix(l, "* OK") {
			greeted++
		}
	}
	if greeted >= 40 {
		t.Fatalf("all 40 connections were greeted under a limit of %d descriptors", limit)
	}
	eventually(t, "the accept failure in the log", func() bool {
		return strings.Contains(e.md.log.String(), "accept failed") && strings.Contains(e.md.log.String(), "too many open files")
	})
	if e.md.exited() {
		t.Fatal("maildirector exited at the descriptor limit")
	}
	if _, tagged := live.cmd("n1", "NOOP"); !strings.HasPrefix(tagged, "n1 OK") {
		t.Errorf("the live session at the limit: %q", tagged)
	}

	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// Under the same limit, with the connections gone, new clients are
	// served again.
	eventually(t, "a new client served after the connections closed", func() bool {
		d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: clientIP}}
		c, err := d.Dial("tcp", e.addrs["imap"])
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(time.Second))
		l, _ := bufio.NewReader(c).ReadString('\n')
		return strings.HasPrefix(l, "* OK")
	})
	r := greetedFrom(t, clientIP, e.addrs["imap"])
	r.login("user002")
	r.selectInbox()
}
