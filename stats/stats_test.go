package stats

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/maildirector/maildirector/checks"
	"github.com/maildirector/maildirector/director"
	"github.com/maildirector/maildirector/proxy"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// fakeSource is a Source with one frontend and one backend of two servers.
type fakeSource struct {
	dir      *director.Director
	check    *checks.Checker // s1's, when set
	sessions []proxy.Info
}

func (f *fakeSource) Frontends() []FrontendInfo {
	return []FrontendInfo{{Name: "imap", Protocol: "imap", Backend: "dovecot", Bind: []string{"127.0.0.1:143"}, MaxConn: 100}}
}

func (f *fakeSource) Backends() []BackendInfo {
	return []BackendInfo{{Name: "dovecot", Director: f.dir, Servers: []ServerInfo{
		{Name: "s1", Address: "10.0.0.1:143", Check: f.check, CheckType: "imap"}, {Name: "s2", Address: "10.0.0.2:143"},
	}}}
}

func (f *fakeSource) Sessions() []proxy.Info { return f.sessions }

func newFake(t *testing.T) (*Stats, *fakeSource) {
	t.Helper()
	d, err := director.New(director.Options{Name: "dovecot", Servers: []director.ServerOptions{{Name: "s1", Weight: 100}, {Name: "s2", Weight: 50}}, ErrorLimit: 1})
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{dir: d}
	s := New(Options{Version: "test"})
	s.SetSource(src)
	return s, src
}

// TestSnapshotCounts drives the Recorder and the director as sessions do
// and checks what the snapshot says.
func TestSnapshotCounts(t *testing.T) {
	s, src := newFake(t)
	fe := s.Frontend("imap")
	// Two sessions: one ends on TLS with bytes on s1, one stays live.
	fe.SessionStarted()
	fe.SessionStarted()
	fe.Login(proxy.LoginOK)
	fe.Login(proxy.LoginRejected)
	fe.Login(proxy.LoginRejected)
	fe.Login(proxy.LoginNoServer)
	fe.SessionEnded(proxy.Info{Frontend: "imap", Backend: "dovecot", Server: "s1", TLS: true, BytesIn: 100, BytesOut: 1000}, "client closed")
	src.sessions = []proxy.Info{{Frontend: "imap", Backend: "dovecot", Server: "s1", BytesIn: 5, BytesOut: 7, Remote: netip.MustParseAddrPort("192.0.2.1:5000")}}
	l, err := src.dir.Pick(director.Request{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	l.Established()
	l2, _ := src.dir.Pick(director.Request{User: "bob", Exclude: []string{l.Server}})
	l2.Failed(errors.New("refused")) // error limit 1: down

	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	f := snap.Frontends[0]
	if f.Cur != 1 || f.Max != 2 || f.Total != 2 || f.Limit != 100 {
		t.Errorf("sessions: cur %d max %d total %d limit %d, want 1 2 2 100", f.Cur, f.Max, f.Total, f.Limit)
	}
	if f.BytesIn != 105 || f.BytesOut != 1007 {
		t.Errorf("bytes: %d/%d, want the ended session's plus the live one's, 105/1007", f.BytesIn, f.BytesOut)
	}
	if f.TLS != 1 || f.TLSShare != 0.5 {
		t.Errorf("tls: %d sessions, share %v; want 1 and 0.5", f.TLS, f.TLSShare)
	}
	if f.Logins["ok"] != 1 || f.Logins["rejected"] != 2 || f.Logins["no_server"] != 1 || f.Logins["temp_fail"] != 0 {
		t.Errorf("logins: %v", f.Logins)
	}
	if f.Ends["client closed"] != 1 {
		t.Errorf("ends: %v", f.Ends)
	}
	if f.Recipients != nil {
		t.Errorf("an IMAP frontend has LMTP recipients: %v", f.Recipients)
	}
	b := snap.Backends[0]
	var s1, s2 ServerSnapshot
	for _, sv := range b.Servers {
		switch sv.Name {
		case "s1":
			s1 = sv
		case "s2":
			s2 = sv
		}
	}
	up, down := s1, s2
	if l.Server == "s2" {
		up, down = s2, s1
	}
	if up.Status != "no check" || up.Cur != 1 || up.Assigned != 1 {
		t.Errorf("%s: status %q cur %d assigned %d, want no check, 1, 1", up.Name, up.Status, up.Cur, up.Assigned)
	}
	if down.Status != "DOWN" || down.Errors != 1 || down.Passive != 1 || !strings.Contains(down.Reason, "refused") {
		t.Errorf("%s: status %q errors %d passive %d reason %q; want DOWN after a failure with error_limit 1", down.Name, down.Status, down.Errors, down.Passive, down.Reason)
	}
	if s1.BytesIn != 105 || s1.BytesOut != 1007 {
		t.Errorf("s1 bytes %d/%d, want 105/1007", s1.BytesIn, s1.BytesOut)
	}
	if b.Status != "UP" || b.Active != 1 || b.Cur != 1 {
		t.Errorf("backend: status %q act %d cur %d, want UP 1 1", b.Status, b.Active, b.Cur)
	}
}

func TestServerStatusNames(t *testing.T) {
	s, src := newFake(t)
	src.dir.SetAdmin("s1", director.AdminDrain)
	src.dir.SetAdmin("s2", director.AdminMaint)
	snap, _ := s.Snapshot()
	got := map[string]string{}
	for _, sv := range snap.Backends[0].Servers {
		got[sv.Name] = sv.Status
	}
	if got["s1"] != "DRAIN" || got["s2"] != "MAINT" {
		t.Errorf("statuses %v, want s1 DRAIN, s2 MAINT", got)
	}
	if snap.Backends[0].Status != "DOWN" {
		t.Errorf("backend with one draining and one maint server is %q, want DOWN (no server takes new users)", snap.Backends[0].Status)
	}
}

func TestRecipientsByClass(t *testing.T) {
	s := New(Options{})
	f := s.Frontend("lmtp")
	for _, c := range []int{250, 250, 451, 550, 552} {
		f.Recipient(c)
	}
	if f.rcpt[0].Load() != 2 || f.rcpt[1].Load() != 1 || f.rcpt[2].Load() != 2 {
		t.Errorf("2xx %d 4xx %d 5xx %d, want 2 1 2", f.rcpt[0].Load(), f.rcpt[1].Load(), f.rcpt[2].Load())
	}
}

func TestCheckCode(t *testing.T) {
	timeout := &checks.CheckError{Step: "reading greeting", Err: errDeadline{}}
	for _, tt := range []struct {
		typ  checks.Type
		r    checks.Result
		want string
	}{
		{checks.TypeIMAP, checks.Result{OK: true}, "L7OK"},
		{checks.TypeTCP, checks.Result{OK: true}, "L4OK"},
		{checks.TypeIMAP, checks.Result{Err: &checks.CheckError{Step: "connecting", Err: errors.New("refused")}}, "L4CON"},
		{checks.TypeIMAP, checks.Result{Err: &checks.CheckError{Step: "connecting", Err: errDeadline{}}}, "L4TOUT"},
		{checks.TypeIMAP, checks.Result{Err: &checks.CheckError{Step: "in TLS handshake", Err: errors.New("bad cert")}}, "L6RSP"},
		{checks.TypeIMAP, checks.Result{Err: timeout}, "L7TOUT"},
		{checks.TypeIMAP, checks.Result{Err: &checks.CheckError{Step: "reading LOGIN reply", Err: checks.ErrUnexpectedReply}}, "L7RSP"},
	} {
		if got := checkCode(tt.typ, tt.r); got != tt.want {
			t.Errorf("checkCode(%v, %+v) = %s, want %s", tt.typ, tt.r.Err, got, tt.want)
		}
	}
}

// errDeadline is a net.Error timeout.
type errDeadline struct{}

func (errDeadline) Error() string   { return "i/o timeout" }
func (errDeadline) Timeout() bool   { return true }
func (errDeadline) Temporary() bool { return true }

func TestCheckHistogram(t *testing.T) {
	s := New(Options{})
	sv := s.Server("b", "s")
	sv.CheckResult(checks.TypeIMAP, checks.Result{OK: true, Latency: 3 * time.Millisecond})
	sv.CheckResult(checks.TypeIMAP, checks.Result{OK: false, Latency: 20 * time.Second})
	m := sv.histogram("b", "s", "imap")
	var out = new(dtoMetric)
	if err := m.Write(&out.Metric); err != nil {
		t.Fatal(err)
	}
	h := out.Metric.GetHistogram()
	if h.GetSampleCount() != 2 {
		t.Errorf("count %d, want 2", h.GetSampleCount())
	}
	for _, b := range h.GetBucket() {
		want := uint64(0)
		if b.GetUpperBound() >= 0.005 {
			want = 1 // 3ms; the 20s one is past every bucket
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if sv.chkFail.Load() != 1 {
		t.Errorf("chkfail %d, want 1", sv.chkFail.Load())
	}
}

// TestViews serves the snapshot and checks each view: the CSV has
// HAProxy's columns first and one row per frontend, server and backend;
// the JSON decodes; the metrics parse with Prometheus's own parser and
// carry no user or client address.
func TestViews(t *testing.T) {
	s, src := newFake(t)
	fe := s.Frontend("imap")
	fe.SessionStarted()
	fe.Login(proxy.LoginOK)
	src.sessions = []proxy.Info{{Frontend: "imap", Backend: "dovecot", Server: "s1", User: "alice@example.org", Remote: netip.MustParseAddrPort("192.0.2.7:5000")}}
	ck, err := checks.New(checks.Options{Server: "s1", Type: checks.TypeIMAP, Address: "10.0.0.1:143"})
	if err != nil {
		t.Fatal(err)
	}
	src.check = ck
	s.Server("dovecot", "s1").CheckResult(checks.TypeIMAP, checks.Result{OK: true, Latency: time.Millisecond})
	srv := httptest.NewServer(s.Handler(HandlerOptions{}))
	defer srv.Close()

	get := func(path string) []byte {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		return b.Bytes()
	}
	for _, path := range []string{"/stats.csv", "/stats;csv"} {
		recs, err := csv.NewReader(bytes.NewReader(get(path))).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if len(recs) != 1+1+2+1 {
			t.Fatalf("%s: %d lines, want a header, a frontend, two servers and a backend", path, len(recs))
		}
		if recs[0][0] != "# pxname" || recs[0][17] != "status" || recs[0][len(haproxyColumns)] != "protocol" {
			t.Errorf("%s: header %v", path, recs[0][:20])
		}
		col := map[string]int{}
		for i, c := range recs[0] {
			col[strings.TrimPrefix(c, "# ")] = i
		}
		if recs[1][col["svname"]] != "FRONTEND" || recs[1][col["scur"]] != "1" || recs[1][col["logins_ok"]] != "1" {
			t.Errorf("%s: frontend row %v", path, recs[1])
		}
		if recs[2][col["svname"]] != "s1" || recs[2][col["check_status"]] != "L7OK" || recs[2][col["pxname"]] != "dovecot" {
			t.Errorf("%s: server row %v", path, recs[2])
		}
		if recs[4][col["svname"]] != "BACKEND" || recs[4][col["algo"]] != "user" {
			t.Errorf("%s: backend row %v", path, recs[4])
		}
	}
	var snap Snapshot
	if err := json.Unmarshal(get("/stats.json"), &snap); err != nil {
		t.Fatal(err)
	}
	if len(snap.Frontends) != 1 || len(snap.Backends) != 1 || len(snap.Backends[0].Servers) != 2 {
		t.Errorf("json: %+v", snap)
	}
	body := get("/metrics")
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	for _, name := range []string{"maildirector_frontend_sessions", "maildirector_logins_total", "maildirector_server_up",
		"maildirector_server_check_duration_seconds", "maildirector_server_admin_state", "go_goroutines"} {
		if fams[name] == nil {
			t.Errorf("metrics: no %s", name)
		}
	}
	for _, bad := range []string{"alice", "192.0.2.7"} {
		if bytes.Contains(body, []byte(bad)) {
			t.Errorf("metrics contain %q: labels must be bounded", bad)
		}
	}
	if !bytes.Contains(get("/"), []byte("<html")) {
		t.Error("/ is not the dashboard page")
	}
}

func TestBasicAuth(t *testing.T) {
	s, _ := newFake(t)
	srv := httptest.NewServer(s.Handler(HandlerOptions{Users: map[string]string{"admin": "s3cret"}}))
	defer srv.Close()
	for _, tt := range []struct {
		user, pass string
		want       int
	}{{"", "", 401}, {"admin", "wrong", 401}, {"other", "s3cret", 401}, {"admin", "s3cret", 200}} {
		req, _ := http.NewRequest("GET", srv.URL+"/stats.json", nil)
		if tt.user != "" {
			req.SetBasicAuth(tt.user, tt.pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s:%s: %d, want %d", tt.user, tt.pass, resp.StatusCode, tt.want)
		}
		if tt.want == 401 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("401 without a Basic challenge")
		}
	}
}

func TestPprofOnlyWhenAsked(t *testing.T) {
	s, _ := newFake(t)
	for _, on := range []bool{false, true} {
		srv := httptest.NewServer(s.Handler(HandlerOptions{Pprof: on}))
		resp, err := http.Get(srv.URL + "/debug/pprof/")
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{false: 404, true: 200}[on]; resp.StatusCode != want {
			t.Errorf("pprof %v: /debug/pprof/ answered %d, want %d", on, resp.StatusCode, want)
		}
	}
}
