package stats

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeController records what the commands asked for.
type fakeController struct {
	calls []string
	err   error
}

func (f *fakeController) call(s string) { f.calls = append(f.calls, s) }

func (f *fakeController) Info() Info { f.call("info"); return Info{Version: "v", PID: 1, MaxConn: 10} }
func (f *fakeController) Sessions(filter string) []Session {
	f.call("sessions " + filter)
	return []Session{
		{ID: 7, SessionID: "abcdefgh-7", Frontend: "imap", Backend: "b", Server: "s1", User: "alice", Remote: "192.0.2.1:5"},
		{ID: 8, SessionID: "abcdefgh-8", Frontend: "pop3", Backend: "b", Server: "s2", User: "bob", Remote: "192.0.2.2:6", BytesIn: 42},
	}
}
func (f *fakeController) Users(server string) ([]User, error) {
	f.call("users " + server)
	return []User{{Backend: "b", Server: "s1", User: "alice", Sessions: 1}}, f.err
}
func (f *fakeController) SetState(s, st string) error { f.call("state " + s + " " + st); return f.err }
func (f *fakeController) SetWeight(s string, w int) error {
	f.call("weight " + s)
	return f.err
}
func (f *fakeController) ShutdownSessions(s string) (int, error) {
	f.call("shutdown " + s)
	return 2, f.err
}
func (f *fakeController) Where(u string) ([]Where, error) {
	f.call("where " + u)
	return []Where{{Backend: "b", User: u, Server: "s1", Reason: "sticky: 1 live session", Hashed: "s2"}}, f.err
}
func (f *fakeController) Move(u, s string) (Moved, error) {
	f.call("move " + u + " " + s)
	return Moved{User: u, Server: s, Kicked: 1}, f.err
}
func (f *fakeController) Kick(u string) (int, error) { f.call("kick " + u); return 3, f.err }
func (f *fakeController) Flush(s string, n int) (Flushed, error) {
	f.call("flush " + s)
	return Flushed{Server: s, Users: 4}, f.err
}
func (f *fakeController) Freeze(u string) (Frozen, error) {
	f.call("freeze " + u)
	return Frozen{User: u}, f.err
}
func (f *fakeController) Release(u, s string) (Released, error) {
	f.call("release " + u + " " + s)
	return Released{User: u, Server: s}, f.err
}
func (f *fakeController) Frozen() []string { f.call("frozen"); return nil }
func (f *fakeController) Reload() error    { f.call("reload"); return f.err }

func TestControlCommands(t *testing.T) {
	s, _ := newFake(t)
	for _, tt := range []struct {
		line, call, want string
	}{
		{"help", "", "show info"},
		{"show info", "info", "maxconn:"},
		{"show stat", "", "# pxname,svname"},
		{"show servers", "", "BACKEND/SERVER"},
		{"show sessions", "sessions ", "alice"},
		{"show sessions alice", "sessions alice", "192.0.2.1:5"},
		{"show sessions", "sessions ", "abcdefgh-8"},
		{"show session abcdefgh-8", "sessions ", "client:     192.0.2.2:6"},
		{"show session 8", "sessions ", "bytes in:   42"},
		{"show session abcdefgh-7", "sessions ", "user:       alice"},
		{"show users b/s1", "users b/s1", "alice"},
		{"show frozen", "frozen", "none"},
		{"set server b/s1 state drain", "state b/s1 drain", "b/s1: state drain"},
		{"set server s1 weight 20", "weight s1", "weight 20"},
		{"shutdown sessions server b/s1", "shutdown b/s1", "2 sessions closed"},
		{"where alice", "where alice", "hashed:"},
		{"move alice s2", "move alice s2", "moved to s2; 1 sessions kicked"},
		{"kick alice", "kick alice", "3 sessions kicked"},
		{"flush s1 --max-parallel 5", "flush s1", "4 users forgotten"},
		{"freeze alice", "freeze alice", "alice frozen"},
		{"release alice s2", "release alice s2", "released to s2"},
		{"release alice", "release alice ", "alice released"},
		{"reload", "reload", "OK"},
	} {
		f := &fakeController{}
		got, failed := s.NewControl(f).Do(tt.line)
		if failed || !strings.Contains(got, tt.want) {
			t.Errorf("%q: got %q (failed %v), want it to contain %q", tt.line, got, failed, tt.want)
		}
		if tt.call != "" && (len(f.calls) != 1 || f.calls[0] != tt.call) {
			t.Errorf("%q: controller calls %q, want [%q]", tt.line, f.calls, tt.call)
		}
		if strings.Contains(got, "\n\n") {
			t.Errorf("%q: the answer has an empty line, which would end it early: %q", tt.line, got)
		}
	}
}

func TestControlShowSessionUnknown(t *testing.T) {
	s, _ := newFake(t)
	for _, line := range []string{"show session abcdefgh-9", "show session 9", "show session", "show session 7 8"} {
		got, failed := s.NewControl(&fakeController{}).Do(line)
		if !failed || !strings.HasPrefix(got, "error: ") {
			t.Errorf("%q: got %q (failed %v), want an error", line, got, failed)
		}
	}
}

func TestControlJSON(t *testing.T) {
	s, _ := newFake(t)
	c := s.NewControl(&fakeController{})
	got, failed := c.Do("where alice --json")
	var w []Where
	if failed || json.Unmarshal([]byte(got), &w) != nil || len(w) != 1 || w[0].Hashed != "s2" {
		t.Errorf("where --json: %q", got)
	}
	got, _ = c.Do("-j show stat")
	var snap Snapshot
	if json.Unmarshal([]byte(got), &snap) != nil || len(snap.Backends) != 1 {
		t.Errorf("show stat -j: %q", got)
	}
	got, failed = c.Do("bogus --json")
	var e map[string]string
	if !failed || json.Unmarshal([]byte(got), &e) != nil || !strings.Contains(e["error"], "unknown command") {
		t.Errorf("bogus --json: %q failed %v", got, failed)
	}
}

func TestControlErrors(t *testing.T) {
	s, _ := newFake(t)
	for _, tt := range []struct{ line, want string }{
		{"", "empty command"},
		{"bogus", `unknown command "bogus"`},
		{"show", "missing what to show"},
		{"show nothing", "show nothing: unknown"},
		{"show users", "missing SERVER"},
		{"show info extra", "too many arguments"},
		{"set server s1 colour red", "unknown field"},
		{"set server s1 weight heavy", "want a number"},
		{"set s1 state ready", "usage: set server"},
		{"shutdown sessions s1", "usage: shutdown sessions server"},
		{"move alice", "missing SERVER"},
		{"kick", "missing USER"},
		{"flush s1 --max-parallel", "needs a number"},
		{"flush s1 --max-parallel 0", "from 1 to 10000"},
		{"where alice --colour", "unknown flag"},
		{"release a b c", "too many arguments"},
	} {
		got, failed := s.NewControl(&fakeController{}).Do(tt.line)
		if !failed || !strings.HasPrefix(got, "error: ") || !strings.Contains(got, tt.want) || strings.Contains(got, "\n") {
			t.Errorf("%q: got %q (failed %v), want one error line containing %q", tt.line, got, failed, tt.want)
		}
	}
	// The controller's error, several lines (a reload's problems), stays
	// an error of several lines with no empty one.
	f := &fakeController{err: errors.New("config x.toml:\nstats.bind: bad\n\nbackend.b.server[0].address: missing port")}
	got, failed := s.NewControl(f).Do("reload")
	if !failed || !strings.HasPrefix(got, "error: ") || !strings.Contains(got, "\n  backend.b.server[0].address") {
		t.Errorf("reload error: %q", got)
	}
	for _, l := range strings.Split(got, "\n") {
		if strings.TrimSpace(l) == "" {
			t.Errorf("reload error has a blank line: %q", got)
		}
	}
}

// TestControlServeConn: answers end with an empty line, several commands
// share a connection, garbage gets an error line and the connection goes
// on, an overlong line is answered and closed.
func TestControlServeConn(t *testing.T) {
	s, _ := newFake(t)
	c := s.NewControl(&fakeController{})
	client, server := net.Pipe()
	go c.ServeConn(server)
	defer client.Close()
	client.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(client)
	answer := func() []string {
		t.Helper()
		var lines []string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v (so far %q)", err, lines)
			}
			if l == "\n" {
				return lines
			}
			lines = append(lines, strings.TrimSuffix(l, "\n"))
		}
	}
	go client.Write([]byte("\x00\xff\x1b[2J garbage\nkick alice\r\n"))
	if a := answer(); len(a) != 1 || !strings.HasPrefix(a[0], "error: unknown command") {
		t.Errorf("garbage: %q", a)
	}
	if a := answer(); len(a) != 1 || a[0] != "alice: 3 sessions kicked" {
		t.Errorf("kick after garbage: %q", a)
	}
	go client.Write([]byte(strings.Repeat("x", 10000) + "\n"))
	if a := answer(); len(a) != 1 || !strings.Contains(a[0], "longer than") {
		t.Errorf("long line: %q", a)
	}
	if _, err := br.ReadString('\n'); err == nil {
		t.Error("the connection stays open after an overlong line")
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"show servers", "flush s1 --max-parallel 5", "where alice --json", "set server b/s state drain", "--max-parallel", "\x00"} {
		f.Add(s)
	}
	s := New(Options{})
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := parseCommand(line)
		if err == nil {
			for _, w := range cmd.words {
				if w == "" || strings.HasPrefix(w, "--") || strings.ContainsAny(w, " \t\n") {
					t.Fatalf("word %q from %q", w, line)
				}
			}
		}
		// Any line gets an answer without an empty line in it.
		answer, _ := s.NewControl(&fakeController{}).Do(line)
		if strings.Contains(answer, "\n\n") || answer == "" {
			t.Fatalf("answer %q to %q", answer, line)
		}
	})
}

// handoverController is a fakeController whose process can hand its
// listeners over.
type handoverController struct {
	fakeController
	sent, handed int
}

func (h *handoverController) SendListeners(conn *net.UnixConn) error {
	h.sent++
	_, err := conn.Write([]byte("listeners 0\n\n"))
	return err
}

func (h *handoverController) HandOver() error { h.handed++; return nil }

// TestControlHandoverVerbs: the upgrade's internal verbs reach a
// Controller that implements Handover on a unix socket only, in order on
// one connection; anywhere else (another connection type, HTTP's Do, a
// controller without it) they are errors, and help does not list them.
func TestControlHandoverVerbs(t *testing.T) {
	s, _ := newFake(t)
	sock := t.TempDir() + "/ctl.sock"
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	h := &handoverController{}
	go s.NewControl(h).Serve(ln)
	t.Cleanup(func() { ln.Close() })
	ask := func(conn net.Conn, br *bufio.Reader, line string) string {
		t.Helper()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := conn.Write([]byte(line + "\n")); err != nil {
			t.Fatal(err)
		}
		var lines []string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: read: %v (so far %q)", line, err, lines)
			}
			if l == "\n" {
				return strings.Join(lines, "\n")
			}
			lines = append(lines, strings.TrimSuffix(l, "\n"))
		}
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	if got := ask(conn, br, "_listeners"); got != "listeners 0" || h.sent != 1 || h.handed != 0 {
		t.Errorf("_listeners on the control socket: got %q (sent %d, handed %d), want the controller's answer", got, h.sent, h.handed)
	}
	if got := ask(conn, br, "_handover"); got != "OK" || h.handed != 1 {
		t.Errorf("_handover on the control socket: got %q (handed %d), want OK", got, h.handed)
	}
	if got := ask(conn, br, "_bogus"); !strings.HasPrefix(got, "error: unknown command") {
		t.Errorf("_bogus: got %q, want unknown command", got)
	}

	client, server := net.Pipe()
	go s.NewControl(h).ServeConn(server)
	defer client.Close()
	if got := ask(client, bufio.NewReader(client), "_listeners"); !strings.HasPrefix(got, "error: ") || h.sent != 1 {
		t.Errorf("_listeners on a connection that cannot carry descriptors: got %q (sent %d), want an error", got, h.sent)
	}
	if got, failed := s.NewControl(h).Do("_handover"); !failed || h.handed != 1 {
		t.Errorf("_handover through Do (the HTTP path): got %q, handed %d; want an error", got, h.handed)
	}
	sock2 := t.TempDir() + "/other.sock"
	ln2, err := net.Listen("unix", sock2)
	if err != nil {
		t.Fatal(err)
	}
	go s.NewControl(&fakeController{}).Serve(ln2)
	t.Cleanup(func() { ln2.Close() })
	other, err := net.Dial("unix", sock2)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if got := ask(other, bufio.NewReader(other), "_listeners"); !strings.HasPrefix(got, "error: ") {
		t.Errorf("_listeners to a controller that cannot hand over: got %q, want an error", got)
	}
	if help, _ := s.NewControl(h).Do("help"); strings.Contains(help, "_") {
		t.Errorf("help lists an internal verb: %q", help)
	}
}

func (h *handoverController) Upgrade() (Upgraded, error) {
	h.call("upgrade")
	return Upgraded{PID: 2, OldPID: 1}, h.err
}

// TestControlUpgrade: "upgrade" reaches a Controller that can start its
// successor and says which process serves; elsewhere it is an error.
func TestControlUpgrade(t *testing.T) {
	s, _ := newFake(t)
	h := &handoverController{}
	if got, failed := s.NewControl(h).Do("upgrade"); failed || got != "upgraded: pid 2 serves on the listening sockets now; pid 1 drains its sessions and exits" || len(h.calls) != 1 {
		t.Errorf("upgrade: got %q (failed %v, calls %q)", got, failed, h.calls)
	}
	if got, _ := s.NewControl(h).Do("upgrade --json"); got != `{"pid":2,"old_pid":1}` {
		t.Errorf("upgrade --json: got %q", got)
	}
	if got, failed := s.NewControl(h).Do("upgrade now"); !failed || !strings.Contains(got, "too many arguments") {
		t.Errorf("upgrade now: got %q, want a usage error", got)
	}
	if got, failed := s.NewControl(&fakeController{}).Do("upgrade"); !failed || !strings.Contains(got, "not available") {
		t.Errorf("upgrade without an Upgrader: got %q, want an error", got)
	}
	if help, _ := s.NewControl(h).Do("help"); !strings.Contains(help, "upgrade") {
		t.Errorf("help does not list upgrade: %q", help)
	}
}
