package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/maildirector/maildirector/internal/nginxlab"
)

// The HTTP suite: the path of Dovecot's object storage traffic. One real
// nginx (internal/nginxlab, the WebDAV object store of the integration
// tests) serves a small and a big object; the paths to it:
//
//	direct   the clients talk to nginx
//	haproxy  HAProxy mode http (option forwardfor, the three X-Dovecot
//	         captures), keep-alive both ways, as Dovecot's documented setup
//	md-http  maildirector's http frontend (forwardfor, the default captures,
//	         per-reason statistics), pooled keep-alive connections to nginx
//	go-revproxy, go-server  references: the Go libraries alone (httpref.go)
//
// It measures requests/s of 4 KiB GETs with -http-clients keep-alive
// clients, MB/s of 100 MiB GETs with one client, and maildirector's VmRSS
// through a 1 GiB PUT and a 1 GiB GET.

const pathMDHTTP = "md-http"

var httpPaths = []string{pathDirect, pathHAProxy, pathMDHTTP, pathGoRevProxy, pathGoServer}

// httpRatioPairs are the HTTP comparisons reported, numerator first.
var httpRatioPairs = [][2]string{
	{pathHAProxy, pathDirect},
	{pathMDHTTP, pathDirect},
	{pathMDHTTP, pathHAProxy},
	{pathGoRevProxy, pathHAProxy},
	{pathGoServer, pathHAProxy},
}

const (
	testSmall = "get 4KiB"
	testBig   = "get 100MiB"
	// smallObject and bigObject are the objects' keys in the store.
	smallObject = "/ring/small"
	bigObject   = "/ring/big"
)

// HTTPRun is one measurement of one test on one path.
type HTTPRun struct {
	Test     string  `json:"test"`
	Path     string  `json:"path"`
	Clients  int     `json:"clients"`
	Requests int     `json:"requests"` // answered 200 with the whole object
	Failed   int     `json:"failed"`
	Seconds  float64 `json:"seconds"`
	ReqPerS  float64 `json:"requests_per_s"`
	MBPerS   float64 `json:"mb_per_s"` // 10^6 bytes/s of response bodies
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	// ProxyCPU is the proxy's utime+stime during the run.
	ProxyCPU   float64 `json:"proxy_cpu_seconds,omitempty"`
	CPUusPerRq float64 `json:"proxy_cpu_us_per_request,omitempty"`
	FirstError string  `json:"first_error,omitempty"`
	// All holds every repetition's rate (requests/s or MB/s) in run order;
	// the fields above are the median one's.
	All []float64 `json:"all,omitempty"`
}

// HTTPMemory is maildirector's resident memory through big transfers.
type HTTPMemory struct {
	BaseKiB    int64  `json:"base_kib"`     // after a warm-up transfer of each kind
	PeakPutKiB int64  `json:"peak_put_kib"` // during a 1 GiB PUT
	PeakGetKiB int64  `json:"peak_get_kib"` // during a 1 GiB GET
	Error      string `json:"error,omitempty"`
}

// HTTPReport is the HTTP suite of one run.
type HTTPReport struct {
	Clients int                  `json:"clients"`
	Limit   string               `json:"time_limit"`
	Repeat  int                  `json:"repeat"`
	Runs    []HTTPRun            `json:"runs"`
	Ratios  map[string]Ratios    `json:"ratios"` // "TEST A/B" → metric → ratio
	Memory  *HTTPMemory          `json:"md_memory,omitempty"`
	Errors  map[string]string    `json:"errors,omitempty"`
	Paired  map[string][]float64 `json:"paired_ratios"`
	Notes   []string             `json:"notes"`
}

// haproxyHTTPConfig is HAProxy in mode http in front of one server, as
// Dovecot documents it for object storage: forwardfor, the three X-Dovecot
// captures, its timeouts, keep-alive (HAProxy's default) both ways. It
// logs nothing (no log target, so no httplog either), as maildirector's
// log level is warn.
func haproxyHTTPConfig(listen, server string) string {
	return fmt.Sprintf(`global
    maxconn %[3]d

defaults
    mode http
    option forwardfor
    timeout http-request 1m
    timeout queue 1m
    timeout connect 10s
    timeout client 1m
    timeout server 1m
    timeout http-keep-alive 10m
    maxconn %[3]d

frontend bench
    bind %[1]s
    capture request header X-Dovecot-Reason len 40
    capture request header X-Dovecot-Username len 40
    capture request header X-Dovecot-Session-Id len 70
    default_backend store

backend store
    balance roundrobin
    server store1 %[2]s
`, listen, server, haproxyMaxconn)
}

// maildirectorHTTPConfig is one http frontend in front of one server,
// checks off so probes stay out of the measurement.
func maildirectorHTTPConfig(listen, server, logLevel string) string {
	return fmt.Sprintf(`[global]
log_level = %[3]q
maxconn = 0
shutdown_grace = "1s"

# The statistics listener (with pprof when profiling) is added by
# startMaildirector, as for every configuration here.

[frontend.bench]
protocol = "http"
bind = [%[1]q]
backend = "store"
[frontend.bench.http]
forwardfor = true

[backend.store]
balance = "roundrobin"
[backend.store.check]
type = "none"

[[backend.store.server]]
name = "store1"
address = %[2]q
`, listen, server, logLevel)
}

// runHTTP runs the HTTP suite.
func runHTTP(o options, dir string, progress io.Writer) *HTTPReport {
	rep := &HTTPReport{Clients: o.httpClients, Limit: o.httpTime.String(), Repeat: o.httpRepeat, Errors: make(map[string]string)}
	rep.Notes = []string{
		"HTTP paths: direct = the clients to nginx; haproxy = mode http with forwardfor and the X-Dovecot captures; md-http = maildirector's http frontend (forwardfor, captures, per-reason statistics); both proxies keep connections to nginx alive",
		"each client sends the three X-Dovecot headers; the 4 KiB test has -http-clients keep-alive clients GET one object as fast as they can; the 100 MiB test one client GETting the big object",
		"nginx, the clients and the proxy share this machine's CPUs: compare ratios, not absolutes; rows are the median of -http-repeat runs, the paths taking turns",
		"md memory: maildirector's VmRSS after a warm-up, and its peak sampled every 20ms during a 1 GiB PUT and a 1 GiB GET",
		"references, none of maildirector's code: go-revproxy = net/http server + httputil.ReverseProxy + keep-alive http.Transport to nginx; go-server = net/http server answering the 4 KiB object from memory (no proxying)",
	}
	lab, err := nginxlab.Start(nginxlab.Options{Instances: 1, Dir: filepath.Join(dir, "nginx")})
	if err != nil {
		rep.Errors["nginx"] = err.Error()
		return rep
	}
	defer lab.Close()
	store := lab.Instances[0].Addr
	if err := writeObject(filepath.Join(lab.Data, smallObject), 4<<10); err != nil {
		rep.Errors["nginx"] = err.Error()
		return rep
	}
	if err := writeObject(filepath.Join(lab.Data, bigObject), int64(o.httpBigMiB)<<20); err != nil {
		rep.Errors["nginx"] = err.Error()
		return rep
	}

	addrs := map[string]string{pathDirect: store}
	pids := map[string]int{}
	var md *proxyProc
	for _, path := range httpPaths[1:] {
		listen, err := freeAddr()
		if err != nil {
			rep.Errors[path] = err.Error()
			continue
		}
		var proc *proxyProc
		switch path {
		case pathHAProxy:
			proc, err = startHAProxy(o.haproxy, dir, "http-haproxy", listen, haproxyHTTPConfig(listen, store))
		case pathMDHTTP:
			proc, err = startMaildirector(o.maildirector, dir, "http-maildirector", listen, maildirectorHTTPConfig(listen, store, o.logLevel), o.profileDir != "")
			md = proc
		case pathGoRevProxy, pathGoServer:
			proc, err = startHTTPReference(dir, path, listen, store)
		}
		if err != nil {
			rep.Errors[path] = err.Error()
			continue
		}
		defer proc.stop()
		addrs[path], pids[path] = proc.addr, proc.pid()
	}

	tests := []struct {
		name    string
		clients int
		object  string
		size    int64
	}{
		{testSmall, o.httpClients, smallObject, 4 << 10},
		{testBig, 1, bigObject, int64(o.httpBigMiB) << 20},
	}
	runs := map[string][]HTTPRun{} // test path → every repetition
	for rep0 := range o.httpRepeat {
		for _, tt := range tests {
			order := slices.Clone(httpPaths)
			for range rep0 % len(order) { // rotate, so that no path is always first
				order = append(order[1:], order[0])
			}
			for _, path := range order {
				addr, ok := addrs[path]
				if !ok || (path == pathGoServer && tt.object != smallObject) {
					continue // go-server has the small object only
				}
				fmt.Fprintf(progress, "bench: http %s %s (run %d)\n", tt.name, path, rep0+1)
				r := measureHTTP(addr, pids[path], tt.clients, tt.object, tt.size, o.httpTime)
				r.Test, r.Path = tt.name, path
				runs[tt.name+" "+path] = append(runs[tt.name+" "+path], r)
			}
		}
	}
	for _, tt := range tests {
		for _, path := range httpPaths {
			all := runs[tt.name+" "+path]
			if len(all) == 0 {
				continue
			}
			rep.Runs = append(rep.Runs, medianHTTP(all, tt.name == testBig))
		}
	}
	rep.Ratios, rep.Paired = httpRatios(rep.Runs, runs)
	if addr, ok := addrs[pathMDHTTP]; ok {
		for _, tt := range tests {
			md.profileRun(o.profileDir, "http-"+strings.ReplaceAll(tt.name, " ", "-"), o.profileTime, func(d time.Duration) {
				measureHTTP(addr, 0, tt.clients, tt.object, tt.size, d)
			})
		}
	}
	if addr, ok := addrs[pathMDHTTP]; ok {
		fmt.Fprintf(progress, "bench: http md-http memory through 1 GiB transfers\n")
		m := measureHTTPMemory(addr, pids[pathMDHTTP])
		rep.Memory = &m
	}
	return rep
}

// writeObject writes size bytes of a repeated pattern to path.
func writeObject(path string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, io.LimitReader(pattern{}, size)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// pattern reads as an endless run of bytes that are not all zeros.
type pattern struct{}

func (pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte('a' + i%26)
	}
	return len(p), nil
}

// httpClient is one keep-alive client: its own connection.
func httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true,
		ReadBufferSize: 64 << 10, Proxy: nil,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
}

// dovecotHeader are the headers every request sends, as Dovecot does.
var dovecotHeader = http.Header{
	"X-Dovecot-Reason":     {"Mailbox INBOX: Reading mail"},
	"X-Dovecot-Username":   {"user001@lab.test"},
	"X-Dovecot-Session-Id": {"bench-session-0123456789"},
}

// measureHTTP has clients GET object (of size bytes) from addr until limit.
func measureHTTP(addr string, pid, clients int, object string, size int64, limit time.Duration) HTTPRun {
	r := HTTPRun{Clients: clients}
	url := "http://" + addr + object
	var (
		mu        sync.Mutex
		lat       []time.Duration
		failed    atomic.Int64
		firstErr  atomic.Value
		requests  atomic.Int64
		bytesRead atomic.Int64
		wg        sync.WaitGroup
	)
	before, _ := readProcStats(pid)
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := httpClient()
			defer c.CloseIdleConnections()
			buf := make([]byte, 256<<10)
			var mine []time.Duration
			defer func() {
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
			for ctx.Err() == nil {
				t0 := time.Now()
				n, err := getOnce(ctx, c, url, buf)
				if ctx.Err() != nil {
					return // cut by the limit: not counted
				}
				if err == nil && n != size {
					err = fmt.Errorf("got %d bytes, want %d", n, size)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					time.Sleep(10 * time.Millisecond)
					continue
				}
				mine = append(mine, time.Since(t0))
				requests.Add(1)
				bytesRead.Add(n)
			}
		}()
	}
	wg.Wait()
	// A big GET cut by the limit is not counted; its bytes are not either,
	// so the rate is over the counted ones' time.
	secs := time.Since(start).Seconds()
	after, _ := readProcStats(pid)
	r.Requests, r.Failed, r.Seconds = int(requests.Load()), int(failed.Load()), secs
	if e, ok := firstErr.Load().(string); ok {
		r.FirstError = e
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		r.P50ms = percentile(lat, 50)
		r.P99ms = percentile(lat, 99)
		busy := time.Duration(0)
		for _, d := range lat {
			busy += d
		}
		if size > 1<<20 {
			// One client: the time it spent in counted GETs.
			secs = busy.Seconds()
		}
	}
	r.ReqPerS = float64(r.Requests) / secs
	r.MBPerS = float64(bytesRead.Load()) / secs / 1e6
	if pid != 0 {
		r.ProxyCPU = (after.CPU - before.CPU).Seconds()
		if r.Requests > 0 {
			r.CPUusPerRq = r.ProxyCPU / float64(r.Requests) * 1e6
		}
	}
	return r
}

// getOnce GETs url and reads the body through buf, returning its length.
func getOnce(ctx context.Context, c *http.Client, url string, buf []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, err
	}
	req.Header = dovecotHeader.Clone()
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.CopyBuffer(io.Discard, resp.Body, buf)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	return n, err
}

// medianHTTP is the run with the median rate (requests/s, or MB/s for
// the big object), with every run's rate in All.
func medianHTTP(runs []HTTPRun, byMB bool) HTTPRun {
	rate := func(r HTTPRun) float64 {
		if byMB {
			return r.MBPerS
		}
		return r.ReqPerS
	}
	all := make([]float64, len(runs))
	for i, r := range runs {
		all[i] = rate(r)
	}
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b HTTPRun) int {
		switch {
		case rate(a) < rate(b):
			return -1
		case rate(a) > rate(b):
			return 1
		}
		return 0
	})
	m := sorted[len(sorted)/2]
	m.All = all
	return m
}

// httpMetric is one row of the HTTP table.
type httpMetric struct {
	name string
	get  func(HTTPRun) (float64, bool)
}

var httpMetrics = []httpMetric{
	{"requests/s", func(r HTTPRun) (float64, bool) { return measured(r.ReqPerS, r.Requests > 0) }},
	{"MB/s", func(r HTTPRun) (float64, bool) { return measured(r.MBPerS, r.Requests > 0) }},
	{"p50 ms", func(r HTTPRun) (float64, bool) { return measured(r.P50ms, r.Requests > 0) }},
	{"p99 ms", func(r HTTPRun) (float64, bool) { return measured(r.P99ms, r.Requests > 0) }},
	{"proxy CPU µs/request", func(r HTTPRun) (float64, bool) { return measured(r.CPUusPerRq, r.Requests > 0) }},
}

// httpRatios maps "TEST A/B" to each metric both sides have, and to the
// rate ratio of each repetition.
func httpRatios(median []HTTPRun, all map[string][]HTTPRun) (map[string]Ratios, map[string][]float64) {
	by := map[string]HTTPRun{}
	for _, r := range median {
		by[r.Test+" "+r.Path] = r
	}
	out, paired := map[string]Ratios{}, map[string][]float64{}
	for _, test := range []string{testSmall, testBig} {
		for _, pair := range httpRatioPairs {
			a, okA := by[test+" "+pair[0]]
			b, okB := by[test+" "+pair[1]]
			if !okA || !okB {
				continue
			}
			r := Ratios{}
			for _, m := range httpMetrics {
				va, ok1 := m.get(a)
				vb, ok2 := m.get(b)
				if ok1 && ok2 && vb != 0 {
					r[m.name] = va / vb
				}
			}
			key := test + " " + pair[0] + "/" + pair[1]
			out[key] = r
			ra, rb := all[test+" "+pair[0]], all[test+" "+pair[1]]
			for i := range min(len(ra), len(rb)) {
				va, vb := ra[i].ReqPerS, rb[i].ReqPerS
				if test == testBig {
					va, vb = ra[i].MBPerS, rb[i].MBPerS
				}
				if vb > 0 {
					paired[key] = append(paired[key], va/vb)
				}
			}
		}
	}
	return out, paired
}

// measureHTTPMemory PUTs and GETs 1 GiB through maildirector at addr and
// samples its VmRSS.
func measureHTTPMemory(addr string, pid int) HTTPMemory {
	var m HTTPMemory
	const size = 1 << 30
	c := httpClient()
	defer c.CloseIdleConnections()
	put := func(key string, n int64) error {
		req, err := http.NewRequest("PUT", "http://"+addr+key, io.LimitReader(pattern{}, n))
		if err != nil {
			return err
		}
		req.ContentLength = n
		req.Header = dovecotHeader.Clone()
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusNoContent {
			return fmt.Errorf("PUT: %s", resp.Status)
		}
		return nil
	}
	get := func(key string, n int64) error {
		got, err := getOnce(context.Background(), c, "http://"+addr+key, make([]byte, 256<<10))
		if err == nil && got != n {
			err = fmt.Errorf("GET: %d bytes, want %d", got, n)
		}
		return err
	}
	if err := put("/ring/warm", 8<<20); err != nil {
		m.Error = err.Error()
		return m
	}
	if err := get("/ring/warm", 8<<20); err != nil {
		m.Error = err.Error()
		return m
	}
	time.Sleep(200 * time.Millisecond)
	st, _ := readProcStats(pid)
	m.BaseKiB = st.RSSKiB
	var err error
	m.PeakPutKiB = peakRSS(pid, func() { err = put("/ring/huge", size) })
	if err != nil {
		m.Error = err.Error()
		return m
	}
	m.PeakGetKiB = peakRSS(pid, func() { err = get("/ring/huge", size) })
	if err != nil {
		m.Error = err.Error()
	}
	return m
}

// peakRSS runs f while it samples pid's VmRSS every 20ms; the highest KiB.
func peakRSS(pid int, f func()) int64 {
	done := make(chan struct{})
	var peak atomic.Int64
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if st, err := readProcStats(pid); err == nil && st.RSSKiB > peak.Load() {
				peak.Store(st.RSSKiB)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(done)
	return peak.Load()
}

// printHTTP is the table of the HTTP suite.
func printHTTP(w io.Writer, rep *HTTPReport) {
	fmt.Fprintf(w, "HTTP: nginx object store; %d keep-alive clients for 4 KiB GETs, 1 for 100 MiB GETs; each run %s; median of %d runs\n\n",
		rep.Clients, rep.Limit, rep.Repeat)
	by := map[string]HTTPRun{}
	for _, r := range rep.Runs {
		by[r.Test+" "+r.Path] = r
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "test\tmetric\t")
	for _, p := range httpPaths {
		fmt.Fprintf(tw, "%s\t", p)
	}
	for _, pair := range httpRatioPairs {
		fmt.Fprintf(tw, "%s/%s\t", pair[0], pair[1])
	}
	fmt.Fprintln(tw)
	for _, test := range []string{testSmall, testBig} {
		for _, m := range httpMetrics {
			fmt.Fprintf(tw, "%s\t%s\t", test, m.name)
			for _, p := range httpPaths {
				if v, ok := m.get(by[test+" "+p]); ok {
					fmt.Fprintf(tw, "%s\t", num(v))
				} else {
					fmt.Fprint(tw, "-\t")
				}
			}
			ratioCells(tw, rep.Ratios, test, httpRatioPairs, m.name)
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rep.Runs {
		all := make([]string, len(r.All))
		for i, v := range r.All {
			all[i] = num(v)
		}
		fmt.Fprintf(w, "http %s %s: each run %s", r.Test, r.Path, strings.Join(all, " "))
		if r.Failed > 0 || r.FirstError != "" {
			fmt.Fprintf(w, "; median run: %d failed, first error: %s", r.Failed, r.FirstError)
		}
		fmt.Fprintln(w)
	}
	keys := make([]string, 0, len(rep.Paired))
	for k := range rep.Paired {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		all := make([]string, len(rep.Paired[k]))
		for i, v := range rep.Paired[k] {
			all[i] = fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(w, "http %s: rate ratio of each repetition %s\n", k, strings.Join(all, " "))
	}
	if m := rep.Memory; m != nil {
		if m.Error != "" {
			fmt.Fprintf(w, "http md-http memory: ERROR %s\n", m.Error)
		} else {
			fmt.Fprintf(w, "http md-http VmRSS: %d KiB after warm-up; peak %d KiB (+%d) during a 1 GiB PUT, %d KiB (+%d) during a 1 GiB GET\n",
				m.BaseKiB, m.PeakPutKiB, m.PeakPutKiB-m.BaseKiB, m.PeakGetKiB, m.PeakGetKiB-m.BaseKiB)
		}
	}
	for k, e := range rep.Errors {
		fmt.Fprintf(w, "http %s: ERROR %s\n", k, e)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}
