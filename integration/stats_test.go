package integration

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestStatsViews runs maildirector with a [stats] listener in front of two
// real Dovecot servers, makes logins (one rejected) and an LMTP delivery
// (one recipient unknown), and reads the views with curl: the CSV has
// HAProxy's own column names (taken from a real HAProxy's "show stat") in
// HAProxy's places, the JSON and the CSV count what happened, and the
// metrics parse with Prometheus's own text parser. Then one Dovecot stops
// and the views show it down, with the check's reason.
func TestStatsViews(t *testing.T) {
	fes := append(lmtpFrontends(""), frontendSpec{Name: "imap", Protocol: "imap", TLS: "starttls"})
	e := startEnv(t, setupSpec{Frontends: fes, Check: "imap", StatsOn: true, Stats: `refresh = "500ms"`})
	statsURL := "http://" + e.addrs["stats"]

	curl(t, "--ssl-reqd", "--user", "user001:pass", "imap://"+e.addrs["imap"]+"/")
	if out, err := exec.Command("curl", "--silent", "--insecure", "--max-time", "20", "--interface", clientIP.String(),
		"--ssl-reqd", "--user", "user001:wrong", "imap://"+e.addrs["imap"]+"/").CombinedOutput(); err == nil {
		t.Fatalf("a wrong password logged in: %s", out)
	}
	m := lmtpDial(t, e.addrs["lmtp"])
	replies, err := m.send("sender@example.org", []string{lmtpAddr("user002"), lmtpAddr("nosuchuser")}, lmtpMessage("stats", 100))
	m.close()
	if err != nil || len(replies) != 2 || replies[0].Code != 250 || replies[1].Code != 550 {
		t.Fatalf("LMTP replies %v, err %v; want 250 and 550", replies, err)
	}

	// The CSV: HAProxy's header for the shared columns, then ours.
	recs := statsCSV(t, statsURL+"/stats;csv")
	want := haproxyCSVHeader(t)
	ours := recs[0]
	ours[0] = strings.TrimPrefix(ours[0], "# ")
	shared := 0
	for i, name := range ours {
		if i < len(want) && name == want[i] {
			shared++
			continue
		}
		if i < len(want) && slicesIndex(want, name) >= 0 {
			t.Errorf("CSV column %d is %q, which HAProxy has at %d", i, name, slicesIndex(want, name))
		}
	}
	if shared < 70 {
		t.Errorf("only %d columns share HAProxy's name and place; want HAProxy's columns up to algo first\nours: %v\nhaproxy: %v", shared, ours, want)
	}
	row := func(px, sv string) map[string]string {
		for _, r := range recs[1:] {
			if r[0] == px && r[1] == sv {
				m := map[string]string{}
				for i, c := range ours {
					if i < len(r) {
						m[c] = r[i]
					}
				}
				return m
			}
		}
		t.Fatalf("no CSV row %s/%s in %v", px, sv, recs)
		return nil
	}
	if r := row("imap", "FRONTEND"); r["logins_ok"] != "1" || r["logins_rejected"] != "1" {
		t.Errorf("imap frontend row: logins_ok %s logins_rejected %s; want 1 and 1", r["logins_ok"], r["logins_rejected"])
	}
	if r := row("lmtp", "FRONTEND"); r["lmtp_2xx"] != "1" || r["lmtp_5xx"] != "1" {
		t.Errorf("lmtp frontend row: 2xx %s 5xx %s; want 1 and 1", r["lmtp_2xx"], r["lmtp_5xx"])
	}
	for _, s := range []string{"dovecot1", "dovecot2"} {
		if r := row("dovecot", s); r["status"] != "UP" || r["check_status"] != "L7OK" {
			t.Errorf("%s: status %q check_status %q, want UP and L7OK", s, r["status"], r["check_status"])
		}
	}

	// The JSON says the same.
	var snap struct {
		Frontends []struct {
			Name       string            `json:"name"`
			Logins     map[string]uint64 `json:"logins"`
			Recipients map[string]uint64 `json:"lmtp_recipients"`
			BytesIn    int64             `json:"bin"`
		} `json:"frontends"`
	}
	if err := json.Unmarshal([]byte(curl(t, statsURL+"/stats.json")), &snap); err != nil {
		t.Fatal(err)
	}
	for _, f := range snap.Frontends {
		switch f.Name {
		case "imap":
			if f.Logins["ok"] != 1 || f.Logins["rejected"] != 1 || f.BytesIn == 0 {
				t.Errorf("json imap: %+v", f)
			}
		case "lmtp":
			if f.Recipients["2xx"] != 1 || f.Recipients["5xx"] != 1 {
				t.Errorf("json lmtp: %+v", f)
			}
		}
	}

	// The metrics parse with Prometheus's parser and name no user.
	body := curl(t, statsURL+"/metrics")
	fams, err := parseMetrics(body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	if v := metricValue(fams, "maildirector_logins_total", map[string]string{"frontend": "imap", "result": "rejected"}); v != 1 {
		t.Errorf("maildirector_logins_total{frontend=imap,result=rejected} = %v, want 1", v)
	}
	if v := metricValue(fams, "maildirector_server_up", map[string]string{"server": "dovecot1"}); v != 1 {
		t.Errorf("maildirector_server_up{server=dovecot1} = %v, want 1", v)
	}
	if f := fams["maildirector_server_check_duration_seconds"]; f == nil || len(f.GetMetric()) != 2 {
		t.Errorf("check duration histograms: %v, want one per server", f)
	}
	for _, bad := range []string{"user001", "user002", clientIP.String()} {
		if strings.Contains(body, bad) {
			t.Errorf("/metrics names %q: labels must never be users or clients", bad)
		}
	}

	// One Dovecot stops: the views show it down with the check's reason.
	if err := e.instanceOf("dovecot2").Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "dovecot2 DOWN in the CSV with the check's reason", func() bool {
		recs = statsCSV(t, statsURL+"/stats.csv")
		r := row("dovecot", "dovecot2")
		return r["status"] == "DOWN" && r["check_status"] == "L4CON" && strings.Contains(r["reason"], "imap:") && r["chkdown"] == "1"
	})
	fams, err = parseMetrics(curl(t, statsURL+"/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	if v := metricValue(fams, "maildirector_server_up", map[string]string{"server": "dovecot2"}); v != 0 {
		t.Errorf("maildirector_server_up{server=dovecot2} = %v after it stopped, want 0", v)
	}
}

// parseMetrics parses the Prometheus text format with Prometheus's parser.
func parseMetrics(body string) (map[string]*dtoFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(body))
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func statsCSV(t *testing.T, url string) [][]string {
	t.Helper()
	r := csv.NewReader(strings.NewReader(curl(t, url)))
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	if err != nil || len(recs) < 2 {
		t.Fatalf("CSV from %s: %v (%d lines)", url, err, len(recs))
	}
	return recs
}

// metricValue is the value of the one sample of family name whose labels
// include want; -1 when there is none.
func metricValue(fams map[string]*dtoFamily, name string, want map[string]string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue()
		}
	}
	return -1
}

// haproxyCSVHeader runs a real HAProxy (installed by scripts/deps.sh) and
// returns the columns of its "show stat" header.
func haproxyCSVHeader(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "admin.sock")
	cfg := fmt.Sprintf(`global
	stats socket %s mode 600 level admin
defaults
	mode tcp
	timeout connect 1s
	timeout client 5s
	timeout server 5s
frontend fe
	bind 127.0.0.1:%d
	default_backend be
backend be
	server s1 127.0.0.1:9
`, sock, freePort(t))
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("haproxy", "-db", "-f", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var c net.Conn
	var err error
	for range 100 {
		if c, err = net.Dial("unix", sock); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("haproxy stats socket: %v\n%s", err, stderr.String())
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "show stat\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("show stat: %v", err)
	}
	cols := strings.Split(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(line), "# "), ","), ",")
	if len(cols) < 77 || cols[0] != "pxname" {
		t.Fatalf("haproxy's header: %q", line)
	}
	return cols
}
