package logsink

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatalf("write %q: %v", s, err)
	}
}

// TestFileReopenAfterRename: what logrotate does. The file is renamed,
// writes go on to the renamed file, Reopen creates a new file under the
// path (mode 0640 at most) and writes go there.
func TestFileReopenAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "maildirector.log")
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	write(t, f, "one\n")
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	write(t, f, "two\n")
	if err := f.Reopen(); err != nil {
		t.Fatalf("Reopen: %v", err)
	}
	write(t, f, "three\n")
	if got, want := readFile(t, rotated), "one\ntwo\n"; got != want {
		t.Errorf("rotated file: got %q, want %q", got, want)
	}
	if got, want := readFile(t, path), "three\n"; got != want {
		t.Errorf("new file: got %q, want %q", got, want)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := st.Mode().Perm(); mode&^fileMode != 0 {
		t.Errorf("new file's mode: got %v, want at most %v", mode, os.FileMode(fileMode))
	}
}

// TestFileReopenAppends: an existing file is appended to, at open and at
// reopen, never truncated.
func TestFileReopenAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "maildirector.log")
	if err := os.WriteFile(path, []byte("before\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	write(t, f, "one\n")
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	write(t, f, "two\n")
	if got, want := readFile(t, path), "before\none\ntwo\n"; got != want {
		t.Errorf("file: got %q, want %q", got, want)
	}
}

// TestFileReopenFailureKeepsWriting: when the path cannot be opened again
// (its directory is gone), Reopen says why and lines go on to the old file.
func TestFileReopenFailureKeepsWriting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := OpenFile(filepath.Join(dir, "maildirector.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	moved := dir + ".old"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := f.Reopen(); err == nil {
		t.Fatal("Reopen into a missing directory: got no error")
	}
	write(t, f, "still here\n")
	if got, want := readFile(t, filepath.Join(moved, "maildirector.log")), "still here\n"; got != want {
		t.Errorf("old file: got %q, want %q", got, want)
	}
}

// rfc5424 is RFC 5424 section 6's SYSLOG-MSG as DialSyslog writes it:
// PRI, VERSION 1, TIMESTAMP, HOSTNAME, APP-NAME, PROCID, MSGID "-",
// STRUCTURED-DATA "-", MSG.
var rfc5424 = regexp.MustCompile(`^<([0-9]{1,3})>1 (\S+) (\S+) (\S+) (\S+) - - (.*)$`)

// syslogMsg is one received message, split.
type syslogMsg struct {
	pri                    int
	time                   time.Time
	host, app, procid, msg string
}

func parse5424(t *testing.T, b []byte) syslogMsg {
	t.Helper()
	m := rfc5424.FindSubmatch(b)
	if m == nil {
		t.Fatalf("not an RFC 5424 message: %q", b)
	}
	pri, _ := strconv.Atoi(string(m[1]))
	ts, err := time.Parse(time.RFC3339Nano, string(m[2]))
	if err != nil {
		t.Errorf("TIMESTAMP %q: %v", m[2], err)
	}
	// Section 6.2.3: at most 6 digits of TIME-SECFRAC.
	if frac := regexp.MustCompile(`\.([0-9]+)`).FindSubmatch(m[2]); frac == nil || len(frac[1]) > 6 {
		t.Errorf("TIMESTAMP %q: want a fraction of 1 to 6 digits", m[2])
	}
	return syslogMsg{pri: pri, time: ts, host: string(m[3]), app: string(m[4]), procid: string(m[5]), msg: string(m[6])}
}

// receive reads one datagram (bounded).
func receive(t *testing.T, c net.PacketConn) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 128<<10)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return buf[:n]
}

func textLogger(s *Syslog) *slog.Logger {
	return slog.New(s.Handler(func(w io.Writer) slog.Handler {
		return slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})
	}))
}

// TestSyslogUDP: one record is one datagram in RFC 5424 format to a UDP
// listener on loopback; PRI is facility × 8 + the record's severity
// (section 6.2.1), the header names this host, the tag and this process,
// and MSG is the text line without its newline.
func TestSyslogUDP(t *testing.T) {
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	s, err := DialSyslog("udp:"+ln.LocalAddr().String(), SyslogOptions{Facility: 16, Tag: "maildirector"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	log := textLogger(s).With("conn", 7)
	host, _ := os.Hostname()
	tests := []struct {
		name    string
		level   slog.Level
		wantPRI int
	}{
		{"debug", slog.LevelDebug, 16*8 + 7},
		{"info", slog.LevelInfo, 16*8 + 6},
		{"warn", slog.LevelWarn, 16*8 + 4},
		{"error", slog.LevelError, 16*8 + 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := time.Now()
			log.Log(t.Context(), tt.level, "session", "user", "alice", "end", "client closed")
			m := parse5424(t, receive(t, ln))
			if m.pri != tt.wantPRI {
				t.Errorf("PRI: got %d, want %d", m.pri, tt.wantPRI)
			}
			if m.time.Before(before.Add(-time.Second)) || m.time.After(time.Now().Add(time.Second)) {
				t.Errorf("TIMESTAMP: got %v, want about %v", m.time, before)
			}
			if m.host != host || m.app != "maildirector" || m.procid != strconv.Itoa(os.Getpid()) {
				t.Errorf("HOSTNAME APP-NAME PROCID: got %q %q %q, want %q maildirector %d", m.host, m.app, m.procid, host, os.Getpid())
			}
			wantMsg := "level=" + tt.level.String() + ` msg=session conn=7 user=alice end="client closed"`
			if !strings.HasPrefix(m.msg, "time=") || !strings.HasSuffix(m.msg, wantMsg) {
				t.Errorf("MSG: got %q, want the text line ending in %q", m.msg, wantMsg)
			}
		})
	}
}

// listenUnixgram is a syslog daemon's /dev/log in dir.
func listenUnixgram(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestSyslogUnixgram: to a datagram socket like /dev/log, JSON lines; a
// line with UTF-8 beyond US-ASCII starts with the BOM (RFC 5424 section
// 6.4); after the daemon made its socket again, the next record reaches
// the new one.
func TestSyslogUnixgram(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	ln := listenUnixgram(t, path)
	s, err := DialSyslog("unix:"+path, SyslogOptions{Facility: 3, Tag: "md"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	log := slog.New(s.Handler(func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) }))

	log.Warn("login failed", "user", "alice")
	m := parse5424(t, receive(t, ln))
	if want := 3*8 + 4; m.pri != want {
		t.Errorf("PRI: got %d, want %d", m.pri, want)
	}
	if m.app != "md" {
		t.Errorf("APP-NAME: got %q, want md", m.app)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(m.msg), &rec); err != nil || rec["msg"] != "login failed" || rec["user"] != "alice" {
		t.Errorf("MSG: got %q (%v), want the JSON line", m.msg, err)
	}

	log.Info("session", "user", "jürgen")
	m = parse5424(t, receive(t, ln))
	if !strings.HasPrefix(m.msg, "\ufeff{") || !strings.Contains(m.msg, `"user":"jürgen"`) {
		t.Errorf("MSG with UTF-8: got %q, want the BOM and the JSON line", m.msg)
	}

	// The daemon restarts: its socket is made again.
	ln.Close()
	os.Remove(path)
	ln = listenUnixgram(t, path)
	log.Info("after restart")
	if m := parse5424(t, receive(t, ln)); !strings.Contains(m.msg, `"msg":"after restart"`) {
		t.Errorf("after the daemon's restart: got %q", m.msg)
	}
}

// TestSyslogLongLineIsCut: a line longer than a UDP datagram can carry is
// cut to one, never in the middle of a character.
func TestSyslogLongLineIsCut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	ln := listenUnixgram(t, path)
	if err := ln.SetReadBuffer(1 << 20); err != nil {
		t.Fatal(err)
	}
	s, err := DialSyslog("unix:"+path, SyslogOptions{Facility: 16, Tag: "maildirector"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	textLogger(s).Info("lmtp transaction", "recipients", strings.Repeat("ü", 70000))
	b := receive(t, ln)
	if len(b) > maxDatagram || len(b) < maxDatagram-3 {
		t.Errorf("datagram: got %d bytes, want %d less a cut character at most", len(b), maxDatagram)
	}
	if !strings.HasSuffix(string(b), "ü") {
		t.Errorf("datagram ends in %q, want a whole ü", b[len(b)-4:])
	}
}

func TestDialSyslogRefusesBadTargets(t *testing.T) {
	tests := []struct {
		name, target string
		facility     int
		want         string
	}{
		{"no transport", "/dev/log", 16, "want unix:PATH or udp:HOST:PORT"},
		{"empty address", "udp:", 16, "want unix:PATH or udp:HOST:PORT"},
		{"tcp", "tcp:127.0.0.1:514", 16, `unknown transport "tcp"`},
		{"facility", "udp:127.0.0.1:514", 24, "want 0..23"},
		{"no socket", "unix:" + filepath.Join(t.TempDir(), "missing"), 16, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := DialSyslog(tt.target, SyslogOptions{Facility: tt.facility})
			if err == nil {
				s.Close()
				t.Fatalf("DialSyslog(%q): got no error, want %q", tt.target, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("DialSyslog(%q): got %v, want %q", tt.target, err, tt.want)
			}
		})
	}
}
