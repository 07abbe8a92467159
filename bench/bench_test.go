package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/internal/dovecotlab"
	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/internal/nginxlab"
	"github.com/maildirector/maildirector/tlsutil"
)

func startTestBackend(t *testing.T) *backend {
	t.Helper()
	b, err := startBackend("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// converse dials b, reads the greeting and sends lines, returning every
// line the server wrote until it closed or went quiet.
func converse(t *testing.T, b *backend, lines ...string) []string {
	t.Helper()
	cl, err := dialRaw(b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := io.WriteString(cl.c, strings.Join(lines, "")); err != nil {
		t.Fatal(err)
	}
	var got []string
	cl.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	for range 20 {
		line, err := cl.readLine()
		if err != nil {
			break
		}
		got = append(got, line)
	}
	return got
}

// dialRaw connects and reads the greeting, nothing more.
func dialRaw(addr string) (*client, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := mailwire.ReadLine(r, maxReplyLine); err != nil || line != greeting {
		c.Close()
		return nil, fmt.Errorf("greeting: got %q, %v; want %q", line, err, greeting)
	}
	return &client{c: c, r: r}, nil
}

func TestBackendCommands(t *testing.T) {
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret"))
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"login atom", []string{"a LOGIN alice secret\r\n"}, []string{"a OK Logged in"}},
		{"login quoted", []string{`a LOGIN "al \"ice\"" "se cret"` + "\r\n"}, []string{"a OK Logged in"}},
		{"login one argument", []string{"a LOGIN alice\r\n"}, []string{"a BAD LOGIN needs a user and a password"}},
		{"authenticate plain with initial response", []string{"a AUTHENTICATE PLAIN " + plain + "\r\n"}, []string{"a OK Logged in"}},
		{"authenticate plain after continuation", []string{"a AUTHENTICATE PLAIN\r\n", plain + "\r\n"}, []string{"+ ", "a OK Logged in"}},
		{"authenticate other mechanism", []string{"a AUTHENTICATE XOAUTH2 abc\r\n"}, []string{"a NO unsupported mechanism"}},
		{"authenticate garbage", []string{"a AUTHENTICATE PLAIN !!!\r\n"}, []string{"a BAD decode PLAIN response: illegal base64 data at input byte 0"}},
		{"capability", []string{"a CAPABILITY\r\n"}, []string{"* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN", "a OK done"}},
		{"select", []string{"a SELECT INBOX\r\n"}, []string{"* 0 EXISTS", "* OK [UIDVALIDITY 1] UIDs valid", "* OK [UIDNEXT 1] next", `* FLAGS (\Answered \Flagged \Deleted \Seen \Draft)`, "a OK [READ-WRITE] SELECT completed"}},
		{"noop and logout", []string{"a NOOP\r\n", "b LOGOUT\r\n", "c NOOP\r\n"}, []string{"a OK done", "* BYE logging out", "b OK Logout completed"}},
		{"unknown", []string{"a FROB\r\n"}, []string{"a BAD unknown command"}},
		{"no command", []string{"a\r\n"}, []string{"* BAD missing tag or command"}},
	}
	b := startTestBackend(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := converse(t, b, tt.lines...)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestClientLoginLogoutAndBulk(t *testing.T) {
	b := startTestBackend(t)
	if err := loginLogout(b.Addr()); err != nil {
		t.Fatalf("login and logout: got %v, want nil", err)
	}
	for _, size := range []int64{1, 100, int64(len(bulkChunk)) + 7} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			got, err := xferOne(b.Addr(), size, time.Now().Add(5*time.Second))
			if err != nil || got != size {
				t.Errorf("got %d bytes, %v; want %d, nil", got, err, size)
			}
		})
	}
	if got := b.Logins(); got != 4 {
		t.Errorf("got %d logins, want 4", got)
	}
}

func TestMeasureHelpersOnDirectPath(t *testing.T) {
	b := startTestBackend(t)
	x := measureXfer(b.Addr(), 0, 2, 1<<20, 5*time.Second)
	if x.Bytes != 1<<20 || x.TimedOut || x.FirstError != "" {
		t.Errorf("xfer: got %d bytes, timed out %v, error %q; want %d, false, none", x.Bytes, x.TimedOut, x.FirstError, 1<<20)
	}
	r := measureRate(b.Addr(), 3, 20, 10*time.Second)
	if r.Done != 20 || r.Failed != 0 || r.P50ms <= 0 || r.P99ms < r.P50ms {
		t.Errorf("rate: got done %d failed %d p50 %v p99 %v (%s), want 20 done, 0 failed, 0 < p50 <= p99", r.Done, r.Failed, r.P50ms, r.P99ms, r.FirstError)
	}
	// Idle measurement against this very process stands in for a proxy.
	idle, err := measureIdle(b.Addr(), os.Getpid(), 10, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	// 10 client sockets here and 10 server sockets here; sockets of earlier
	// tests may still be closing meanwhile, so allow some slack.
	if idle.FDs < 1 || idle.FDs > 3 {
		t.Errorf("idle fds per session: got %v, want about 2", idle.FDs)
	}
	if idle.Sessions != 10 || idle.Failed != 0 {
		t.Errorf("idle: got %d sessions, %d failed; want 10, 0", idle.Sessions, idle.Failed)
	}
}

func TestParseCommand(t *testing.T) {
	tests := []struct {
		line    string
		want    command
		wantErr bool
	}{
		{line: "a1 login bob pw", want: command{tag: "a1", verb: "LOGIN", args: []string{"bob", "pw"}}},
		{line: `t LOGIN "b o\\b" "p\"w"`, want: command{tag: "t", verb: "LOGIN", args: []string{`b o\b`, `p"w`}}},
		{line: "t NOOP", want: command{tag: "t", verb: "NOOP"}},
		{line: "t  NOOP", wantErr: true},
		{line: "t LOGIN {3}", wantErr: true},
		{line: `t LOGIN "open`, wantErr: true},
		{line: `t LOGIN "bad\escape"`, wantErr: true},
		{line: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := parseCommand(tt.line)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if err == nil && (got.tag != tt.want.tag || got.verb != tt.want.verb || !slices.Equal(got.args, tt.want.args)) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"a LOGIN u p", `a LOGIN "u\"" "p"`, "a AUTHENTICATE PLAIN AGEAYg==", "a {3}", `a "`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := parseCommand(line)
		if err != nil {
			return
		}
		if cmd.tag == "" || cmd.verb == "" || strings.ContainsRune(cmd.tag, ' ') {
			t.Errorf("parsed %q into %+v", line, cmd)
		}
	})
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tmaildirector\nThreads:\t9\nVmRSS:\t   29088 kB\nRssAnon:\t   21604 kB\n"
	got, err := parseStatus([]byte(status))
	if err != nil {
		t.Fatal(err)
	}
	if want := (procStats{RSSKiB: 29088, AnonKiB: 21604, Threads: 9}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, err := parseStatus([]byte("Name:\tx\n")); err == nil {
		t.Error("got nil error for a status without VmRSS, want one")
	}
}

func TestParseStatCPU(t *testing.T) {
	// utime 150 and stime 50 ticks; the command name has a space and a ')'.
	stat := "1234 (my ) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 9 0 100 0 0"
	got, err := parseStatCPU([]byte(stat))
	if want := 2 * time.Second; err != nil || got != want {
		t.Errorf("got %v, %v; want %v, nil", got, err, want)
	}
	if total, sys, err := parseStatCPUSplit([]byte(stat)); err != nil || total != 2*time.Second || sys != 500*time.Millisecond {
		t.Errorf("split: got %v, %v, %v; want 2s, 500ms, nil", total, sys, err)
	}
	if _, err := parseStatCPU([]byte("1234 (x) S 1")); err == nil {
		t.Error("got nil error for a short stat, want one")
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		name string
		in   []time.Duration
		p    int
		want float64
	}{
		{"empty", nil, 50, 0},
		{"one", d[:1], 99, 1},
		{"p50 of 100", d, 50, 50},
		{"p99 of 100", d, 99, 99},
		{"p100 of 100", d, 100, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.in, tt.p); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantN   int
		wantMiB int64
		wantErr bool
	}{
		{name: "defaults", wantN: 4000, wantMiB: 1024},
		{name: "quick", args: []string{"-quick"}, wantN: 500, wantMiB: 128},
		{name: "quick keeps explicit n", args: []string{"-quick", "-n", "700"}, wantN: 700, wantMiB: 128},
		{name: "unknown path", args: []string{"-paths", "nginx"}, wantErr: true},
		{name: "too many sessions", args: []string{"-n", "50000"}, wantErr: true},
		{name: "stray argument", args: []string{"x"}, wantErr: true},
		{name: "unknown suite", args: []string{"-suites", "pop3"}, wantErr: true},
		{name: "unknown lmtp target", args: []string{"-lmtp-targets", "postfix"}, wantErr: true},
		{name: "zero recipients", args: []string{"-lmtp-rcpts", "1,0"}, wantErr: true},
		{name: "no lmtp clients", args: []string{"-lmtp-clients", "0"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args, io.Discard)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if err == nil && (o.n != tt.wantN || o.bytes != tt.wantMiB<<20) {
				t.Errorf("got n=%d bytes=%d, want n=%d bytes=%d", o.n, o.bytes, tt.wantN, tt.wantMiB<<20)
			}
		})
	}
}

// TestMaildirectorConfigLoads keeps the generated configuration in step
// with the real schema.
func TestMaildirectorConfigLoads(t *testing.T) {
	tests := []struct {
		name, cfg string
	}{
		{"imap", maildirectorConfig("imap", "127.0.0.1:1", "127.0.0.1:2", "warn")},
		{"tcp", maildirectorConfig("tcp", "127.0.0.1:1", "127.0.0.1:2", "warn")},
		{"lmtp to dovecot", maildirectorLMTPConfig("127.0.0.1:1", "127.0.0.1:2", "v2-ssl", "warn")},
		{"lmtp to sink", maildirectorLMTPConfig("127.0.0.1:1", "127.0.0.1:2", "none", "warn")},
		{"http", maildirectorHTTPConfig("127.0.0.1:1", "127.0.0.1:2", "warn")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// As startMaildirector writes it: with its stats listener.
			path := filepath.Join(t.TempDir(), "md.toml")
			if err := os.WriteFile(path, []byte(withStats(tt.cfg, "127.0.0.1:3", true)), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := config.Load(path); err != nil {
				t.Errorf("got %v, want the generated %s config to load", err, tt.name)
			}
		})
	}
}

func TestHAProxyConfigValid(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/haproxy"); err != nil {
			t.Fatal("haproxy is not installed: run scripts/deps.sh (make test does)")
		}
	}
	cfgs := map[string]string{
		"tcp":                    haproxyConfig("127.0.0.1:1", "127.0.0.1:2", "", haproxyMaxconn),
		"tcp, send-proxy-v2":     haproxyConfig("127.0.0.1:1", "127.0.0.1:2", "send-proxy-v2", haproxyMaxconn),
		"http, as Dovecot's doc": haproxyHTTPConfig("127.0.0.1:1", "127.0.0.1:2"),
	}
	for name, cfg := range cfgs {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "haproxy.cfg")
			if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil || bytes.Contains(out, []byte("WARNING")) {
				t.Errorf("haproxy -c: got %v: %s, want a valid config without warnings", err, out)
			}
		})
	}
}

// TestMeasureHTTPOnNginx runs the HTTP measurements on the direct path to a
// real nginx for a moment: the objects come back whole, and the rates and
// the ratios are computed from them.
func TestMeasureHTTPOnNginx(t *testing.T) {
	lab := nginxlab.StartT(t, nginxlab.Options{})
	if err := writeObject(filepath.Join(lab.Data, smallObject), 4<<10); err != nil {
		t.Fatal(err)
	}
	small := measureHTTP(lab.Instances[0].Addr, 0, 4, smallObject, 4<<10, 300*time.Millisecond)
	if small.Requests == 0 || small.Failed != 0 || small.ReqPerS <= 0 || small.P50ms <= 0 {
		t.Fatalf("4 KiB GETs: got %+v, want requests without failures", small)
	}
	wrong := measureHTTP(lab.Instances[0].Addr, 0, 1, smallObject, 5<<10, 100*time.Millisecond)
	if wrong.Requests != 0 || wrong.Failed == 0 || !strings.Contains(wrong.FirstError, "got 4096 bytes, want 5120") {
		t.Errorf("GETs of the wrong size: got %+v, want them failed", wrong)
	}
	small.Test, small.Path = testSmall, pathDirect
	half := small
	half.Path, half.ReqPerS, half.MBPerS = pathMDHTTP, small.ReqPerS/2, small.MBPerS/2
	ratios, paired := httpRatios([]HTTPRun{small, half}, map[string][]HTTPRun{testSmall + " " + pathDirect: {small}, testSmall + " " + pathMDHTTP: {half}})
	if got := ratios[testSmall+" md-http/direct"]["requests/s"]; got != 0.5 {
		t.Errorf("md-http/direct requests/s: got %v, want 0.5", got)
	}
	if got := paired[testSmall+" md-http/direct"]; len(got) != 1 || got[0] != 0.5 {
		t.Errorf("paired: got %v, want [0.5]", got)
	}
}

func TestRatiosAndBudget(t *testing.T) {
	idle := func(kib, fds float64) *IdleResult {
		return &IdleResult{KiB: kib, KiBLater: kib, FDs: fds, Later: procStats{RSSKiB: 1}}
	}
	paths := []PathResult{
		{Path: pathDirect, RateSeq: RateResult{Done: 1, PerSecond: 1000}},
		{Path: pathHAProxy, PID: 1, Idle: idle(3.5, 2), RateSeq: RateResult{Done: 1, PerSecond: 500}},
		{Path: pathMDIMAP, PID: 2, Idle: idle(7, 2), RateSeq: RateResult{Done: 1, PerSecond: 250}},
	}
	r := ratios(paths)
	if got := r["md-imap/haproxy"]["idle KiB/session VmRSS (settle)"]; got != 2 {
		t.Errorf("md-imap/haproxy idle KiB: got %v, want 2", got)
	}
	if got := r["md-imap/direct"]["logins/s sequential"]; got != 0.25 {
		t.Errorf("md-imap/direct logins/s: got %v, want 0.25", got)
	}
	if _, ok := r["md-imap/direct"]["idle fds/session"]; ok {
		t.Error("got an idle ratio against direct, want none: direct has no proxy process")
	}
	if _, ok := r["md-tcp/haproxy"]; ok {
		t.Error("got ratios for a path that was not run")
	}
	v := budget(paths)["md-imap"]
	if v.WithinK || !v.WithinF {
		t.Errorf("budget: got %+v, want over on KiB and within on fds", v)
	}
	var sb strings.Builder
	printReport(&sb, &Report{Paths: paths, Ratios: r, Budget: budget(paths)})
	if !strings.Contains(sb.String(), "budget md-imap: 7.00 KiB/session (OVER 3.5)") {
		t.Errorf("report lacks the budget line:\n%s", sb.String())
	}
}

func TestParseFlagsLMTP(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantSuites []string
		wantRcpts  []int
		wantBytes  int
		wantTime   time.Duration
	}{
		{name: "defaults", wantSuites: []string{"imap", "tls", "dovecot", "lmtp", "http"}, wantRcpts: []int{1, 2}, wantBytes: 10240, wantTime: 2 * time.Second},
		{name: "quick", args: []string{"-quick"}, wantSuites: []string{"imap", "tls", "dovecot", "lmtp", "http"}, wantRcpts: []int{1, 2}, wantBytes: 10240, wantTime: time.Second},
		{name: "lmtp only", args: []string{"-suites", "lmtp", "-lmtp-rcpts", "3", "-lmtp-kib", "1", "-lmtp-time", "2s"},
			wantSuites: []string{"lmtp"}, wantRcpts: []int{3}, wantBytes: 1024, wantTime: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFlags(tt.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(o.suites, tt.wantSuites) || !slices.Equal(o.lmtpRcpts, tt.wantRcpts) || o.lmtpBytes != tt.wantBytes || o.lmtpTime != tt.wantTime {
				t.Errorf("got suites %v rcpts %v bytes %d time %v, want %v %v %d %v",
					o.suites, o.lmtpRcpts, o.lmtpBytes, o.lmtpTime, tt.wantSuites, tt.wantRcpts, tt.wantBytes, tt.wantTime)
			}
		})
	}
}

func TestLMTPMessage(t *testing.T) {
	for _, size := range []int{10240, 1000, 200} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			msg := lmtpMessage(size)
			if len(msg) != size {
				t.Errorf("got %d bytes, want %d", len(msg), size)
			}
			if !strings.HasSuffix(string(msg), "\r\n") || strings.Contains(strings.ReplaceAll(string(msg), "\r\n", ""), "\n") {
				t.Errorf("got a message that is not CRLF lines: %q", msg[max(0, len(msg)-100):])
			}
		})
	}
}

func startTestSink(t *testing.T) *lmtpSink {
	t.Helper()
	s, err := startLMTPSink("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestMeasureLMTPOnSink is the LMTP suite's smoke run: a few messages
// straight to the sink, every one accepted and counted once.
func TestMeasureLMTPOnSink(t *testing.T) {
	msg := lmtpMessage(10 << 10)
	dialers := map[string]lmtpDialer{"step": lmtpDial, "pipelined": pipeDial}
	for _, name := range []string{"step", "pipelined"} {
		for _, rcpts := range []int{1, 2} {
			t.Run(fmt.Sprint(name, rcpts), func(t *testing.T) {
				s := startTestSink(t)
				r := measureLMTP(dialers[name], s.Addr(), os.Getpid(), 2, rcpts, 5, 10*time.Second, msg)
				if r.Messages != 10 || r.Failed != 0 || r.FirstError != "" {
					t.Fatalf("got %d delivered, %d failed, error %q; want 10, 0, none", r.Messages, r.Failed, r.FirstError)
				}
				if want := r.MsgPerS * float64(rcpts); r.RcptPerS != want || r.MsgPerS <= 0 {
					t.Errorf("got %v messages/s and %v recipients/s, want a positive rate and %v", r.MsgPerS, r.RcptPerS, want)
				}
				if r.P50ms <= 0 || r.P99ms < r.P50ms {
					t.Errorf("got p50 %v p99 %v, want 0 < p50 <= p99", r.P50ms, r.P99ms)
				}
				// The sink counts at DATA's end, before the reply the client waits for.
				if m, n := s.Delivered(); m != 10 || n != int64(10*rcpts) {
					t.Errorf("sink got %d messages, %d recipients; want 10, %d", m, n, 10*rcpts)
				}
			})
		}
	}
}

func TestMeasureLMTPNoServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r := measureLMTP(lmtpDial, addr, 0, 2, 1, 5, time.Second, lmtpMessage(100))
	if r.Messages != 0 || r.FirstError == "" {
		t.Errorf("got %d delivered, error %q; want 0 and the dial error", r.Messages, r.FirstError)
	}
}

func TestLMTPRatiosAndReport(t *testing.T) {
	runs := []LMTPRun{
		{Target: targetDovecot, Rcpts: 1, Path: pathDirect, Messages: 100, MsgPerS: 400, RcptPerS: 400, P50ms: 8, P99ms: 20, AllMsgPerS: []float64{400}},
		{Target: targetDovecot, Rcpts: 1, Path: pathHAProxy, Messages: 100, MsgPerS: 400, RcptPerS: 400, P50ms: 8, P99ms: 20, CPUmsPerMsg: 0.25},
		{Target: targetDovecot, Rcpts: 1, Path: pathMDLMTP, Messages: 100, MsgPerS: 360, RcptPerS: 360, P50ms: 10, P99ms: 20, CPUmsPerMsg: 1,
			Failed: 2, FirstError: "RCPT: 451"},
	}
	r := lmtpRatios(runs)
	if got := r["dovecot 1rcpt md-lmtp/direct"]["messages/s"]; got != 0.9 {
		t.Errorf("md-lmtp/direct messages/s: got %v, want 0.9", got)
	}
	if got := r["dovecot 1rcpt md-lmtp/haproxy"]["proxy CPU ms/message"]; got != 4 {
		t.Errorf("md-lmtp/haproxy proxy CPU: got %v, want 4", got)
	}
	if _, ok := r["dovecot 1rcpt md-lmtp/direct"]["proxy CPU ms/message"]; ok {
		t.Error("got a proxy CPU ratio against direct, want none: direct has no proxy process")
	}
	var sb strings.Builder
	printLMTP(&sb, &LMTPReport{Bytes: 10240, Clients: 4, Runs: runs, Ratios: r, Errors: map[string]string{targetSink: "boom"}})
	out := sb.String()
	for _, want := range []string{"0.90", "lmtp dovecot 1rcpt direct: messages/s of each run 400", "2 failed, first error: RCPT: 451", "lmtp sink: ERROR boom"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestParseMachineCPU(t *testing.T) {
	before, err := parseMachineCPU([]byte("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4 5\n"))
	if err != nil {
		t.Fatal(err)
	}
	// 300 more ticks, 75 of them idle or iowait: 75% busy.
	after, err := parseMachineCPU([]byte("cpu  250 0 125 850 75 0 0 0 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := after.busySince(before); got != 0.75 {
		t.Errorf("got busy %v, want 0.75", got)
	}
	if got := before.busySince(before); got != 0 {
		t.Errorf("got busy %v over no ticks, want 0", got)
	}
	if _, err := parseMachineCPU([]byte("intr 1 2 3\n")); err == nil {
		t.Error("got nil error for a stat without a cpu line, want one")
	}
}

func TestLMTPPaired(t *testing.T) {
	runs := []LMTPRun{
		{Target: targetSink, Rcpts: 2, Path: pathDirect, AllMsgPerS: []float64{100, 200}},
		{Target: targetSink, Rcpts: 2, Path: pathMDLMTP, AllMsgPerS: []float64{90, 100}},
	}
	got := lmtpPaired(runs)
	if want := []float64{0.9, 0.5}; !slices.Equal(got["sink 2rcpt md-lmtp/direct"], want) {
		t.Errorf("got %v, want %v", got["sink 2rcpt md-lmtp/direct"], want)
	}
	if _, ok := got["sink 2rcpt haproxy/direct"]; ok {
		t.Error("got paired ratios for a path that was not run")
	}
}

// testCerts writes both kinds of bench certificate into a test directory.
func testCerts(t *testing.T) map[string]benchCert {
	t.Helper()
	dir := t.TempDir()
	certs := make(map[string]benchCert)
	for _, kind := range tlsCerts {
		c, err := writeCert(dir, kind)
		if err != nil {
			t.Fatal(err)
		}
		certs[kind] = c
	}
	return certs
}

func TestWriteCert(t *testing.T) {
	for kind, c := range testCerts(t) {
		t.Run(kind, func(t *testing.T) {
			pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
			if err != nil {
				t.Fatal(err)
			}
			leaf := pair.Leaf
			var gotKind string
			switch k := leaf.PublicKey.(type) {
			case *ecdsa.PublicKey:
				if k.Curve == elliptic.P256() {
					gotKind = certECDSA
				}
			case *rsa.PublicKey:
				if k.N.BitLen() == 2048 {
					gotKind = certRSA
				}
			}
			if gotKind != kind || !slices.Equal(leaf.DNSNames, []string{tlsServerName}) {
				t.Errorf("got a %q key for %q, want %s for [%s]", gotKind, leaf.DNSNames, kind, tlsServerName)
			}
			if _, err := tls.LoadX509KeyPair(c.Combined, c.Combined); err != nil {
				t.Errorf("combined PEM for HAProxy: %v", err)
			}
		})
	}
}

// TestMaildirectorFrontendConfigLoads keeps the TLS and Dovecot suites'
// configurations in step with the real schema, and their certificates
// loadable by the package maildirector serves them with.
func TestMaildirectorFrontendConfigLoads(t *testing.T) {
	certs := testCerts(t)
	tests := []mdFrontend{
		{protocol: "imap", sendProxy: "none", tlsMode: tlsImplicit, cert: certs[certECDSA]},
		{protocol: "imap", sendProxy: "none", tlsMode: tlsSTARTTLS, cert: certs[certRSA]},
		{protocol: "tcp", sendProxy: "none", tlsMode: tlsImplicit, cert: certs[certRSA]},
		{protocol: "imap", sendProxy: "v2-ssl"},
		{protocol: "pop3", sendProxy: "v2-ssl"},
		{protocol: "tcp", sendProxy: "v2"},
	}
	for _, f := range tests {
		f.listen, f.server, f.logLevel = "127.0.0.1:1", "127.0.0.1:2", "warn"
		t.Run(f.protocol+" "+f.tlsMode+" "+f.sendProxy, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "md.toml")
			if err := os.WriteFile(path, []byte(withStats(maildirectorFrontendConfig(f), "127.0.0.1:3", true)), 0o644); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatalf("got %v, want the generated config to load", err)
			}
			fe := cfg.Frontends["bench"]
			if got := string(fe.TLS.Mode); f.tlsMode != "" && got != f.tlsMode {
				t.Errorf("tls.mode: got %q, want %q", got, f.tlsMode)
			}
			if got := string(cfg.Backends["server"].Servers[0].SendProxy); got != f.sendProxy {
				t.Errorf("send_proxy: got %q, want %q", got, f.sendProxy)
			}
			if f.tlsMode == "" {
				return
			}
			if len(fe.TLS.Certs) != 1 {
				t.Fatalf("got %d certificates, want 1", len(fe.TLS.Certs))
			}
			if _, err := tlsutil.NewServer(tlsutil.ServerOptions{Certs: []tlsutil.CertFiles{{Cert: fe.TLS.Certs[0].Cert, Key: fe.TLS.Certs[0].Key}}}); err != nil {
				t.Errorf("certificate: %v", err)
			}
		})
	}
}

func TestHAProxyTLSConfigValid(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/haproxy"); err != nil {
			t.Fatal("haproxy is not installed: run scripts/deps.sh (make test does)")
		}
	}
	for kind, c := range testCerts(t) {
		t.Run(kind, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "haproxy.cfg")
			if err := os.WriteFile(path, []byte(haproxyTLSConfig("127.0.0.1:1", "127.0.0.1:2", c.Combined, haproxyMaxconn)), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(bin, "-c", "-f", path).CombinedOutput(); err != nil || bytes.Contains(out, []byte("WARNING")) {
				t.Errorf("haproxy -c: got %v: %s, want a valid config without warnings", err, out)
			}
		})
	}
}

// startTestTLSFront terminates TLS (mode implicit or starttls, as an IMAP
// server would: its own greeting, STARTTLS, OK) in front of the fake
// backend, whose greeting it passes on (implicit) or swallows (starttls).
// It stands in for a proxy in the TLS measurement tests.
func startTestTLSFront(t *testing.T, c benchCert, mode string) string {
	t.Helper()
	be := startTestBackend(t)
	pair, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	serve := func(raw net.Conn) {
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		if mode == tlsSTARTTLS {
			io.WriteString(raw, "* OK [CAPABILITY IMAP4rev1 STARTTLS] front\r\n")
			line, err := mailwire.ReadLine(bufio.NewReaderSize(raw, 64), maxLine)
			if err != nil || mailwire.TrimEOL(line) != "s STARTTLS" {
				return
			}
			io.WriteString(raw, "s OK Begin TLS negotiation now\r\n")
		}
		tc := tls.Server(raw, cfg)
		if tc.Handshake() != nil {
			return
		}
		up, err := net.Dial("tcp", be.Addr())
		if err != nil {
			return
		}
		defer up.Close()
		ur := bufio.NewReader(up)
		if mode == tlsSTARTTLS {
			if _, err := mailwire.ReadLine(ur, maxReplyLine); err != nil {
				return
			}
		}
		go io.Copy(up, tc)
		io.Copy(tc, ur)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

func TestMeasureTLS(t *testing.T) {
	certs := testCerts(t)
	for _, mode := range tlsModes {
		for _, resume := range []bool{false, true} {
			t.Run(fmt.Sprint(mode, " resume=", resume), func(t *testing.T) {
				addr := startTestTLSFront(t, certs[certECDSA], mode)
				r := measureTLS(addr, os.Getpid(), 2, 12, 20*time.Second, mode, resume)
				wantResumed := 0
				if resume {
					wantResumed = 12
				}
				if r.Done != 12 || r.Failed != 0 || r.Resumed != wantResumed || r.Version != "TLS 1.3" {
					t.Errorf("got %d done, %d failed (%s), %d resumed, %q; want 12 done, 0 failed, %d resumed, TLS 1.3", r.Done, r.Failed, r.FirstError, r.Resumed, r.Version, wantResumed)
				}
				if r.P50ms <= 0 || r.CPUus < 0 {
					t.Errorf("got p50 %v ms and %v µs CPU per handshake, want p50 above 0 and CPU not negative", r.P50ms, r.CPUus)
				}
			})
		}
	}
	// The CPU is read from /proc in clock ticks (10 ms): 12 handshakes may
	// fit in none, 300 full ones (client and server both in this process)
	// do not.
	addr := startTestTLSFront(t, certs[certECDSA], tlsModes[0])
	if r := measureTLS(addr, os.Getpid(), 2, 300, 60*time.Second, tlsModes[0], false); r.Done != 300 || r.CPUus <= 0 {
		t.Errorf("300 full handshakes: got %d done (%s), %v µs CPU per handshake; want 300 and above 0", r.Done, r.FirstError, r.CPUus)
	}
	// A server that does not speak TLS fails every operation.
	b := startTestBackend(t)
	if r := measureTLS(b.Addr(), 0, 1, 3, 10*time.Second, tlsImplicit, false); r.Done != 0 || r.Failed != 3 || !strings.Contains(r.FirstError, "TLS handshake") {
		t.Errorf("plaintext server: got %d done, %d failed, %q; want 0, 3, a handshake error", r.Done, r.Failed, r.FirstError)
	}
}

func TestIdleTLSSessions(t *testing.T) {
	addr := startTestTLSFront(t, testCerts(t)[certRSA], tlsImplicit)
	cfg := tlsClientConfig(nil)
	idle, err := measureIdleDial(func() (*client, error) { return dialLoginTLS(addr, cfg, "idle") }, os.Getpid(), 10, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Here: 10 TLS clients, 10 sessions of the front, its 10 connections
	// to the backend and their 10 sessions there.
	if idle.Sessions != 10 || idle.Failed != 0 || idle.FDs < 3.5 || idle.FDs > 4.5 {
		t.Errorf("got %d sessions, %d failed, %v fds each; want 10, 0, about 4", idle.Sessions, idle.Failed, idle.FDs)
	}
}

func TestTLSRatiosAndReport(t *testing.T) {
	run := func(path string, rate, cpu float64) TLSRun {
		return TLSRun{Cert: certECDSA, Mode: tlsImplicit, Session: sessionFull, Path: path, Done: 100, Resumed: 25,
			PerSecond: rate, CPUus: cpu, P50ms: 1, AllCPUus: []float64{cpu, 2 * cpu}}
	}
	rep := &TLSReport{Runs: []TLSRun{run(pathHAProxy, 1000, 400), run(pathMDIMAP, 800, 500)}}
	rep.Ratios, rep.Paired = tlsRatios(rep.Runs)
	k := "ecdsa implicit full md-imap/haproxy"
	if got := rep.Ratios[k]["proxy CPU µs/handshake"]; got != 1.25 {
		t.Errorf("CPU ratio: got %v, want 1.25", got)
	}
	if got := rep.Ratios[k]["handshakes/s"]; got != 0.8 {
		t.Errorf("rate ratio: got %v, want 0.8", got)
	}
	if _, ok := rep.Ratios[k]["resumed %"]; ok {
		t.Error("resumed % has a ratio, want none")
	}
	if got := rep.Paired[k]; !slices.Equal(got, []float64{1.25, 1.25}) {
		t.Errorf("paired: got %v, want [1.25 1.25]", got)
	}
	if _, ok := rep.Ratios["ecdsa implicit full md-tcp/haproxy"]; ok {
		t.Error("md-tcp/haproxy ratio without an md-tcp run")
	}
	var out bytes.Buffer
	printTLS(&out, rep)
	for _, want := range []string{"proxy CPU µs/handshake", "1.25", "resumed %", "25.0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestLoginCyclesOnDovecot(t *testing.T) {
	lab := dovecotlab.StartT(t, dovecotlab.Options{Instances: 1, Users: dovecotUsers})
	inst := lab.Instances[0]
	for _, tt := range []struct {
		name  string
		port  int
		cycle loginCycle
	}{
		{"imap", inst.Ports.IMAPDirect, imapCycle},
		{"pop3", inst.Ports.POP3Direct, pop3Cycle},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr := net.JoinHostPort(inst.Address, fmt.Sprint(tt.port))
			r := measureLogins(addr, 0, 2, 6, 30*time.Second, tt.cycle)
			if r.Done != 6 || r.Failed != 0 || r.P50ms <= 0 {
				t.Errorf("got %d done, %d failed (%s), p50 %v; want 6, 0, above 0", r.Done, r.Failed, r.FirstError, r.P50ms)
			}
			// The haproxy = yes port wants a PROXY header: every cycle fails.
			addr = net.JoinHostPort(inst.Address, fmt.Sprint(map[string]int{"imap": inst.Ports.IMAP, "pop3": inst.Ports.POP3}[tt.name]))
			if r := measureLogins(addr, 0, 1, 2, 30*time.Second, tt.cycle); r.Done != 0 || r.Failed != 2 {
				t.Errorf("without a PROXY header: got %d done, %d failed, want 0, 2", r.Done, r.Failed)
			}
		})
	}
}

func TestDovecotRatiosAndReport(t *testing.T) {
	run := func(path string, rate, cpu, p50 float64) LoginRun {
		return LoginRun{Target: targetDovecot, Proto: protoIMAP, Path: path, Done: 10, PerSecond: rate, CPUus: cpu, P50ms: p50, AllPerSecond: []float64{rate, rate / 2}}
	}
	par := []LoginRun{run(pathDirect, 1000, 0, 1), run(pathHAProxy, 900, 300, 1), run(pathMDProto, 700, 600, 1)}
	seq := []LoginRun{run(pathDirect, 500, 0, 1.0), run(pathHAProxy, 400, 300, 1.25), run(pathMDProto, 300, 600, 1.5)}
	ratios, paired := dovecotRatios(par, seq)
	checks := []struct {
		key, metric string
		want        float64
	}{
		{"dovecot imap md-proto/direct", "logins/s, N clients", 0.7},
		{"dovecot imap md-proto/haproxy", "proxy CPU µs/login, N clients", 2},
		{"dovecot imap md-proto/haproxy", "added p50 ms vs direct", 2},
		{"dovecot imap haproxy/direct", "login p50 ms, 1 client", 1.25},
	}
	for _, c := range checks {
		if got := ratios[c.key][c.metric]; got != c.want {
			t.Errorf("%s %s: got %v, want %v", c.key, c.metric, got, c.want)
		}
	}
	if got := paired["dovecot imap md-proto/direct"]; !slices.Equal(got, []float64{0.7, 0.7}) {
		t.Errorf("paired: got %v, want [0.7 0.7]", got)
	}
	var out bytes.Buffer
	printDovecot(&out, &DovecotReport{Parallel: par, Sequential: seq, Ratios: ratios, Paired: paired})
	for _, want := range []string{"added p50 ms vs direct", "0.50", "2.00"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestParseFlagsTLSAndDovecot(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-tls-clients", "4"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.tlsN != 300 || o.tlsRepeat != 1 || o.tlsTime != time.Second || o.tlsClients != 4 || o.dovecotRepeat != 1 || o.dovecotTime != time.Second {
		t.Errorf("quick: got tls n=%d repeat=%d time=%v clients=%d, dovecot repeat=%d time=%v", o.tlsN, o.tlsRepeat, o.tlsTime, o.tlsClients, o.dovecotRepeat, o.dovecotTime)
	}
	for _, args := range [][]string{{"-tls-repeat", "0"}, {"-tls-n", "-1"}, {"-dovecot-clients", "0"}, {"-suites", "tls,pop"}} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%q: got no error, want one", args)
		}
	}
	o, err = parseFlags([]string{"-suites", "tls,dovecot"}, io.Discard)
	if err != nil || !slices.Equal(o.suites, []string{suiteTLS, suiteDovecot}) {
		t.Errorf("got suites %q, %v; want tls, dovecot", o.suites, err)
	}
}

func TestPOP3FakeCommands(t *testing.T) {
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret"))
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"user pass stat quit", []string{"USER alice\r\n", "PASS secret\r\n", "STAT\r\n", "QUIT\r\n", "NOOP\r\n"}, []string{"+OK", "+OK Logged in", "+OK 0 0", "+OK bye"}},
		{"pass first", []string{"PASS secret\r\n"}, []string{"-ERR USER first"}},
		{"auth plain with initial response", []string{"AUTH PLAIN " + plain + "\r\n"}, []string{"+OK Logged in"}},
		{"auth plain after continuation", []string{"AUTH PLAIN\r\n", plain + "\r\n"}, []string{"+ ", "+OK Logged in"}},
		{"auth other", []string{"AUTH XOAUTH2 abc\r\n"}, []string{"-ERR unsupported mechanism"}},
		{"capa", []string{"CAPA\r\n"}, []string{"+OK", "USER", "SASL PLAIN", "."}},
		{"unknown", []string{"FROB\r\n"}, []string{"-ERR unknown command"}},
	}
	b, err := startPOP3Backend("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", b.Addr(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cl := &client{c: c, r: bufio.NewReader(c)}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if line, err := cl.readLine(); err != nil || line+"\r\n" != pop3Greeting {
				t.Fatalf("greeting: got %q, %v", line, err)
			}
			io.WriteString(c, strings.Join(tt.lines, ""))
			var got []string
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			for range 20 {
				line, err := cl.readLine()
				if err != nil {
					break
				}
				got = append(got, line)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
	if got := b.Logins(); got != 3 {
		t.Errorf("got %d logins, want 3", got)
	}
}

func TestLoginCyclesOnFakes(t *testing.T) {
	tgt, err := startLoginTarget(targetFake, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tgt.close)
	for proto, cycle := range map[string]loginCycle{protoIMAP: imapCycle, protoPOP3: pop3Cycle} {
		r := measureLogins(tgt.direct[proto], 0, 3, 30, 20*time.Second, cycle)
		if r.Done != 30 || r.Failed != 0 || r.P50ms <= 0 {
			t.Errorf("%s: got %d done, %d failed (%s), p50 %v; want 30, 0, above 0", proto, r.Done, r.Failed, r.FirstError, r.P50ms)
		}
	}
	// Each cycle against the other protocol's server fails.
	if r := measureLogins(tgt.direct[protoPOP3], 0, 1, 2, 10*time.Second, imapCycle); r.Done != 0 || r.Failed != 2 {
		t.Errorf("IMAP to POP3: got %d done, %d failed; want 0, 2", r.Done, r.Failed)
	}
	if r := measureLogins(tgt.direct[protoIMAP], 0, 1, 2, 10*time.Second, pop3Cycle); r.Done != 0 || r.Failed != 2 {
		t.Errorf("POP3 to IMAP: got %d done, %d failed; want 0, 2", r.Done, r.Failed)
	}
}

func FuzzPOP3Reply(f *testing.F) {
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret"))
	for _, s := range []string{"USER alice", "PASS x", "AUTH PLAIN " + plain, "AUTH PLAIN", "AUTH plain !!", "CAPA", "QUIT", "stat", ""} {
		f.Add(s, plain)
	}
	f.Fuzz(func(t *testing.T, line, next string) {
		b := &backend{conns: make(map[net.Conn]struct{}), pop3: true}
		user := ""
		br := bufio.NewReader(strings.NewReader(next + "\r\n"))
		reply, quit := b.pop3Reply(br, io.Discard, line, &user)
		if reply == "" && quit {
			return // the AUTH continuation had no answer
		}
		if !strings.HasSuffix(reply, "\r\n") || !strings.HasPrefix(reply, "+OK") && !strings.HasPrefix(reply, "-ERR") {
			t.Errorf("%q: got reply %q, want a +OK or -ERR line", line, reply)
		}
		if strings.HasPrefix(reply, "+OK Logged in") && user == "" {
			t.Errorf("%q: logged in without a user", line)
		}
	})
}
