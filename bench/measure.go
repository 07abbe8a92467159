package main

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// IdleResult is the cost of idle logged-in sessions to the proxy process.
type IdleResult struct {
	Sessions    int     `json:"sessions"`
	Failed      int     `json:"failed"`
	FirstError  string  `json:"first_error,omitempty"`
	OpenSeconds float64 `json:"open_seconds"`

	Before  procStats `json:"before"`
	Settled procStats `json:"settled"` // settle after the last login
	Later   procStats `json:"later"`   // settle + extra wait

	SettleSeconds float64 `json:"settle_seconds"`
	LaterSeconds  float64 `json:"later_seconds"`

	// Per session, from the differences to Before.
	KiB        float64 `json:"kib_per_session"`       // VmRSS after settle
	KiBLater   float64 `json:"kib_per_session_later"` // VmRSS after the extra wait
	AnonKiB    float64 `json:"anon_kib_per_session"`  // RssAnon after settle
	AnonLater  float64 `json:"anon_kib_per_session_later"`
	FDs        float64 `json:"fds_per_session"`
	ThreadsEnd int     `json:"threads"`
}

// openWorkers is how many clients log in at once while idle sessions open.
const openWorkers = 32

// openLimit bounds the time spent opening idle sessions.
const openLimit = 3 * time.Minute

// measureIdle opens n logged-in sessions through addr, leaves them idle and
// reads pid's memory and descriptors after settle and again after extra.
// Nothing is asked of the proxy meanwhile: no GC is forced, so Go's RSS
// includes freed heap and stacks the runtime has not returned yet; the
// second reading shows how much of it goes back on its own.
func measureIdle(addr string, pid, n int, settle, extra time.Duration) (IdleResult, error) {
	return measureIdleDial(func() (*client, error) { return dialLogin(addr, "idle") }, pid, n, settle, extra)
}

// measureIdleDial is measureIdle with sessions opened by dial, which
// returns a logged-in client.
func measureIdleDial(dial func() (*client, error), pid, n int, settle, extra time.Duration) (IdleResult, error) {
	res := IdleResult{Sessions: n, SettleSeconds: settle.Seconds(), LaterSeconds: (settle + extra).Seconds()}
	var err error
	if res.Before, err = readProcStats(pid); err != nil {
		return res, err
	}
	clients := make([]*client, n)
	var next, failed atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	deadline := start.Add(openLimit)
	var wg sync.WaitGroup
	for range min(openWorkers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			openIdle(dial, clients, &next, &failed, &firstErr, deadline)
		}()
	}
	wg.Wait()
	res.OpenSeconds = time.Since(start).Seconds()
	defer closeAll(clients)
	res.Failed = int(failed.Load())
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	if res.Failed > 0 {
		return res, fmt.Errorf("%d of %d idle sessions failed, first: %s", res.Failed, n, res.FirstError)
	}

	time.Sleep(settle)
	if res.Settled, err = readProcStats(pid); err != nil {
		return res, err
	}
	time.Sleep(extra)
	if res.Later, err = readProcStats(pid); err != nil {
		return res, err
	}
	per := func(after, before int64) float64 { return float64(after-before) / float64(n) }
	res.KiB = per(res.Settled.RSSKiB, res.Before.RSSKiB)
	res.KiBLater = per(res.Later.RSSKiB, res.Before.RSSKiB)
	res.AnonKiB = per(res.Settled.AnonKiB, res.Before.AnonKiB)
	res.AnonLater = per(res.Later.AnonKiB, res.Before.AnonKiB)
	res.FDs = per(int64(res.Settled.FDs), int64(res.Before.FDs))
	res.ThreadsEnd = res.Later.Threads
	return res, nil
}

// openIdle logs clients in until every slot is taken or deadline passes.
func openIdle(dial func() (*client, error), clients []*client, next, failed *atomic.Int64, firstErr *atomic.Value, deadline time.Time) {
	for time.Now().Before(deadline) {
		i := int(next.Add(1) - 1)
		if i >= len(clients) {
			return
		}
		cl, err := dial()
		if err != nil {
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
			continue
		}
		clients[i] = cl
	}
}

func closeAll(clients []*client) {
	for _, cl := range clients {
		if cl != nil {
			cl.Close()
		}
	}
}

// waitFDs waits until pid has at most want descriptors, up to limit, so the
// next measurement starts from a quiet proxy.
func waitFDs(pid, want int, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		st, err := readProcStats(pid)
		if err != nil || st.FDs <= want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// XferResult is bulk throughput from the server to clients.
type XferResult struct {
	Sessions   int     `json:"sessions"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	MBps       float64 `json:"mb_per_s"` // 10^6 bytes per second, all sessions together
	TimedOut   bool    `json:"timed_out"`
	ProxyCPU   float64 `json:"proxy_cpu_seconds,omitempty"`
	CPUPerGiB  float64 `json:"proxy_cpu_seconds_per_gib,omitempty"`
	FirstError string  `json:"first_error,omitempty"`
	// AllMBps holds every repetition; the fields above are the median one.
	AllMBps []float64 `json:"all_mb_per_s,omitempty"`
}

// medianXfer runs f repeat times and returns the run with the median MB/s.
func medianXfer(repeat int, f func() XferResult) XferResult {
	runs := make([]XferResult, 0, repeat)
	for range repeat {
		runs = append(runs, f())
	}
	slices.SortFunc(runs, func(a, b XferResult) int { return cmp.Compare(a.MBps, b.MBps) })
	res := runs[len(runs)/2]
	for _, r := range runs {
		res.AllMBps = append(res.AllMBps, r.MBps)
	}
	return res
}

// xferBuf is the client read size.
const xferBuf = 256 << 10

// measureXfer logs in sessions clients that each ask the fake server for
// total/sessions bytes, and reads until they arrive or limit passes. pid
// (0: none) is charged the CPU time it used meanwhile.
func measureXfer(addr string, pid, sessions int, total int64, limit time.Duration) XferResult {
	res := XferResult{Sessions: sessions}
	per := total / int64(sessions)
	var before procStats
	if pid > 0 {
		before, _ = readProcStats(pid)
	}
	var got atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	deadline := start.Add(limit)
	var wg sync.WaitGroup
	for range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := xferOne(addr, per, deadline)
			got.Add(n)
			if err != nil {
				firstErr.CompareAndSwap(nil, err.Error())
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	res.Bytes = got.Load()
	res.Seconds = elapsed.Seconds()
	res.MBps = float64(res.Bytes) / 1e6 / res.Seconds
	res.TimedOut = res.Bytes < per*int64(sessions)
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	if pid > 0 {
		if after, err := readProcStats(pid); err == nil && res.Bytes > 0 {
			res.ProxyCPU = (after.CPU - before.CPU).Seconds()
			res.CPUPerGiB = res.ProxyCPU / (float64(res.Bytes) / (1 << 30))
		}
	}
	return res
}

func xferOne(addr string, n int64, deadline time.Time) (int64, error) {
	cl, err := dialLogin(addr, fmt.Sprintf("%s%d", bulkPrefix, n))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	buf := make([]byte, xferBuf)
	return cl.drain(n, deadline, buf)
}

// RateResult is connect + greeting + LOGIN + LOGOUT, again and again.
type RateResult struct {
	Workers    int     `json:"workers"`
	Done       int     `json:"done"`
	Failed     int     `json:"failed"`
	Seconds    float64 `json:"seconds"`
	PerSecond  float64 `json:"logins_per_s"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	FirstError string  `json:"first_error,omitempty"`
	// AllPerSecond holds every repetition; the fields above are the median one.
	AllPerSecond []float64 `json:"all_logins_per_s,omitempty"`
}

// medianRate runs f repeat times and returns the run with the median rate.
func medianRate(repeat int, f func() RateResult) RateResult {
	runs := make([]RateResult, 0, repeat)
	for range repeat {
		runs = append(runs, f())
	}
	slices.SortFunc(runs, func(a, b RateResult) int { return cmp.Compare(a.PerSecond, b.PerSecond) })
	res := runs[len(runs)/2]
	for _, r := range runs {
		res.AllPerSecond = append(res.AllPerSecond, r.PerSecond)
	}
	return res
}

// measureRate runs count sessions over workers concurrent clients, each a
// full connect, greeting, LOGIN, LOGOUT; it stops early at limit.
func measureRate(addr string, workers, count int, limit time.Duration) RateResult {
	res := RateResult{Workers: workers}
	lat := make([]time.Duration, count)
	ok := make([]bool, count)
	var next atomic.Int64
	var failed atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	deadline := start.Add(limit)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if i >= count {
					return
				}
				t0 := time.Now()
				err := loginLogout(addr)
				lat[i] = time.Since(t0)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok[i] = true
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	var good []time.Duration
	for i := range lat {
		if ok[i] {
			good = append(good, lat[i])
		}
	}
	res.Done = len(good)
	res.Failed = int(failed.Load())
	res.PerSecond = float64(res.Done) / res.Seconds
	slices.Sort(good)
	res.P50ms = percentile(good, 50)
	res.P99ms = percentile(good, 99)
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	return res
}

func loginLogout(addr string) error {
	cl, err := dialLogin(addr, "rate")
	if err != nil {
		return err
	}
	return cl.logout()
}

// percentile of sorted durations in milliseconds (nearest rank); 0 when empty.
func percentile(sorted []time.Duration, p int) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p + 99) / 100
	i = min(max(i-1, 0), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}
