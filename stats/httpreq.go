package stats

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// HTTP reasons that are not a header's value.
const (
	// ReasonNone counts requests without the reason header.
	ReasonNone = "none"
	// ReasonOther counts the requests of every reason past the frontend's
	// limit (HTTP.SetMaxReasons): the label set stays bounded whatever the
	// clients send.
	ReasonOther = "other"
	// DefaultMaxReasons is the number of distinct reasons counted on their
	// own unless SetMaxReasons says otherwise.
	DefaultMaxReasons = 20
)

// responseClasses are the status classes requests are counted by, as
// HAProxy's hrsp_* columns; the last one is anything else.
var responseClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "other"}

// httpBuckets are the upper bounds, in seconds, of the request duration
// histogram: from a pooled small GET to an object that takes a minute.
var httpBuckets = [...]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// HTTP is one HTTP frontend's requests by reason (the X-Dovecot-Reason
// header): counters, bytes and a latency histogram per reason. It
// implements protocols/http's Recorder. The map of reasons is read under a
// read lock and grows under the write lock only for a reason not seen
// before; everything else is atomics.
type HTTP struct {
	fe  *Frontend
	max atomic.Int64 // reasons counted on their own

	mu      sync.RWMutex
	reasons map[string]*reasonCounters
}

// reasonCounters are one reason's figures.
type reasonCounters struct {
	requests atomic.Uint64
	classes  [len(responseClasses)]atomic.Uint64
	errors   atomic.Uint64
	bytesIn  atomic.Int64
	bytesOut atomic.Int64
	buckets  [len(httpBuckets) + 1]atomic.Uint64
	durSumNs atomic.Int64
}

// HTTP returns the frontend's per-reason request counters, created on
// first use (a reload keeps them), counting at most maxReasons reasons on
// their own (0: DefaultMaxReasons).
func (f *Frontend) HTTP(maxReasons int) *HTTP {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.http == nil {
		f.http = &HTTP{fe: f, reasons: make(map[string]*reasonCounters)}
	}
	f.http.SetMaxReasons(maxReasons)
	return f.http
}

// SetMaxReasons sets how many distinct reasons are counted on their own;
// requests of later reasons count as ReasonOther. Reasons already counted
// stay. Zero or negative: DefaultMaxReasons.
func (h *HTTP) SetMaxReasons(n int) {
	if n <= 0 {
		n = DefaultMaxReasons
	}
	h.max.Store(int64(n))
}

// Request records one request (protocols/http's Recorder): its reason
// ("" counts as ReasonNone), the status the client got, the body bytes
// both ways, its duration and whether maildirector answered it or a
// transfer broke (failed). The bytes count for server of backend too.
func (h *HTTP) Request(backend, server, reason string, status int, in, out int64, d time.Duration, failed bool) {
	rc := h.counters(reason)
	rc.requests.Add(1)
	class := len(responseClasses) - 1
	if status >= 100 && status < 600 {
		class = status/100 - 1
	}
	rc.classes[class].Add(1)
	if failed {
		rc.errors.Add(1)
	}
	rc.bytesIn.Add(in)
	rc.bytesOut.Add(out)
	sec := d.Seconds()
	i := 0
	for i < len(httpBuckets) && sec > httpBuckets[i] {
		i++
	}
	rc.buckets[i].Add(1)
	rc.durSumNs.Add(int64(d))
	h.fe.requests.Add(1)
	if server != "" {
		s := h.fe.st.Server(backend, server)
		s.bytesIn.Add(in)
		s.bytesOut.Add(out)
	}
}

// counters returns the counters of reason, folding it into ReasonOther
// once the frontend counts its maximum of reasons.
func (h *HTTP) counters(reason string) *reasonCounters {
	if reason == "" {
		reason = ReasonNone
	}
	h.mu.RLock()
	rc := h.reasons[reason]
	h.mu.RUnlock()
	if rc != nil {
		return rc
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if rc = h.reasons[reason]; rc != nil {
		return rc
	}
	own := len(h.reasons)
	if _, ok := h.reasons[ReasonOther]; ok {
		own--
	}
	if int64(own) >= h.max.Load() && reason != ReasonNone {
		reason = ReasonOther
		if rc = h.reasons[reason]; rc != nil {
			return rc
		}
	}
	rc = new(reasonCounters)
	h.reasons[reason] = rc
	return rc
}

// HTTPReasonSnapshot is one reason's requests on one HTTP frontend.
type HTTPReasonSnapshot struct {
	Frontend string `json:"frontend"`
	// Reason is the X-Dovecot-Reason value (cut to its capture length),
	// "none" for requests without one, "other" for the reasons past the
	// frontend's max_reasons.
	Reason   string `json:"reason"`
	Requests uint64 `json:"req_tot"`
	// Responses counts the statuses the clients got by class: 1xx, 2xx,
	// 3xx, 4xx, 5xx, other (HAProxy's hrsp_*).
	Responses map[string]uint64 `json:"hrsp"`
	// Errors are the requests maildirector answered itself (no server
	// could: 502, 503, 504, or the client's 408) or whose transfer broke.
	Errors   uint64 `json:"errors"`
	BytesIn  int64  `json:"bin"`  // request body bytes from the clients
	BytesOut int64  `json:"bout"` // response body bytes to the clients
	// P50, P90 and P99 are latency percentiles in milliseconds, from the
	// first byte of the request to the last of the response, estimated
	// from the histogram's buckets (0 without requests).
	P50 float64 `json:"p50_ms"`
	P90 float64 `json:"p90_ms"`
	P99 float64 `json:"p99_ms"`

	// buckets are the histogram's counts per httpBuckets bound (the last
	// one past them) and sum its total, for /metrics.
	buckets [len(httpBuckets) + 1]uint64
	sum     float64
}

// snapshot returns the frontend's reasons, sorted by name with none and
// other last.
func (h *HTTP) snapshot(frontend string) []HTTPReasonSnapshot {
	h.mu.RLock()
	out := make([]HTTPReasonSnapshot, 0, len(h.reasons))
	for reason, rc := range h.reasons {
		rs := HTTPReasonSnapshot{
			Frontend: frontend, Reason: reason, Requests: rc.requests.Load(), Errors: rc.errors.Load(),
			BytesIn: rc.bytesIn.Load(), BytesOut: rc.bytesOut.Load(),
			Responses: make(map[string]uint64, len(responseClasses)),
			sum:       float64(rc.durSumNs.Load()) / 1e9,
		}
		for i, c := range responseClasses {
			rs.Responses[c] = rc.classes[i].Load()
		}
		for i := range rc.buckets {
			rs.buckets[i] = rc.buckets[i].Load()
		}
		rs.P50, rs.P90, rs.P99 = rs.percentile(.5), rs.percentile(.9), rs.percentile(.99)
		out = append(out, rs)
	}
	h.mu.RUnlock()
	rank := func(r string) int {
		switch r {
		case ReasonNone:
			return 1
		case ReasonOther:
			return 2
		}
		return 0
	}
	slices.SortFunc(out, func(a, b HTTPReasonSnapshot) int {
		return cmp.Or(cmp.Compare(rank(a.Reason), rank(b.Reason)), cmp.Compare(a.Reason, b.Reason))
	})
	return out
}

// percentile estimates the q quantile, in milliseconds, as Prometheus's
// histogram_quantile does: linear within the bucket that holds it, the
// highest bound when it lies past them.
func (r *HTTPReasonSnapshot) percentile(q float64) float64 {
	var total uint64
	for _, n := range r.buckets {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var cum uint64
	for i, n := range r.buckets {
		if float64(cum+n) < rank || n == 0 {
			cum += n
			continue
		}
		if i == len(httpBuckets) {
			return httpBuckets[len(httpBuckets)-1] * 1000
		}
		lo := 0.0
		if i > 0 {
			lo = httpBuckets[i-1]
		}
		hi := httpBuckets[i]
		return (lo + (hi-lo)*(rank-float64(cum))/float64(n)) * 1000
	}
	return httpBuckets[len(httpBuckets)-1] * 1000
}
