package stats

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maildirector/maildirector/checks"
	"github.com/maildirector/maildirector/proxy"
)

// loginResults are the proxy.LoginResult values, in the order of
// Frontend.logins.
var loginResults = [...]proxy.LoginResult{proxy.LoginOK, proxy.LoginRejected, proxy.LoginNoServer, proxy.LoginTempFail}

// Frontend is one frontend's counters. It implements proxy.Recorder; a
// reload keeps it by name.
type Frontend struct {
	st   *Stats
	name string

	cur      atomic.Int64
	max      atomic.Int64
	total    atomic.Uint64
	tls      atomic.Uint64 // ended sessions that were on TLS
	bytesIn  atomic.Int64  // of ended sessions; live ones are added by the snapshot
	bytesOut atomic.Int64
	logins   [len(loginResults)]atomic.Uint64
	rcpt     [3]atomic.Uint64 // LMTP final replies: 2xx, 4xx, 5xx

	mu   sync.Mutex // guards ends and http; taken once per ended session
	ends map[string]uint64
	http *HTTP // an HTTP frontend's requests by reason; nil for others

	requests atomic.Uint64 // HTTP requests, for the request rate

	rate    rateMeter
	reqRate rateMeter // HTTP requests per second
	hist    ring      // current sessions, one per history step
}

var _ proxy.Recorder = (*Frontend)(nil)

// SessionStarted implements proxy.Recorder.
func (f *Frontend) SessionStarted() {
	f.total.Add(1)
	n := f.cur.Add(1)
	for {
		m := f.max.Load()
		if n <= m || f.max.CompareAndSwap(m, n) {
			return
		}
	}
}

// SessionEnded implements proxy.Recorder.
func (f *Frontend) SessionEnded(info proxy.Info, end string) {
	f.cur.Add(-1)
	f.bytesIn.Add(info.BytesIn)
	f.bytesOut.Add(info.BytesOut)
	if info.TLS {
		f.tls.Add(1)
	}
	f.mu.Lock()
	f.ends[end]++
	f.mu.Unlock()
	if info.Server != "" && !strings.Contains(info.Server, ",") {
		s := f.st.Server(info.Backend, info.Server)
		s.bytesIn.Add(info.BytesIn)
		s.bytesOut.Add(info.BytesOut)
	}
}

// Login implements proxy.Recorder.
func (f *Frontend) Login(r proxy.LoginResult) {
	for i, lr := range loginResults {
		if lr == r {
			f.logins[i].Add(1)
			return
		}
	}
}

// Recipient implements proxy.Recorder.
func (f *Frontend) Recipient(code int) {
	switch code / 100 {
	case 2:
		f.rcpt[0].Add(1)
	case 4:
		f.rcpt[1].Add(1)
	default:
		f.rcpt[2].Add(1)
	}
}

// Server is one server's counters beyond what its director and checker
// keep: bytes of its ended sessions, its checks' results and its history.
// A reload keeps it by backend and server name.
type Server struct {
	bytesIn  atomic.Int64
	bytesOut atomic.Int64

	checks   atomic.Uint64 // probes run
	chkFail  atomic.Uint64 // failed probes
	chkDown  atomic.Uint64 // up → down transitions
	buckets  [len(checkBuckets) + 1]atomic.Uint64
	durSumNs atomic.Int64

	mu        sync.Mutex // guards the fields below
	checkCode string     // HAProxy's check_status of the last probe
	checkMS   ring       // last check latency, one per history step
	sessions  ring       // live sessions, one per history step
}

// checkBuckets are the upper bounds, in seconds, of the check duration
// histogram.
var checkBuckets = [...]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// CheckResult records one probe's result (checks.Options.OnResult).
func (s *Server) CheckResult(t checks.Type, r checks.Result) {
	s.checks.Add(1)
	if !r.OK {
		s.chkFail.Add(1)
	}
	sec := r.Latency.Seconds()
	i := 0
	for i < len(checkBuckets) && sec > checkBuckets[i] {
		i++
	}
	s.buckets[i].Add(1)
	s.durSumNs.Add(int64(r.Latency))
	code := checkCode(t, r)
	s.mu.Lock()
	s.checkCode = code
	s.mu.Unlock()
}

// Transition records a health transition (checks.Options.OnChange).
func (s *Server) Transition(t checks.Transition) {
	if !t.Up {
		s.chkDown.Add(1)
	}
}

// rateMeter turns a running total into a per-second rate, sampled once a
// second by Stats.Run.
type rateMeter struct {
	mu   sync.Mutex
	last uint64
	rate uint64
	max  uint64
}

func (m *rateMeter) sample(total uint64) {
	m.mu.Lock()
	m.rate = total - m.last
	m.last = total
	m.max = max(m.max, m.rate)
	m.mu.Unlock()
}

func (m *rateMeter) get() (rate, peak uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rate, m.max
}

// historyLen is how many samples a history keeps: an hour at the default
// step of 30s.
const historyLen = 120

// ring is a fixed-size history of samples, oldest first when read. Not
// safe for concurrent use: its owner's lock guards it.
type ring struct {
	buf  [historyLen]float64
	next int
	n    int
}

func (r *ring) add(v float64) {
	r.buf[r.next] = v
	r.next = (r.next + 1) % historyLen
	r.n = min(r.n+1, historyLen)
}

func (r *ring) values() []float64 {
	out := make([]float64, 0, r.n)
	start := (r.next - r.n + historyLen) % historyLen
	for i := range r.n {
		out = append(out, r.buf[(start+i)%historyLen])
	}
	return out
}

// now is the clock; tests replace it.
var now = time.Now
