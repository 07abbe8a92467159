package integration

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSystemdNotify: with NOTIFY_SOCKET set (a unixgram socket standing in
// for systemd), the real binary says READY=1 with a STATUS= summary once it
// serves; each reload, by SIGHUP or `ctl reload`, failed or not, is framed
// by RELOADING=1 with MONOTONIC_USEC (CLOCK_MONOTONIC, as Type=notify-reload
// wants) and READY=1; SIGTERM says STOPPING=1.
func TestSystemdNotify(t *testing.T) {
	var sock string
	e := startLab(t, setupSpec{Frontends: []frontendSpec{{Name: "imap", Protocol: "imap"}}}, withControl(&sock))
	notify := listenNotify(t)
	md := startMD(t, e.dir, binPath, []string{"run", "-c", e.cfg}, []string{"NOTIFY_SOCKET=" + notify.path})
	e.waitServing(md)

	i := notify.waitFor(t, 0, "READY=1", "STATUS=")
	status := regexp.MustCompile(`(?m)^STATUS=\d+ sessions, \d+ of 2 servers up$`)
	if m := notify.messages()[i]; !status.MatchString(m) {
		t.Errorf("READY notification: got %q, want a STATUS= with sessions and servers up", m)
	}
	orig := readFile(t, e.cfg)
	for _, step := range []struct {
		name   string
		config string
		reload func()
	}{
		{"SIGHUP", orig, func() { md.cmd.Process.Signal(syscall.SIGHUP) }},
		{"ctl reload", orig, func() { ctlCommand(sock, "reload") }},
		{"a failed reload", "[frontend.broken\n", func() { md.cmd.Process.Signal(syscall.SIGHUP) }},
	} {
		if err := os.WriteFile(e.cfg, []byte(step.config), 0o644); err != nil {
			t.Fatal(err)
		}
		var before unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &before)
		step.reload()
		r := notify.waitFor(t, i+1, "RELOADING=1", "MONOTONIC_USEC=")
		var usec int64
		for _, l := range strings.Split(notify.messages()[r], "\n") {
			if v, ok := strings.CutPrefix(l, "MONOTONIC_USEC="); ok {
				usec, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		var after unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &after)
		if usec < before.Nano()/1000 || usec > after.Nano()/1000 {
			t.Errorf("%s: MONOTONIC_USEC=%d, want CLOCK_MONOTONIC at the reload (between %d and %d)", step.name, usec, before.Nano()/1000, after.Nano()/1000)
		}
		i = notify.waitFor(t, r+1, "READY=1", "STATUS=")
	}
	if m := notify.messages()[i]; !strings.Contains(m, "STATUS=reload failed") {
		t.Errorf("READY after a failed reload: got %q, want a STATUS= that says it failed", m)
	}
	md.cmd.Process.Signal(syscall.SIGTERM)
	notify.waitFor(t, i+1, "STOPPING=1", "STATUS=")
	md.waitExit(30*time.Second, "maildirector after SIGTERM")
}

// TestSocketActivation: started by systemd-socket-activate (systemd's
// LISTEN_FDS protocol), maildirector serves on the socket it is given for
// its frontend's address: the first client, which connected before
// maildirector ran, is greeted and logs in. A socket whose address the
// configuration does not bind is closed, with a warning.
func TestSocketActivation(t *testing.T) {
	e := startLab(t, setupSpec{Frontends: []frontendSpec{{Name: "imap", Protocol: "imap"}}}, nil)
	extra := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	md := startMD(t, e.dir, "systemd-socket-activate",
		[]string{"-l", e.addrs["imap"], "-l", extra, binPath, "run", "-c", e.cfg}, nil)
	// systemd-socket-activate listens first and starts maildirector on
	// the first connection, which waits in the backlog meanwhile: that
	// client is the one greeted.
	var c *rawIMAP
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP}}
	for i := 0; c == nil; i++ {
		if nc, err := d.Dial("tcp", e.addrs["imap"]); err == nil {
			t.Cleanup(func() { nc.Close() })
			c = newRawIMAP(t, nc)
			break
		}
		if i == 400 || md.exited() {
			t.Fatalf("systemd-socket-activate is not listening on %s: %v\n%s", e.addrs["imap"], md.err, md.log())
		}
		time.Sleep(25 * time.Millisecond)
	}
	if g := c.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting of the client that started maildirector: got %q, want * OK", g)
	}
	c.login("user160")
	c.logout()
	eventually(t, "the warning about the unused socket", func() bool {
		return strings.Contains(md.log(), "inherited listening socket not in the configuration") &&
			strings.Contains(md.log(), extra)
	})
	if nc, err := net.Dial("tcp", extra); err == nil {
		nc.Close()
		t.Errorf("%s still accepts connections; want its socket closed", extra)
	}
}
