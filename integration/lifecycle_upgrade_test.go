package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// installBinary copies the binary under test to dir/bin/maildirector the
// way install(1) does: a new file renamed over the old one, so a process
// running the old file keeps it while the path names the new one.
func installBinary(t *testing.T, dir string) string {
	t.Helper()
	dst := filepath.Join(dir, "bin", "maildirector")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(binPath)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestUpgradeUnderLoad: a new binary takes the listening sockets over from
// the running one while IMAP clients log in without a pause, either started
// by hand with --upgrade-from or by `ctl upgrade` under systemd (it then
// tells systemd MAINPID). No connection is refused and no login fails; the
// old process tells its logged-in session "* BYE" and exits; the control
// socket and the [stats] listener answer from the new process.
func TestUpgradeUnderLoad(t *testing.T) {
	for _, how := range []string{"run --upgrade-from", "ctl upgrade"} {
		t.Run(how, func(t *testing.T) { testUpgrade(t, how == "ctl upgrade") })
	}
}

func testUpgrade(t *testing.T, viaCtl bool) {
	var sock string
	e := startLab(t, setupSpec{
		Frontends: imapFrontends()[:2],
		StatsOn:   true,
	}, withControl(&sock))
	bin := installBinary(t, e.dir)
	var env []string
	var notify *notifySocket
	if viaCtl {
		notify = listenNotify(t)
		env = []string{"NOTIFY_SOCKET=" + notify.path}
	}
	old := startMD(t, e.dir, bin, []string{"run", "-c", e.cfg}, env)
	e.waitServing(old)
	if viaCtl {
		notify.waitFor(t, 0, "READY=1", "STATUS=")
	}
	idle, err := openIdle(e.addrs["imap"], "user150", false)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.c.Close()
	var users []string
	for i := range 40 {
		users = append(users, fmt.Sprintf("user%03d", 100+i))
	}
	load := startIMAPLoad(e.addrs["imap"], users, 4)
	defer load.finish()
	eventually(t, "logins before the upgrade", func() bool { return load.ok.Load() >= 20 })

	installBinary(t, e.dir) // the new version, over the running one's file
	var newPID int
	var nu *mdProcess
	newLog := old.log
	if viaCtl {
		out, err := ctlCommand(sock, "upgrade")
		if _, serr := fmt.Sscanf(out, "upgraded: pid %d", &newPID); err != nil || serr != nil {
			t.Fatalf("ctl upgrade: got %q, %v; want upgraded: pid N ...", out, err)
		}
		orphan(t, newPID)
		notify.waitFor(t, 0, fmt.Sprintf("MAINPID=%d", newPID), "READY=1")
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", newPID)); err != nil || exe != bin {
			t.Errorf("the new process runs %q (%v), want the binary installed at %s", exe, err, bin)
		}
	} else {
		nu = startMD(t, e.dir, bin, []string{"run", "-c", e.cfg, "--upgrade-from", sock}, nil)
		newPID, newLog = nu.cmd.Process.Pid, nu.log
	}
	for i := 0; !old.exited(); i++ {
		if nu != nil && nu.exited() {
			t.Fatalf("the new process exited (%v) before the old one", nu.err)
		}
		if i == 600 {
			t.Fatalf("the old process is still running 60s after the upgrade")
		}
		time.Sleep(100 * time.Millisecond)
	}
	old.waitExit(time.Second, "the old process")
	atUpgrade := load.ok.Load()

	lines, err := idle.untilClosed(10 * time.Second)
	if err != nil || len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], "* BYE") {
		t.Errorf("a session logged in on the old process: got %q, %v; want * BYE and a close", lines, err)
	}
	eventually(t, "logins served by the new process", func() bool { return load.ok.Load() >= atUpgrade+20 })
	load.finish()
	for _, f := range load.failures {
		t.Errorf("IMAP: %s", f)
	}
	if n := load.refused.Load(); n != 0 {
		t.Errorf("%d connections refused, want 0", n)
	}

	info, err := ctlCommand(sock, "show", "info", "--json")
	var in struct{ PID int }
	if err != nil || json.Unmarshal([]byte(info), &in) != nil || in.PID != newPID {
		t.Errorf("ctl show info after the upgrade: got %q, %v; want pid %d", info, err, newPID)
	}
	resp, err := http.Get("http://" + e.addrs["stats"] + "/stats.json")
	if err != nil {
		t.Fatalf("stats after the upgrade: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var snap struct{ PID int }
	if resp.StatusCode != 200 || json.Unmarshal(body, &snap) != nil || snap.PID != newPID {
		t.Errorf("stats.json after the upgrade: %d %.100q, want pid %d", resp.StatusCode, body, newPID)
	}
	if l := old.log(); !strings.Contains(l, "handed over to a new process") || strings.Contains(l, graceWarning) {
		t.Errorf("the old process's log: want the handover and no session closed by the grace period")
	}
	if !strings.Contains(newLog(), `msg="took over the listening sockets of the running process"`) ||
		!strings.Contains(newLog(), "sockets=4") {
		t.Errorf("the new process's log: want it took over 4 sockets (imap, imaps, stats, control)")
	}
	t.Logf("%d logins, %d of them after the old process (pid %d) exited; %d failed, %d refused; new pid %d",
		load.ok.Load(), load.ok.Load()-atUpgrade, old.cmd.Process.Pid, len(load.failures), load.refused.Load(), newPID)
}
