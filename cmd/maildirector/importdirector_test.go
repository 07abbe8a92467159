package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/director"
)

// directorConfig is a backend with balance "director" on three servers and
// a state file in dir.
func directorConfig(dir string) string {
	return fmt.Sprintf(`
[frontend.imap]
protocol = "imap"
bind = ["127.0.0.1:1143"]
backend = "fleet"

[control]
state_file = %q
socket = %q

[backend.fleet]
balance = "director"
[backend.fleet.check]
type = "none"
[[backend.fleet.server]]
name = "mail1"
address = "10.0.0.1"
[[backend.fleet.server]]
name = "mail2"
address = "10.0.0.2"
vhost_count = 50
[[backend.fleet.server]]
name = "mail3"
address = "10.0.0.3"
`, filepath.Join(dir, "state.json"), filepath.Join(dir, "ctl.sock"))
}

// ringHome returns where the configuration's ring puts user, and a server
// of the backend that is not it.
func ringHome(t *testing.T, path, user string) (home, other string) {
	t.Helper()
	cfg, err := config.LoadRouting(path)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := directorOptions(cfg.Backends["fleet"])
	if err != nil {
		t.Fatal(err)
	}
	d, err := director.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	home = d.HashOrder(user)[0]
	for _, s := range []string{"mail1", "mail2", "mail3"} {
		if s != home {
			return home, s
		}
	}
	panic("unreachable")
}

var fleetIPs = map[string]string{"mail1": "10.0.0.1", "mail2": "10.0.0.2", "mail3": "10.0.0.3"}

// TestImportDirector: doveadm director map output goes into the state
// file (named users with their expiry; unknown hashes, foreign servers and
// expired rows not, each said), the status table is compared with the
// configuration, and where then shows the imported user on the director's
// server, not on the ring's.
func TestImportDirector(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "maildirector.toml")
	if err := os.WriteFile(path, []byte(directorConfig(dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	home, other := ringHome(t, path, "alice@example.org")
	expires := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	at := func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }
	hash, _ := director.UserHash("%Lu", "alice@example.org")
	mapOut := "user                 hash       mail server ip expire time\n" +
		fmt.Sprintf("alice@example.org    %d %s %s\n", hash, fleetIPs[other], at(expires)) +
		fmt.Sprintf("<unknown>            12345      10.0.0.1       %s\n", at(expires)) +
		fmt.Sprintf("bob@example.org      99         10.9.9.9       %s\n", at(expires)) +
		fmt.Sprintf("carol@example.org    98         10.0.0.1       %s\n", at(time.Now().Add(-time.Minute))) +
		"mail server ip tag vhosts state state changed users\n" +
		"10.0.0.1                100    up    -                   1\n" +
		"10.0.0.2                80     up    -                   0\n" +
		"10.0.0.3                100    down  2026-01-01 10:00:00 0\n"
	in := writeFile(t, "map.txt", mapOut)

	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"import-director", "-c", path, in}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s%s", code, stdout.String(), stderr.String())
	}
	for _, w := range []string{
		"line 3: hash 12345 on 10.0.0.1 has no user name",
		"line 4: bob@example.org is on 10.9.9.9, which backend.fleet lacks",
		"line 8: the director gives 10.0.0.2 vhost_count 80, backend.fleet.server[1] (mail2) has vhost_count = 50",
		"line 9: the director has 10.0.0.3 down",
	} {
		if !strings.Contains(stderr.String(), w) {
			t.Errorf("warnings lack %q:\n%s", w, stderr.String())
		}
	}
	if want := "1 assignments imported (1 of them away from where the ring puts the user now), 1 expired, 2 not imported"; !strings.Contains(stdout.String(), want) {
		t.Errorf("summary: got %q, want %q", stdout.String(), want)
	}
	var st runState
	data, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	m, ok := st.Moves["fleet"]["alice@example.org"]
	if !ok || len(st.Moves["fleet"]) != 1 || m.Server != other || !m.Expires.Equal(expires) {
		t.Fatalf("state file moves: got %+v, want alice on %s until %v only", st.Moves, other, expires)
	}

	stdout.Reset()
	if code := runMain([]string{"where", "-c", path, "alice@example.org"}, &stdout, &stderr); code != 0 {
		t.Fatalf("where: exit %d: %s", code, stderr.String())
	}
	if f := strings.Fields(stdout.String()); len(f) < 5 || f[4] != other || !strings.Contains(stdout.String(), "sticky: expires in") {
		t.Errorf("where after the import: got %q, want alice on %s (the director's), sticky; the ring says %s", stdout.String(), other, home)
	}
	// The director's expiry (10m), not a fresh user_expire (15m).
	_, left, _ := strings.Cut(stdout.String(), "expires in ")
	if d, err := time.ParseDuration(strings.TrimSuffix(strings.TrimSpace(left), ")")); err != nil || d > 10*time.Minute || d < 9*time.Minute {
		t.Errorf("where after the import: expiry in %q (%v), want the director's 10m", left, err)
	}

	// A running maildirector (its control socket answers) is not written under.
	ln, err := net.Listen("unix", filepath.Join(dir, "ctl.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stderr.Reset()
	if code := runMain([]string{"import-director", "-c", path, in}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "maildirector is running") {
		t.Errorf("while running: exit %d, %q; want 1 and a refusal", code, stderr.String())
	}
}

// TestWhereBalanceDirector: where places users on the ring of the
// configured servers: their IPs, vhost counts and director_username_hash
// reach the director (a server at vhost_count 0 gets nobody; under %Ln a
// user's domains meet on one server).
func TestWhereBalanceDirector(t *testing.T) {
	dir := t.TempDir()
	text := strings.Replace(directorConfig(dir), "vhost_count = 50", "vhost_count = 0", 1)
	text = strings.Replace(text, "balance = \"director\"", "balance = \"director\"\ndirector_username_hash = \"%Ln\"", 1)
	path := writeFile(t, "maildirector.toml", text)
	var users []string
	for i := range 60 {
		users = append(users, fmt.Sprintf("user%d@one.example", i), fmt.Sprintf("user%d@two.example", i))
	}
	var stdout, stderr bytes.Buffer
	if code := runMain(append([]string{"where", "-c", path}, users...), &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	got, server := map[string]int{}, map[string]string{}
	for line := range strings.Lines(stdout.String()) {
		f := strings.Fields(line)
		got[f[4]]++
		local, _, _ := strings.Cut(f[0], "@")
		if s, ok := server[local]; ok && s != f[4] {
			t.Errorf("%%Ln: %s on %s, but its other domain on %s", f[0], f[4], s)
		}
		server[local] = f[4]
	}
	if got["mail2"] != 0 || got["mail1"] == 0 || got["mail3"] == 0 {
		t.Errorf("users per server: got %v, want none on mail2 (vhost_count 0) and some on mail1 and mail3", got)
	}
}

// TestReloadKeepsDirectorTakesVhostCount: a reload that changes only
// vhost counts keeps the running director (its sticky users) and gives it
// the new counts, as doveadm director add HOST COUNT does; one that
// changes director_username_hash builds a new director.
func TestReloadKeepsDirectorTakesVhostCount(t *testing.T) {
	dir := t.TempDir()
	text := strings.Replace(directorConfig(dir), "127.0.0.1:1143", fmt.Sprintf("127.0.0.1:%d", freeTCPPort(t)), 1)
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := newRuntime(cfg, slog.New(slog.DiscardHandler), "", new(slog.LevelVar), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.shutdown(0)
	d := rt.backends["fleet"].dir
	if err := d.Move("alice@example.org", "mail3"); err != nil {
		t.Fatal(err)
	}
	cfg2, err := config.Parse([]byte(strings.Replace(text, "vhost_count = 50", "vhost_count = 75", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.apply(cfg2); err != nil {
		t.Fatal(err)
	}
	if rt.backends["fleet"].dir != d {
		t.Fatal("a vhost_count change replaced the director (and dropped its sticky users)")
	}
	if got := d.Servers()[1].VhostCount; got != 75 {
		t.Errorf("mail2's vhost count after the reload: got %d, want 75", got)
	}
	if p := d.Where("alice@example.org"); p.Server != "mail3" || !p.Moved {
		t.Errorf("alice after the reload: got %+v, want still moved to mail3", p)
	}
	// Another director_username_hash is another placement: a new director.
	cfg3, err := config.Parse([]byte(strings.Replace(text, "balance = \"director\"", "balance = \"director\"\ndirector_username_hash = \"%Ln\"", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.apply(cfg3); err != nil {
		t.Fatal(err)
	}
	if rt.backends["fleet"].dir == d {
		t.Error("a director_username_hash change kept the running director")
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestImportDirectorHashMismatch: a map whose hashes are not the
// backend's director_username_hash is said to be, line by line.
func TestImportDirectorHashMismatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "maildirector.toml")
	if err := os.WriteFile(path, []byte(directorConfig(dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	h, _ := director.UserHash("%Ln", "alice@example.org") // the director hashed the local part only
	in := writeFile(t, "map.txt", fmt.Sprintf("alice@example.org %d 10.0.0.1 %s\n", h, time.Now().Add(time.Hour).Local().Format("2006-01-02 15:04:05")))
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"import-director", "-n", "-c", path, in}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), `director_username_hash = "%Lu" gives`) {
		t.Errorf("got %q, want the hash mismatch named", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "state.json")); !os.IsNotExist(err) {
		t.Errorf("-n wrote the state file (%v)", err)
	}
}
