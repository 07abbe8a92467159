package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSystemdUnit: the shipped units (the service, and the optional socket
// unit) pass `systemd-analyze verify`; the service is Type=notify with
// NotifyAccess=all (for `ctl upgrade`), runs
// as a fixed system user (a DynamicUser cannot be given read access to
// the private keys, so its pre-start check would fail), and that user and
// group are what the shipped sysusers.d entry creates.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../etc/maildirector.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart's binary exists: point it at the one
	// under test.
	dir := t.TempDir()
	path := filepath.Join(dir, "maildirector.service")
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/maildirector", binPath)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The optional socket unit, next to the service it activates.
	socket, err := os.ReadFile("../etc/maildirector.socket")
	if err != nil {
		t.Fatal(err)
	}
	socketPath := filepath.Join(dir, "maildirector.socket")
	if err := os.WriteFile(socketPath, socket, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command("systemd-analyze", "verify", socketPath).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify maildirector.socket: %v\n%s", err, out)
	}
	// maildirector speaks sd_notify, and `ctl upgrade`'s new process (a
	// child of the main one) must be heard when it sends MAINPID=.
	for _, want := range []string{`(?m)^Type=notify$`, `(?m)^NotifyAccess=all$`} {
		if !regexp.MustCompile(want).Match(unit) {
			t.Errorf("the unit lacks %s", want)
		}
	}

	if regexp.MustCompile(`(?m)^DynamicUser\s*=\s*yes`).Match(unit) {
		t.Errorf("the unit uses DynamicUser=yes, which cannot read keys under /etc")
	}
	user := regexp.MustCompile(`(?m)^User=(\S+)$`).FindSubmatch(unit)
	group := regexp.MustCompile(`(?m)^Group=(\S+)$`).FindSubmatch(unit)
	if user == nil || group == nil {
		t.Fatalf("the unit sets no User= and Group=")
	}

	// The sysusers.d entry creates that user and group (into a scratch
	// root: nothing on this machine changes).
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	sysusers, err := filepath.Abs("../etc/maildirector.sysusers")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-sysusers", "--root="+root, sysusers).CombinedOutput(); err != nil {
		t.Fatalf("systemd-sysusers: %v\n%s", err, out)
	}
	passwd, _ := os.ReadFile(filepath.Join(root, "etc/passwd"))
	groups, _ := os.ReadFile(filepath.Join(root, "etc/group"))
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(string(user[1])) + `:`).Match(passwd) {
		t.Errorf("sysusers entry does not create user %s:\n%s", user[1], passwd)
	}
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(string(group[1])) + `:`).Match(groups) {
		t.Errorf("sysusers entry does not create group %s:\n%s", group[1], groups)
	}
}
