package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/maildirector/maildirector/config"
)

func TestRestartKeys(t *testing.T) {
	base := config.Global{LogFormat: config.LogFormatText, SyslogFacility: "local0", SyslogTag: "maildirector", MaxConn: 100}
	tests := []struct {
		name string
		edit func(g *config.Global)
		want []string
	}{
		{"nothing", func(*config.Global) {}, nil},
		{"log level reloads", func(g *config.Global) { g.LogLevel = config.LogLevelDebug }, nil},
		{"maxconn", func(g *config.Global) { g.MaxConn = 200 }, []string{"global.maxconn"}},
		{"log format", func(g *config.Global) { g.LogFormat = config.LogFormatJSON }, []string{"global.log_format"}},
		{"log file", func(g *config.Global) { g.LogFile = "/var/log/md.log" }, []string{"global.log_file"}},
		{"syslog", func(g *config.Global) { g.Syslog = "unix:/dev/log" }, []string{"global.syslog"}},
		{"syslog facility", func(g *config.Global) { g.SyslogFacility = "mail" }, []string{"global.syslog_facility"}},
		{"syslog tag", func(g *config.Global) { g.SyslogTag = "md2" }, []string{"global.syslog_tag"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old, cfg := &config.Config{Global: base}, &config.Config{Global: base}
			tt.edit(&cfg.Global)
			if got := restartKeys(old, cfg); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestOpenLog: with log_file and syslog both set, a line goes to both and
// none to stderr; SIGUSR1's reopen moves the file's lines to a new file
// after a rename.
func TestOpenLog(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "log")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	g := &config.Global{
		LogFormat: config.LogFormatJSON, LogFile: filepath.Join(dir, "md.log"),
		Syslog: "unix:" + sock, SyslogFacility: "mail", SyslogTag: "md",
	}
	var stderr bytes.Buffer
	log, sinks, err := openLog(g, &stderr, new(slog.LevelVar))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sinks.close)

	log.Warn("first")
	ln.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := ln.Read(buf)
	if err != nil {
		t.Fatalf("syslog: %v", err)
	}
	if got := string(buf[:n]); !strings.HasPrefix(got, "<20>1 ") || !strings.Contains(got, " md ") || !strings.Contains(got, `"msg":"first"`) {
		t.Errorf("syslog: got %q, want PRI 20 (mail, warning), tag md and the JSON line", got)
	}

	if err := os.Rename(g.LogFile, g.LogFile+".1"); err != nil {
		t.Fatal(err)
	}
	sinks.reopen(log)
	log.Info("second")
	if got := readLog(t, g.LogFile+".1"); !strings.Contains(got, `"msg":"first"`) || strings.Contains(got, `"msg":"second"`) {
		t.Errorf("rotated file: got %q, want the first line only", got)
	}
	if got := readLog(t, g.LogFile); !strings.Contains(got, `"msg":"log file reopened"`) || !strings.Contains(got, `"msg":"second"`) {
		t.Errorf("new file: got %q, want the reopen's line and the second line", got)
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr: got %q, want nothing (the log goes to the file and syslog)", stderr.String())
	}
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestThreads: global.threads sets how many threads run Go code at start
// and on reload; 0 gives Go's default back.
func TestThreads(t *testing.T) {
	def := goruntime.GOMAXPROCS(0)
	t.Cleanup(func() { goruntime.GOMAXPROCS(def) })
	text := fmt.Sprintf(`
[global]
threads = 1
[frontend.imap]
protocol = "imap"
bind = ["127.0.0.1:%d"]
backend = "d"
[backend.d]
[[backend.d.server]]
name = "s"
address = "127.0.0.1"
`, freeTCPPort(t))
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := newRuntime(cfg, slog.New(slog.DiscardHandler), "", new(slog.LevelVar), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rt.shutdown(0)
	if got := goruntime.GOMAXPROCS(0); got != 1 {
		t.Errorf("threads = 1 at start: GOMAXPROCS %d, want 1", got)
	}
	cfg2, err := config.Parse([]byte(strings.Replace(text, "threads = 1", "threads = 0", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.apply(cfg2); err != nil {
		t.Fatal(err)
	}
	if got := goruntime.GOMAXPROCS(0); got != def {
		t.Errorf("threads = 0 on reload: GOMAXPROCS %d, want Go's default %d", got, def)
	}
}
