package stats

import (
	"bytes"
	"encoding/csv"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// httpSource is a Source with one HTTP frontend over the fake's backend.
type httpSource struct{ *fakeSource }

func (h httpSource) Frontends() []FrontendInfo {
	return []FrontendInfo{{Name: "scality", Protocol: "http", Backend: "dovecot", Bind: []string{"[::]:81"}}}
}

// httpFake returns Stats over an HTTP frontend and its recorder, counting
// at most max reasons on their own.
func httpFake(t *testing.T, max int) (*Stats, *HTTP) {
	t.Helper()
	s, src := newFake(t)
	s.SetSource(httpSource{src})
	return s, s.Frontend("scality").HTTP(max)
}

func TestHTTPReasons(t *testing.T) {
	s, h := httpFake(t, 2)
	for range 100 {
		h.Request("dovecot", "s1", "Mailbox sync", 200, 10, 4096, 3*time.Millisecond, false)
	}
	h.Request("dovecot", "s2", "Mailbox sync", 503, 0, 0, time.Millisecond, true)
	h.Request("dovecot", "s1", "Expunging", 204, 0, 0, 200*time.Millisecond, false)
	h.Request("dovecot", "s1", "Indexing", 201, 1000, 0, time.Second, false) // a third reason: other
	h.Request("dovecot", "s2", "Quota", 404, 0, 0, time.Second, false)       // other too
	h.Request("dovecot", "s1", "", 200, 0, 5, time.Millisecond, false)       // none: never folded

	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	byReason := map[string]HTTPReasonSnapshot{}
	var order []string
	for _, r := range snap.HTTP {
		byReason[r.Reason] = r
		order = append(order, r.Reason)
	}
	if got, want := strings.Join(order, ","), "Expunging,Mailbox sync,none,other"; got != want {
		t.Fatalf("reasons: got %s, want %s", got, want)
	}
	ms := byReason["Mailbox sync"]
	if ms.Requests != 101 || ms.Errors != 1 || ms.Responses["2xx"] != 100 || ms.Responses["5xx"] != 1 || ms.BytesIn != 1000 || ms.BytesOut != 409600 {
		t.Errorf("Mailbox sync: got %+v", ms)
	}
	if ms.P50 <= 2.5 || ms.P50 > 5 || ms.P99 <= 2.5 || ms.P99 > 5 {
		t.Errorf("Mailbox sync percentiles: got p50 %.3f p99 %.3f ms, want within the 2.5..5ms bucket", ms.P50, ms.P99)
	}
	if o := byReason["other"]; o.Requests != 2 || o.Responses["2xx"] != 1 || o.Responses["4xx"] != 1 || o.BytesIn != 1000 {
		t.Errorf("other: got %+v, want Indexing and Quota folded", o)
	}
	f := snap.Frontends[0]
	if f.Requests != 105 || f.HTTPErrors != 1 || f.Responses["2xx"] != 103 || f.Responses["4xx"] != 1 || f.Responses["5xx"] != 1 {
		t.Errorf("frontend totals: got req_tot %d errors %d hrsp %v", f.Requests, f.HTTPErrors, f.Responses)
	}
	var s1 ServerSnapshot
	for _, sv := range snap.Backends[0].Servers {
		if sv.Name == "s1" {
			s1 = sv
		}
	}
	if s1.BytesIn != 2000 || s1.BytesOut != 409605 {
		t.Errorf("s1 bytes: got in %d out %d, want 2000 and 409605", s1.BytesIn, s1.BytesOut)
	}
}

func TestHTTPPercentile(t *testing.T) {
	tests := []struct {
		name   string
		durs   []time.Duration
		q      float64
		lo, hi float64 // ms
	}{
		{"none", nil, .5, 0, 0},
		{"all in one bucket", []time.Duration{20 * time.Millisecond, 20 * time.Millisecond}, .5, 10, 25},
		{"past every bucket", []time.Duration{2 * time.Minute}, .99, 60000, 60000},
		{"p90 of a split", append(repeat(90, time.Millisecond/2), repeat(10, 4*time.Second)...), .9, 0, 1},
		{"p99 of a split", append(repeat(90, time.Millisecond/2), repeat(10, 4*time.Second)...), .99, 2500, 5000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, h := httpFake(t, 0)
			for _, d := range tt.durs {
				h.Request("dovecot", "", "r", 200, 0, 0, d, false)
			}
			rows := h.snapshot("fe")
			got := 0.0
			if len(rows) == 1 {
				got = rows[0].percentile(tt.q)
			}
			if got < tt.lo || got > tt.hi || math.IsNaN(got) {
				t.Errorf("q%.2f: got %.3f ms, want %.3f..%.3f", tt.q, got, tt.lo, tt.hi)
			}
		})
	}
}

func repeat(n int, d time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func TestHTTPViews(t *testing.T) {
	s, h := httpFake(t, 0)
	h.Request("dovecot", "s1", "Mailbox sync", 200, 0, 4096, 3*time.Millisecond, false)
	h.Request("dovecot", "s1", "Mailbox sync", 502, 0, 0, time.Millisecond, true)
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	if err := WriteCSV(&buf, snap); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, c := range recs[0] {
		col[strings.TrimPrefix(c, "# ")] = i
	}
	fe, reason := recs[1], recs[2]
	for k, want := range map[string]string{"svname": "FRONTEND", "mode": "http", "req_tot": "2", "hrsp_2xx": "1", "hrsp_5xx": "1", "http_errors": "1"} {
		if fe[col[k]] != want {
			t.Errorf("frontend row %s: got %q, want %q", k, fe[col[k]], want)
		}
	}
	for k, want := range map[string]string{"pxname": "scality", "svname": "REASON", "http_reason": "Mailbox sync", "req_tot": "2", "bout": "4096", "hrsp_5xx": "1", "http_errors": "1", "type": ""} {
		if reason[col[k]] != want {
			t.Errorf("reason row %s: got %q, want %q", k, reason[col[k]], want)
		}
	}
	if reason[col["http_p50_ms"]] == "" {
		t.Errorf("reason row: no http_p50_ms")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister((*collector)(s))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	for _, mf := range fams {
		expfmt.MetricFamilyToText(&text, mf)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	parsed, err := parser.TextToMetricFamilies(&text)
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string, labels map[string]string) (float64, bool) {
		for _, m := range parsed[name].GetMetric() {
			match := true
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					match = false
				}
			}
			if match {
				if c := m.GetCounter(); c != nil {
					return c.GetValue(), true
				}
				if h := m.GetHistogram(); h != nil {
					return float64(h.GetSampleCount()), true
				}
			}
		}
		return 0, false
	}
	l := map[string]string{"frontend": "scality", "reason": "Mailbox sync"}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"maildirector_http_requests_total", map[string]string{"frontend": "scality", "reason": "Mailbox sync", "code": "2xx"}, 1},
		{"maildirector_http_requests_total", map[string]string{"frontend": "scality", "reason": "Mailbox sync", "code": "5xx"}, 1},
		{"maildirector_http_request_errors_total", l, 1},
		{"maildirector_http_sent_bytes_total", l, 4096},
		{"maildirector_http_request_duration_seconds", l, 2},
	} {
		if got, ok := value(c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s%v: got %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
}
