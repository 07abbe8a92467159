package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

// The FETCH part of the dovecot suite: what a proxy does to a mailbox's
// big messages going to the user, against the real Dovecot only (the
// imap suite moves bulk bytes from the fake server). Each of
// -fetch-clients clients logs in as a user of its own, whose INBOX holds
// one message of -fetch-mib MiB, selects INBOX and fetches that message
// whole (FETCH 1 BODY.PEEK[], RFC 9051 section 6.4.5) again and again
// until the run's time is up; every path takes turns, as the logins do.

// FetchRun is one FETCH measurement on one path.
type FetchRun struct {
	Path       string  `json:"path"`
	Clients    int     `json:"clients"`
	Fetches    int     `json:"fetches"`
	Bytes      int64   `json:"bytes"`
	Seconds    float64 `json:"seconds"`
	MiBps      float64 `json:"mib_per_s"`
	ProxyCPU   float64 `json:"proxy_cpu_seconds,omitempty"`
	CPUPerGiB  float64 `json:"proxy_cpu_s_per_gib,omitempty"`
	FirstError string  `json:"first_error,omitempty"`
	// AllMiBps holds every repetition in run order.
	AllMiBps []float64 `json:"all_mib_per_s,omitempty"`
}

// FetchReport is the FETCH table.
type FetchReport struct {
	Clients int        `json:"clients"`
	MiB     int        `json:"message_mib"`
	Limit   string     `json:"time_limit"`
	Runs    []FetchRun `json:"runs"` // the median run of each path
	// Ratios maps "A/B" to MiB/s and CPU-per-GiB ratios.
	Ratios map[string]Ratios `json:"ratios"`
}

// fetchUser is the lab user of FETCH client k: after the login test's
// users, so that their SELECT stays the empty INBOX it always was.
func fetchUser(k int) string { return fmt.Sprintf("user%03d", dovecotUsers+k) }

// fetchMessage is a message of about mib MiB: a few headers and lines of
// 76 printable octets (RFC 5322 section 2.1.1).
func fetchMessage(mib int) []byte {
	var b strings.Builder
	b.WriteString("From: bench@example.org\r\nTo: user@example.org\r\nSubject: big\r\nMessage-ID: <big@bench>\r\n\r\n")
	const line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd\r\n"
	for b.Len() < mib<<20 {
		b.WriteString(line)
	}
	return []byte(b.String())
}

// fetchSession is one logged-in client with INBOX selected.
type fetchSession struct {
	c   net.Conn
	r   *bufio.Reader
	tag int
}

// dialFetch logs in as user on addr and selects INBOX.
func dialFetch(addr, user string) (*fetchSession, error) {
	c, err := net.DialTimeout("tcp", addr, clientTimeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c.SetDeadline(time.Now().Add(clientTimeout))
	cl := &client{c: c, r: bufio.NewReaderSize(c, 64<<10)}
	if err := cl.greeting(); err != nil {
		c.Close()
		return nil, err
	}
	for _, step := range []struct{ tag, cmd string }{
		{"a", "LOGIN " + user + " " + dovecotlab.Password},
		{"b", "SELECT INBOX"},
	} {
		if _, err := io.WriteString(c, step.tag+" "+step.cmd+"\r\n"); err != nil {
			c.Close()
			return nil, fmt.Errorf("send %s: %w", step.cmd, err)
		}
		if err := cl.tagged(step.tag); err != nil {
			c.Close()
			return nil, err
		}
	}
	return &fetchSession{c: c, r: cl.r}, nil
}

// fetch fetches message 1 whole and returns its size: the untagged FETCH
// carries it as a literal (RFC 9051 section 4.3), read to the end.
func (s *fetchSession) fetch() (int64, error) {
	s.tag++
	tag := "f" + strconv.Itoa(s.tag)
	s.c.SetDeadline(time.Now().Add(clientTimeout))
	if _, err := io.WriteString(s.c, tag+" FETCH 1 BODY.PEEK[]\r\n"); err != nil {
		return 0, fmt.Errorf("send FETCH: %w", err)
	}
	cl := &client{c: s.c, r: s.r}
	var size int64 = -1
	for range maxReplyLines {
		line, err := cl.readLine()
		if err != nil {
			return 0, fmt.Errorf("read FETCH reply: %w", err)
		}
		if rest, ok := strings.CutPrefix(line, tag+" "); ok {
			if !strings.HasPrefix(rest, "OK") || size < 0 {
				return 0, fmt.Errorf("FETCH: %q after %d octets", line, size)
			}
			return size, nil
		}
		open := strings.LastIndexByte(line, '{')
		if !strings.HasPrefix(line, "* ") || open < 0 || !strings.HasSuffix(line, "}") {
			continue
		}
		n, err := strconv.ParseInt(line[open+1:len(line)-1], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("FETCH: bad literal in %q", line)
		}
		if _, err := io.CopyN(io.Discard, s.r, n); err != nil {
			return 0, fmt.Errorf("read %d-octet literal: %w", n, err)
		}
		size = n // the line that closes the FETCH response follows
	}
	return 0, fmt.Errorf("no reply to %s after %d lines", tag, maxReplyLines)
}

// measureFetch has clients fetch from addr for limit, each at least once;
// pid (0: none) is charged the CPU time it used meanwhile.
func measureFetch(addr string, pid, clients int, limit time.Duration) FetchRun {
	res := FetchRun{Clients: clients}
	sessions := make([]*fetchSession, clients)
	for k := range sessions {
		s, err := dialFetch(addr, fetchUser(k))
		if err != nil {
			res.FirstError = err.Error()
			for _, s := range sessions[:k] {
				s.c.Close()
			}
			return res
		}
		sessions[k] = s
	}
	defer func() {
		for _, s := range sessions {
			s.c.Close()
		}
	}()
	var before procStats
	if pid > 0 {
		before, _ = readProcStats(pid)
	}
	start := time.Now()
	deadline := start.Add(limit)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Go(func() {
			var fetches int
			var bytes int64
			var ferr error
			// At least one FETCH, then until the deadline: bounded by the time.
			for first := true; first || time.Now().Before(deadline); first = false {
				n, err := s.fetch()
				if err != nil {
					ferr = err
					break
				}
				fetches++
				bytes += n
			}
			mu.Lock()
			res.Fetches += fetches
			res.Bytes += bytes
			if ferr != nil && res.FirstError == "" {
				res.FirstError = ferr.Error()
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	if pid > 0 {
		if after, err := readProcStats(pid); err == nil {
			res.ProxyCPU = (after.CPU - before.CPU).Seconds()
		}
	}
	res.MiBps = float64(res.Bytes) / (1 << 20) / res.Seconds
	if res.Bytes > 0 && pid > 0 {
		res.CPUPerGiB = res.ProxyCPU / (float64(res.Bytes) / (1 << 30))
	}
	return res
}

// medianFetch is the run of median rate, with every repetition's rate.
func medianFetch(runs []FetchRun) FetchRun {
	res, all := medianRun(runs, func(r FetchRun) float64 { return r.MiBps })
	res.AllMiBps = all
	return res
}

// fetchRatioPairs are the FETCH comparisons reported, numerator first.
var fetchRatioPairs = [][2]string{
	{pathHAProxy, pathDirect},
	{pathMDProto, pathDirect},
	{pathMDTCP, pathDirect},
	{pathMDProto, pathHAProxy},
	{pathMDTCP, pathHAProxy},
}

// fetchMetrics are the rows of the FETCH table.
var fetchMetrics = []metricOf[FetchRun]{
	{"MiB/s", func(r FetchRun) (float64, bool) { return measured(r.MiBps, r.Bytes > 0) }},
	{"proxy CPU s/GiB", func(r FetchRun) (float64, bool) { return measured(r.CPUPerGiB, r.Bytes > 0 && r.ProxyCPU > 0) }},
}

func fetchRatios(runs []FetchRun) map[string]Ratios {
	by := make(map[string]FetchRun)
	for _, r := range runs {
		by[r.Path] = r
	}
	return pairRatios(by, fetchRatioPairs, fetchMetrics)
}

func printFetch(w io.Writer, rep *FetchReport) {
	fmt.Fprintf(w, "FETCH of a %d MiB message, %d clients, each run %s, Dovecot (median by MiB/s)\n\n", rep.MiB, rep.Clients, rep.Limit)
	by := make(map[string]FetchRun)
	for _, r := range rep.Runs {
		by[r.Path] = r
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "metric\t")
	for _, p := range dovecotPaths {
		fmt.Fprintf(tw, "%s\t", p)
	}
	for _, pair := range fetchRatioPairs {
		fmt.Fprintf(tw, "%s/%s\t", pair[0], pair[1])
	}
	fmt.Fprintln(tw)
	for _, m := range fetchMetrics {
		fmt.Fprintf(tw, "%s\t", m.name)
		for _, p := range dovecotPaths {
			if v, ok := m.get(by[p]); ok {
				fmt.Fprintf(tw, "%s\t", num(v))
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		ratioCells(tw, rep.Ratios, "", fetchRatioPairs, m.name)
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, r := range rep.Runs {
		all := make([]string, len(r.AllMiBps))
		for i, v := range r.AllMiBps {
			all[i] = fmt.Sprintf("%.0f", v)
		}
		fmt.Fprintf(w, "fetch %s: %d fetches; MiB/s of each repetition %s\n", r.Path, r.Fetches, strings.Join(all, " "))
		if r.FirstError != "" {
			fmt.Fprintf(w, "fetch %s: first error: %s\n", r.Path, r.FirstError)
		}
	}
}

// maxFetchClients bounds -fetch-clients: the lab has that many users
// beyond the login test's.
const maxFetchClients = 16

// runFetch delivers each FETCH user's message, fetches it once on every
// IMAP path (Dovecot's caches, the page cache), then measures each path
// -dovecot-repeat times, the order rotated per repetition. addrs and
// procs are runLoginTarget's, by "PROTO PATH".
func runFetch(o options, tgt *loginTarget, addrs map[string]string, procs map[string]*proxyProc, errs map[string]string, progress io.Writer) *FetchReport {
	rep := &FetchReport{Clients: o.fetchClients, MiB: o.fetchMiB, Limit: o.dovecotTime.String()}
	msg := fetchMessage(o.fetchMiB)
	for k := range o.fetchClients {
		if err := tgt.deliver(fetchUser(k), msg); err != nil {
			errs["fetch"] = err.Error()
			return nil
		}
	}
	paths := make(map[string]string)
	for _, path := range dovecotPaths {
		addr, ok := addrs[protoIMAP+" "+path]
		if !ok {
			continue
		}
		if w := measureFetch(addr, 0, o.fetchClients, 0); w.Fetches == 0 || w.FirstError != "" {
			errs["fetch "+path] = fmt.Sprintf("warm-up: %d fetches, first error: %s", w.Fetches, w.FirstError)
			continue
		}
		paths[path] = addr
	}
	runs := make(map[string][]FetchRun)
	for r := range o.dovecotRepeat {
		order := slices.Clone(dovecotPaths)
		for range r % len(order) {
			order = append(order[1:], order[0])
		}
		for _, path := range order {
			addr, ok := paths[path]
			if !ok {
				continue
			}
			pid := 0
			if p := procs[protoIMAP+" "+path]; p != nil {
				pid = p.pid()
			}
			fmt.Fprintf(progress, "bench: fetch from dovecot %s (run %d)\n", path, r+1)
			run := measureFetch(addr, pid, o.fetchClients, o.dovecotTime)
			run.Path = path
			runs[path] = append(runs[path], run)
		}
	}
	for _, path := range dovecotPaths {
		if all := runs[path]; len(all) > 0 {
			rep.Runs = append(rep.Runs, medianFetch(all))
		}
	}
	rep.Ratios = fetchRatios(rep.Runs)
	for _, path := range []string{pathMDProto, pathMDTCP} {
		if p, ok := procs[protoIMAP+" "+path]; ok && paths[path] != "" {
			p.profileRun(o.profileDir, "fetch-dovecot-"+path, o.profileTime, func(d time.Duration) {
				measureFetch(p.addr, 0, o.fetchClients, d)
			})
		}
	}
	return rep
}
