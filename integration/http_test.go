package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/maildirector/maildirector/internal/nginxlab"
)

// httpEnv is maildirector's http frontend "objects" in front of a lab of
// real nginx object stores (backend "ring", roundrobin, http checks), with
// a stats listener and the log as JSON lines.
type httpEnv struct {
	t     *testing.T
	lab   *nginxlab.Lab
	addrs map[string]string // "objects", "stats"
	md    *process
}

func startHTTPEnv(t *testing.T, instances int, frontendExtra string) *httpEnv {
	t.Helper()
	e := &httpEnv{t: t, lab: nginxlab.StartT(t, nginxlab.Options{Instances: instances}), addrs: map[string]string{}}
	e.addrs["objects"] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	e.addrs["stats"] = fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\nlog_format = \"json\"\nshutdown_grace = \"2s\"\n\n")
	fmt.Fprintf(&b, "[frontend.objects]\nprotocol = \"http\"\nbind = [%q]\nbackend = \"ring\"\n%s\n", e.addrs["objects"], frontendExtra)
	fmt.Fprintf(&b, "[stats]\nbind = %q\nrefresh = \"500ms\"\n\n", e.addrs["stats"])
	b.WriteString("[backend.ring]\nbalance = \"roundrobin\"\nretries = 3\n")
	b.WriteString("[backend.ring.check]\ntype = \"http\"\nhttp_path = \"/health\"\nexpect_status = \"200-399\"\ninter = \"300ms\"\nrise = 2\nfall = 2\ntimeout = \"1s\"\n\n")
	for _, in := range e.lab.Instances {
		fmt.Fprintf(&b, "[[backend.ring.server]]\nname = %q\naddress = %q\n", in.Name, in.Addr)
	}
	cfg := filepath.Join(t.TempDir(), "maildirector.toml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	e.md = startProcess(t, cfg, e.addrs)
	return e
}

// curlHTTP runs curl against the objects frontend with the three
// X-Dovecot headers and returns the status it got and what it wrote to
// stdout (-w's format).
func (e *httpEnv) curlHTTP(hdr dovecotHeaders, args ...string) (int, string) {
	e.t.Helper()
	base := []string{"--silent", "--show-error", "--max-time", "120", "--interface", clientIP.String(),
		"-H", "X-Dovecot-Reason: " + hdr.reason, "-H", "X-Dovecot-Username: " + hdr.user, "-H", "X-Dovecot-Session-Id: " + hdr.session,
		"-w", "\n%{http_code}"}
	out, err := exec.Command("curl", append(base, args...)...).Output()
	if err != nil {
		e.t.Fatalf("curl %v: %v", args, err)
	}
	s := strings.TrimRight(string(out), "\n")
	i := strings.LastIndexByte(s, '\n')
	code, err := strconv.Atoi(s[i+1:])
	if err != nil {
		e.t.Fatalf("curl %v: no status in %q", args, out)
	}
	return code, s[:max(i, 0)]
}

type dovecotHeaders struct{ reason, user, session string }

func (e *httpEnv) url(key string) string { return "http://" + e.addrs["objects"] + "/ring/" + key }

// accessLines returns maildirector's access log lines (msg "http request").
func (e *httpEnv) accessLines() []map[string]any {
	e.t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(e.md.log.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "http request" {
			out = append(out, m)
		}
	}
	return out
}

// snapshot reads /stats.json.
func (e *httpEnv) snapshot() map[string]any {
	e.t.Helper()
	resp, err := http.Get("http://" + e.addrs["stats"] + "/stats.json")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

// serverStatus is a ring server's status in /stats.json.
func (e *httpEnv) serverStatus(name string) string {
	for _, b := range e.snapshot()["backends"].([]any) {
		for _, s := range b.(map[string]any)["servers"].([]any) {
			if sv := s.(map[string]any); sv["name"] == name {
				return sv["status"].(string)
			}
		}
	}
	return ""
}

func sha(b []byte) [32]byte { return sha256.Sum256(b) }

// TestHTTPObjectStorage: curl PUTs objects from 0 bytes to 100 MiB
// through maildirector to three real nginx object stores, GETs them back
// whole and in part (Range), HEADs and DELETEs them, each with Dovecot's
// three X-Dovecot headers: every byte comes back (sha256), each request has
// its access line with the headers as sent, cut to their capture lengths,
// and the statistics count the requests by X-Dovecot-Reason in the JSON and
// the metrics.
func TestHTTPObjectStorage(t *testing.T) {
	e := startHTTPEnv(t, 3, "[frontend.objects.http]\nforwardfor = true\n")
	dir := t.TempDir()
	sizes := []int{0, 1, 4096, 1<<20 + 7, 100 << 20}
	user := "alice@example.org"
	session := "s" + strings.Repeat("0123456789", 8)                       // 81 bytes: logged cut to 70
	longReason := "Mailbox INBOX: Saving mail: " + strings.Repeat("x", 30) // 58 bytes: cut to 40
	reasons := map[string]string{
		"PUT": longReason, "GET": "Mailbox INBOX: Reading mail", "RANGE": "Mailbox INBOX: Reading header",
		"HEAD": "Mailbox INBOX: Checking size", "DELETE": "Mailbox INBOX: Expunge",
	}
	want := map[string]int{} // requests by cut reason
	count := func(op string) { want[cut(reasons[op], 40)]++ }
	for i, size := range sizes {
		obj := make([]byte, size)
		rand.Read(obj)
		src := filepath.Join(dir, fmt.Sprintf("obj%d", i))
		if err := os.WriteFile(src, obj, 0o644); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("%s/obj-%d", user, size)
		h := func(op string) dovecotHeaders { return dovecotHeaders{reasons[op], user, session} }

		if code, _ := e.curlHTTP(h("PUT"), "-T", src, e.url(key)); code != http.StatusCreated {
			t.Fatalf("PUT of %d bytes: got %d, want 201", size, code)
		}
		count("PUT")
		dst := filepath.Join(dir, fmt.Sprintf("got%d", i))
		if code, _ := e.curlHTTP(h("GET"), "-o", dst, e.url(key)); code != http.StatusOK {
			t.Fatalf("GET of %d bytes: got %d, want 200", size, code)
		}
		count("GET")
		got, err := os.ReadFile(dst)
		if err != nil || sha(got) != sha(obj) {
			t.Fatalf("GET of %d bytes: got %d bytes, not the object (sha256)", size, len(got))
		}
		if size > 2000 {
			code, _ := e.curlHTTP(h("RANGE"), "-r", "1000-1999", "-o", dst, e.url(key))
			count("RANGE")
			got, _ := os.ReadFile(dst)
			if code != http.StatusPartialContent || !bytes.Equal(got, obj[1000:2000]) {
				t.Fatalf("GET of bytes 1000-1999 of %d: got %d with %d bytes", size, code, len(got))
			}
		}
		code, out := e.curlHTTP(h("HEAD"), "--head", e.url(key))
		count("HEAD")
		if code != http.StatusOK || !strings.Contains(strings.ToLower(out), fmt.Sprintf("content-length: %d\r", size)) {
			t.Fatalf("HEAD of %d bytes: got %d\n%s", size, code, out)
		}
		if code, _ := e.curlHTTP(h("DELETE"), "-X", "DELETE", e.url(key)); code != http.StatusNoContent {
			t.Fatalf("DELETE: got %d, want 204", code)
		}
		count("DELETE")
		if _, err := os.Stat(filepath.Join(e.lab.Data, "ring", key)); !os.IsNotExist(err) {
			t.Fatalf("object still stored after DELETE: %v", err)
		}
	}

	// The access log: one line per request, the headers as sent, cut.
	var lines []map[string]any
	total := 0
	for _, n := range want {
		total += n
	}
	eventually(t, "every request's access line", func() bool { lines = e.accessLines(); return len(lines) == total })
	for _, l := range lines {
		hdr, _ := l["hdr"].(map[string]any)
		if hdr["X-Dovecot-Username"] != user || hdr["X-Dovecot-Session-Id"] != session[:70] || want[hdr["X-Dovecot-Reason"].(string)] == 0 {
			t.Errorf("access line headers: got %v, want the sent ones cut to 40/40/70", hdr)
		}
		if l["termination"] != "--" || l["remote"] == nil || l["server"] == "" {
			t.Errorf("access line: got %v, want a completed request with client and server", l)
		}
	}
	if hdr := lines[0]["hdr"].(map[string]any); hdr["X-Dovecot-Reason"] != longReason[:40] || lines[0]["method"] != "PUT" {
		t.Errorf("first line: got %v %v, want the PUT's reason cut to 40 bytes %q", lines[0]["method"], hdr["X-Dovecot-Reason"], longReason[:40])
	}

	// The statistics, by reason: JSON and metrics.
	got := map[string]int{}
	for _, r := range e.snapshot()["http"].([]any) {
		row := r.(map[string]any)
		got[row["reason"].(string)] = int(row["req_tot"].(float64))
	}
	for reason, n := range want {
		if got[reason] != n {
			t.Errorf("stats.json requests of %q: got %d, want %d (all: %v)", reason, got[reason], n, got)
		}
	}
	resp, err := http.Get("http://" + e.addrs["stats"] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	metric := 0.0
	for _, m := range fams["maildirector_http_requests_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["reason"] == reasons["DELETE"] && labels["code"] == "2xx" && labels["frontend"] == "objects" {
			metric = m.GetCounter().GetValue()
		}
	}
	if metric != float64(want[reasons["DELETE"]]) {
		t.Errorf("maildirector_http_requests_total{reason=%q,code=\"2xx\"}: got %v, want %d", reasons["DELETE"], metric, want[reasons["DELETE"]])
	}
}

func cut(s string, n int) string { return s[:min(len(s), n)] }

// TestHTTPServerDownRedispatch: with one of three nginx object stores
// stopped, every request still succeeds (the ones sent to the stopped one
// are redispatched), its check marks it down, and once it is back it is
// marked up and gets requests again.
func TestHTTPServerDownRedispatch(t *testing.T) {
	e := startHTTPEnv(t, 3, "")
	h := dovecotHeaders{"Mailbox INBOX: Reading mail", "bob@example.org", "sess-1"}
	if code, _ := e.curlHTTP(h, "--data-binary", "hello object", "-X", "PUT", e.url("bob/obj")); code != http.StatusCreated {
		t.Fatalf("PUT: got %d", code)
	}
	down := e.lab.Instances[1]
	if err := down.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := range 12 {
		if code, body := e.curlHTTP(h, e.url("bob/obj")); code != http.StatusOK || body != "hello object" {
			t.Fatalf("GET %d with %s stopped: got %d %q, want 200 and the object", i, down.Name, code, body)
		}
	}
	redispatched := 0
	for _, l := range e.accessLines() {
		if l["method"] == "GET" && l["retries"].(float64) > 0 {
			redispatched++
			if l["server"] == down.Name {
				t.Errorf("a redispatched request names the stopped server: %v", l)
			}
		}
	}
	if redispatched == 0 {
		t.Errorf("no GET was redispatched; want those sent to %s first", down.Name)
	}
	eventually(t, down.Name+" marked down", func() bool { return e.serverStatus(down.Name) == "DOWN" })
	if err := down.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, down.Name+" marked up", func() bool { return e.serverStatus(down.Name) == "UP" })
	before := len(e.accessLines())
	for range 6 {
		if code, _ := e.curlHTTP(h, e.url("bob/obj")); code != http.StatusOK {
			t.Fatalf("GET after %s came back: got %d", down.Name, code)
		}
	}
	served := 0
	for _, l := range e.accessLines()[before:] {
		if l["server"] == down.Name {
			served++
		}
	}
	if served == 0 {
		t.Errorf("%s got no request after it came back (roundrobin over 3)", down.Name)
	}
}

// TestHTTPMemoryFlat: a 1 GiB PUT and a 1 GiB GET stream through
// maildirector without growing it: its resident memory (VmRSS, sampled
// while they run) stays within a few MiB of what it was before.
func TestHTTPMemoryFlat(t *testing.T) {
	e := startHTTPEnv(t, 1, "")
	h := dovecotHeaders{"Mailbox INBOX: Saving mail", "carol@example.org", "sess-2"}
	// A first transfer of each kind warms the pools and buffers.
	warm := filepath.Join(t.TempDir(), "warm")
	os.WriteFile(warm, bytes.Repeat([]byte("w"), 8<<20), 0o644)
	e.curlHTTP(h, "-T", warm, e.url("carol/warm"))
	e.curlHTTP(h, "-o", "/dev/null", e.url("carol/warm"))
	time.Sleep(200 * time.Millisecond)
	base := vmRSS(t, e.md.cmd.Process.Pid)

	const size = 1 << 30
	peak := samplePeak(t, e.md.cmd.Process.Pid, func() {
		cmd := exec.Command("curl", "--silent", "--show-error", "--max-time", "300", "-H", "X-Dovecot-Reason: "+h.reason,
			"-T", "-", "-w", "%{http_code}", e.url("carol/big"))
		cmd.Stdin = io.LimitReader(zeros{}, size)
		out, err := cmd.Output()
		if err != nil || string(out) != "201" {
			t.Fatalf("1 GiB PUT: got %q, %v", out, err)
		}
		out, err = exec.Command("curl", "--silent", "--show-error", "--max-time", "300", "-o", "/dev/null",
			"-w", "%{http_code} %{size_download}", e.url("carol/big")).Output()
		if err != nil || string(out) != fmt.Sprintf("200 %d", size) {
			t.Fatalf("1 GiB GET: got %q, %v", out, err)
		}
	})
	t.Logf("maildirector VmRSS: %d KiB before, %d KiB at most during a 1 GiB PUT and GET", base/1024, peak/1024)
	if grew := peak - base; grew > 16<<20 {
		t.Errorf("VmRSS grew by %d KiB during 1 GiB transfers; want it flat (within 16 MiB)", grew/1024)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// vmRSS reads a process's resident memory in bytes from /proc.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb * 1024
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// samplePeak runs f while it samples pid's VmRSS every 20ms, and returns
// the highest value seen.
func samplePeak(t *testing.T, pid int, f func()) int64 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var peak int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss := vmRSS(t, pid); rss > peak {
				peak = rss
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	f()
	cancel()
	wg.Wait()
	return peak
}
