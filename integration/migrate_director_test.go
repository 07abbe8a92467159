package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

// Issue 17, "Migration without churn": maildirector's balance "director"
// against a real Dovecot 2.3.19 director.

// directorFleet is the test's fleet: five mail servers (the director
// never connects to them) with different vhost counts, one of them zero.
var directorFleet = []struct {
	ip     string
	vhosts int
}{
	{"127.0.0.2", 25}, {"127.0.0.3", 100}, {"127.0.0.4", 0}, {"127.0.0.5", 250}, {"127.0.0.6", 160},
}

// directorDown is the server the director has down.
const directorDown = "127.0.0.5"

// startFleetDirector starts a director with directorFleet, sets the vhost
// counts and takes directorDown down, as an operator does with doveadm.
func startFleetDirector(t *testing.T, usernameHash string) *dovecotlab.Director {
	t.Helper()
	var ips []string
	for _, s := range directorFleet {
		ips = append(ips, s.ip)
	}
	d := dovecotlab.StartDirectorT(t, dovecotlab.DirectorOptions{MailServers: ips, UsernameHash: usernameHash})
	for _, s := range directorFleet {
		if _, err := d.Doveadm("director", "add", s.ip, fmt.Sprint(s.vhosts)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Doveadm("director", "down", directorDown); err != nil {
		t.Fatal(err)
	}
	status, err := d.Doveadm("director", "status")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("director status:\n%s", status)
	if !strings.Contains(status, "down") {
		t.Fatalf("director status shows no server down:\n%s", status)
	}
	return d
}

// fleetConfig is maildirector's configuration of the same fleet: server
// mailN at the director's Nth IP with its vhost count, the one the director
// has down in maintenance (to where; at run time checks decide health).
func fleetConfig(t *testing.T, dir, usernameHash, extra string) string {
	t.Helper()
	path, _ := fleetConfigBind(t, dir, usernameHash, extra)
	return path
}

// fleetConfigBind is fleetConfig that also returns the frontend's address.
func fleetConfigBind(t *testing.T, dir, usernameHash, extra string) (string, string) {
	t.Helper()
	var b strings.Builder
	bind := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	fmt.Fprintf(&b, "[frontend.imap]\nprotocol = \"imap\"\nbind = [%q]\nbackend = \"dovecot\"\n\n", bind)
	fmt.Fprintf(&b, "[backend.dovecot]\nbalance = \"director\"\n")
	if usernameHash != "" {
		fmt.Fprintf(&b, "director_username_hash = %q\n", usernameHash)
	}
	b.WriteString("[backend.dovecot.check]\ntype = \"none\"\n")
	for i, s := range directorFleet {
		fmt.Fprintf(&b, "[[backend.dovecot.server]]\nname = \"mail%d\"\naddress = %q\nvhost_count = %d\n", i+1, s.ip, s.vhosts)
		if s.ip == directorDown {
			b.WriteString("state = \"maint\"\n")
		}
	}
	b.WriteString(extra)
	path := filepath.Join(dir, "maildirector.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, bind
}

// fleetIP maps maildirector's server names back to the director's IPs.
func fleetIP(name string) string {
	var i int
	if _, err := fmt.Sscanf(name, "mail%d", &i); err != nil || i < 1 || i > len(directorFleet) {
		return "?" + name
	}
	return directorFleet[i-1].ip
}

// whereAll runs maildirector where for users and returns user → server.
func whereAll(t *testing.T, cfg string, users []string) map[string]string {
	t.Helper()
	out, err := exec.Command(binPath, append([]string{"where", "-c", cfg, "--"}, users...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("where: %v\n%s", err, out)
	}
	got := map[string]string{}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) < 5 || f[1] != "backend" || f[3] != "server" {
			t.Fatalf("where: unexpected line %q", line)
		}
		got[f[0]] = f[4]
	}
	return got
}

// directorUsers are 1,000 login names of the shapes sites have: bare,
// with a domain, in mixed case.
func directorUsers() []string {
	users := make([]string, 0, 1000)
	for i := range 600 {
		users = append(users, fmt.Sprintf("user%04d", i))
	}
	for i := range 250 {
		users = append(users, fmt.Sprintf("First%d.Last@Example%d.ORG", i, i%7))
	}
	for i := range 150 {
		users = append(users, fmt.Sprintf("m%d@dept%d.example.com", i, i%3))
	}
	return users
}

// hashedAll asks the director "doveadm director status USER" for every
// user (two at a time: the machine has two cores) and returns user → IP.
func hashedAll(t *testing.T, d *dovecotlab.Director, users []string) map[string]string {
	t.Helper()
	got := make(map[string]string, len(users))
	var mu sync.Mutex
	var wg sync.WaitGroup
	work := make(chan string)
	errs := make(chan error, 2)
	for range 2 {
		wg.Go(func() {
			for u := range work {
				ip, err := d.Hashed(u)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				got[u] = ip
				mu.Unlock()
			}
		})
	}
	for _, u := range users {
		select {
		case work <- u:
		case err := <-errs:
			close(work)
			wg.Wait()
			t.Fatal(err)
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	return got
}

// TestDirectorAgreement: for 1,000 users, maildirector where gives the
// server a real Dovecot 2.3 director gives (doveadm director status USER,
// "Hashed"), with five servers of different vhost counts, one at zero and
// one down: 100 %. A second director with director_username_hash = %Ln
// (the local part only) agrees on every third of them too.
func TestDirectorAgreement(t *testing.T) {
	all := directorUsers()
	var third []string
	for i := 0; i < len(all); i += 3 {
		third = append(third, all[i])
	}
	for _, tc := range []struct {
		name, hash string
		users      []string
	}{{"default %Lu", "", all}, {"%Ln", "%Ln", third}} {
		t.Run(tc.name, func(t *testing.T) {
			users := tc.users
			d := startFleetDirector(t, tc.hash)
			cfg := fleetConfig(t, t.TempDir(), tc.hash, "")
			want := hashedAll(t, d, users)
			got := whereAll(t, cfg, users)
			agree, per := 0, map[string]int{}
			var differ []string
			for _, u := range users {
				if ip := fleetIP(got[u]); ip == want[u] {
					agree++
				} else {
					differ = append(differ, fmt.Sprintf("%s: maildirector %s (%s), director %s", u, got[u], ip, want[u]))
				}
				per[want[u]]++
			}
			for _, d := range differ[:min(len(differ), 5)] { // name a few, not a thousand
				t.Error(d)
			}
			t.Logf("agreement: %d of %d users (%.1f %%); the director's spread: %v", agree, len(users), 100*float64(agree)/float64(len(users)), per)
			if agree != len(users) {
				t.Fatalf("agreement: got %d of %d users, want all", agree, len(users))
			}
			if per[directorDown] != 0 || per["127.0.0.4"] != 0 || len(per) != 3 {
				t.Fatalf("the director's own spread %v: want users on the three up servers with points only", per)
			}
		})
	}
}

// TestDirectorImportKeepsMoves: users a real director moved away from
// their ring placement (doveadm director move) stay where the director put
// them after maildirector imports its map: maildirector where says so from
// the state file, and a started maildirector answers ctl where with the
// same server and the director's expiry.
func TestDirectorImportKeepsMoves(t *testing.T) {
	d := startFleetDirector(t, "")
	up := []string{"127.0.0.2", "127.0.0.3", "127.0.0.6"} // the servers with points, up
	users := []string{"mover1@example.org", "Mover2@Example.org", "stayer@example.org"}
	moved := map[string]string{}
	for _, u := range users {
		hashed, err := d.Hashed(u)
		if err != nil {
			t.Fatal(err)
		}
		target := hashed
		if u != "stayer@example.org" {
			for _, ip := range up {
				if ip != hashed {
					target = ip
					break
				}
			}
		}
		if _, err := d.Doveadm("director", "move", u, target); err != nil {
			t.Fatal(err)
		}
		moved[u] = target
	}
	dir := t.TempDir()
	userList := filepath.Join(dir, "users.txt")
	if err := os.WriteFile(userList, []byte(strings.Join(users, "\n")+"\nnobody@example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mapOut, err := d.Doveadm("director", "map", "-f", userList)
	if err != nil {
		t.Fatal(err)
	}
	status, err := d.Doveadm("director", "status")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("doveadm director map:\n%s", mapOut)
	in := filepath.Join(dir, "director.txt")
	if err := os.WriteFile(in, []byte(mapOut+status), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "ctl.sock")
	cfg, bind := fleetConfigBind(t, dir, "", fmt.Sprintf("[control]\nsocket = %q\nstate_file = %q\n", sock, filepath.Join(dir, "state.json")))

	out, err := exec.Command(binPath, "import-director", "-c", cfg, in).CombinedOutput()
	if err != nil {
		t.Fatalf("import-director: %v\n%s", err, out)
	}
	t.Logf("import-director:\n%s", out)
	if !strings.Contains(string(out), "3 assignments imported (2 of them away from where the ring puts the user now)") {
		t.Errorf("import-director: got %q, want 3 imported, 2 away from the ring", out)
	}
	got := whereAll(t, cfg, users)
	for _, u := range users {
		if ip := fleetIP(got[u]); ip != moved[u] {
			t.Errorf("where %s after the import: got %s (%s), want %s where the director has the user", u, got[u], ip, moved[u])
		}
	}

	startProcess(t, cfg, map[string]string{"imap": bind})
	eventually(t, "the control socket to accept", func() bool {
		res, err := runCtl(sock, nil, "show", "info")
		return err == nil && res.code == 0
	})
	for _, u := range users {
		res, err := runCtl(sock, nil, "--json", "where", u)
		if err != nil || res.code != 0 {
			t.Fatalf("ctl where %s: %v %+v", u, err, res)
		}
		var ws []ctlWhere
		if err := json.Unmarshal([]byte(res.stdout), &ws); err != nil || len(ws) != 1 {
			t.Fatalf("ctl where %s: %v in %q", u, err, res.stdout)
		}
		if ip := fleetIP(ws[0].Server); ip != moved[u] || !strings.HasPrefix(ws[0].Reason, "sticky: expires in") || ws[0].Moved {
			t.Errorf("ctl where %s: got %+v (%s), want sticky on %s until the director's expiry, not an operator's move", u, ws[0], ip, moved[u])
		}
	}
}
