package main

import (
	"bytes"
	"cmp"
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
)

// Machine is what the numbers were measured on.
type Machine struct {
	NProc        int    `json:"nproc"`
	CPU          string `json:"cpu"`
	MemTotal     string `json:"mem_total"`
	Kernel       string `json:"kernel"`
	GoBench      string `json:"go_bench"`
	GoBinary     string `json:"go_maildirector"` // toolchain that built the maildirector binary
	Maildirector string `json:"maildirector"`
	// MaildirectorOpenSSL is -maildirector-openssl's version output.
	MaildirectorOpenSSL string `json:"maildirector_openssl,omitempty"`
	HAProxy             string `json:"haproxy"`
	Dovecot             string `json:"dovecot,omitempty"`
	FDLimit             string `json:"fd_limit"`
}

func machineFacts(o options) Machine {
	m := Machine{NProc: runtime.NumCPU(), GoBench: runtime.Version()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.CPU = procField("/proc/cpuinfo", "model name")
	m.MemTotal = procField("/proc/meminfo", "MemTotal")
	m.FDLimit = procField("/proc/self/limits", "Max open files")
	if bi, err := buildinfo.ReadFile(o.maildirector); err == nil {
		m.GoBinary = bi.GoVersion
	}
	if out, err := exec.Command(o.maildirector, "version").Output(); err == nil {
		m.Maildirector = oneLine(out)
	}
	if o.maildirectorOpenSSL != "" {
		if out, err := exec.Command(o.maildirectorOpenSSL, "version").Output(); err == nil {
			m.MaildirectorOpenSSL = oneLine(out)
		}
	}
	if out, err := exec.Command(o.haproxy, "-v").Output(); err == nil {
		m.HAProxy, _, _ = strings.Cut(string(out), "\n")
	}
	if out, err := exec.Command("dovecot", "--version").Output(); err == nil {
		m.Dovecot = strings.TrimSpace(string(out))
	}
	return m
}

// oneLine is a command's output on one line: its lines joined by ", ".
func oneLine(out []byte) string {
	return strings.Join(strings.Split(strings.TrimSpace(string(out)), "\n"), ", ")
}

// procField returns the value after "key" in a /proc file of "key: value" or
// "key   value" lines; "" when absent.
func procField(path, key string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for line := range bytes.Lines(b) {
		if rest, ok := bytes.CutPrefix(line, []byte(key)); ok {
			return strings.Join(strings.Fields(strings.TrimLeft(string(rest), " \t:")), " ")
		}
	}
	return ""
}

// metric is one row of the table.
// metricOf is one row of a table of R: its name and how to read it
// (false: not measured).
type metricOf[R any] struct {
	name string
	get  func(R) (float64, bool)
}

type metric = metricOf[PathResult]

func idleMetric(f func(*IdleResult) float64) func(PathResult) (float64, bool) {
	return func(p PathResult) (float64, bool) {
		if p.Idle == nil || p.Idle.Failed > 0 || p.Idle.Later.RSSKiB == 0 {
			return 0, false
		}
		return f(p.Idle), true
	}
}

func measured(v float64, ok bool) (float64, bool) { return v, ok && v != 0 }

var metrics = []metric{
	{"idle KiB/session VmRSS (settle)", idleMetric(func(r *IdleResult) float64 { return r.KiB })},
	{"idle KiB/session VmRSS (settle+extra)", idleMetric(func(r *IdleResult) float64 { return r.KiBLater })},
	{"idle KiB/session RssAnon (settle+extra)", idleMetric(func(r *IdleResult) float64 { return r.AnonLater })},
	{"idle fds/session", idleMetric(func(r *IdleResult) float64 { return r.FDs })},
	{"xfer 1 session MB/s", func(p PathResult) (float64, bool) { return measured(p.Xfer1.MBps, p.Xfer1.Bytes > 0) }},
	{"xfer N sessions MB/s", func(p PathResult) (float64, bool) { return measured(p.XferN.MBps, p.XferN.Bytes > 0) }},
	{"proxy CPU s/GiB (1 session)", func(p PathResult) (float64, bool) { return measured(p.Xfer1.CPUPerGiB, p.PID > 0) }},
	{"proxy CPU s/GiB (N sessions)", func(p PathResult) (float64, bool) { return measured(p.XferN.CPUPerGiB, p.PID > 0) }},
	{"logins/s sequential", func(p PathResult) (float64, bool) { return measured(p.RateSeq.PerSecond, p.RateSeq.Done > 0) }},
	{"login p50 ms sequential", func(p PathResult) (float64, bool) { return measured(p.RateSeq.P50ms, p.RateSeq.Done > 0) }},
	{"login p99 ms sequential", func(p PathResult) (float64, bool) { return measured(p.RateSeq.P99ms, p.RateSeq.Done > 0) }},
	{"logins/s parallel", func(p PathResult) (float64, bool) { return measured(p.RatePar.PerSecond, p.RatePar.Done > 0) }},
	{"login p50 ms parallel", func(p PathResult) (float64, bool) { return measured(p.RatePar.P50ms, p.RatePar.Done > 0) }},
	{"login p99 ms parallel", func(p PathResult) (float64, bool) { return measured(p.RatePar.P99ms, p.RatePar.Done > 0) }},
}

// ratioPairs are the comparisons reported, numerator first.
var ratioPairs = [][2]string{
	{pathMDIMAP, pathHAProxy},
	{pathMDTCP, pathHAProxy},
	{pathMDIMAP, pathDirect},
	{pathMDTCP, pathDirect},
	{pathHAProxy, pathDirect},
}

func byPath(paths []PathResult) map[string]PathResult {
	m := make(map[string]PathResult, len(paths))
	for _, p := range paths {
		m[p.Path] = p
	}
	return m
}

// ratios computes every pair's ratio of every metric both sides have.
func ratios(paths []PathResult) map[string]Ratios {
	return pairRatios(byPath(paths), ratioPairs, metrics)
}

// medianRun returns the run whose key is the median (the upper one of an
// even count), and every run's key in run order.
func medianRun[R any](runs []R, key func(R) float64) (R, []float64) {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b R) int { return cmp.Compare(key(a), key(b)) })
	all := make([]float64, len(runs))
	for i, r := range runs {
		all[i] = key(r)
	}
	return sorted[len(sorted)/2], all
}

// pairRatios maps "A/B" of each pair whose paths are both in by to every
// metric's A/B, where both sides have it and B is not zero.
func pairRatios[R any](by map[string]R, pairs [][2]string, metrics []metricOf[R]) map[string]Ratios {
	out := make(map[string]Ratios)
	for _, pair := range pairs {
		a, okA := by[pair[0]]
		b, okB := by[pair[1]]
		if !okA || !okB {
			continue
		}
		r := make(Ratios)
		for _, m := range metrics {
			va, ok1 := m.get(a)
			vb, ok2 := m.get(b)
			if ok1 && ok2 && vb != 0 {
				r[m.name] = va / vb
			}
		}
		out[pair[0]+"/"+pair[1]] = r
	}
	return out
}

// budget checks each maildirector path's idle cost against the budget.
func budget(paths []PathResult) map[string]Verdict {
	out := make(map[string]Verdict)
	for _, p := range paths {
		if !strings.HasPrefix(p.Path, "md-") || p.Idle == nil || p.Idle.Later.RSSKiB == 0 {
			continue
		}
		kib := max(p.Idle.KiB, p.Idle.KiBLater)
		out[p.Path] = Verdict{KiB: kib, FDs: p.Idle.FDs, WithinK: kib <= budgetKiB, WithinF: p.Idle.FDs <= budgetFDs+0.01}
	}
	return out
}

func printReport(w io.Writer, rep *Report) {
	m := rep.Machine
	fmt.Fprintf(w, "machine: %d CPU (%s), %s RAM, kernel %s, fd limit %s\n", m.NProc, m.CPU, m.MemTotal, m.Kernel, m.FDLimit)
	fmt.Fprintf(w, "go: bench %s, maildirector built with %s; %s; %s\n", m.GoBench, m.GoBinary, m.Maildirector, m.HAProxy)
	if m.MaildirectorOpenSSL != "" {
		fmt.Fprintf(w, "openssl build: %s\n", m.MaildirectorOpenSSL)
	}
	if m.Dovecot != "" {
		fmt.Fprintf(w, "dovecot: %s\n", m.Dovecot)
	}
	fmt.Fprintf(w, "run: %v\n\n", rep.Options)
	if len(rep.Paths) > 0 {
		printIMAP(w, rep)
	}
	sep := len(rep.Paths) > 0
	section := func(print func()) {
		if sep {
			fmt.Fprintln(w)
		}
		print()
		sep = true
	}
	if rep.TLS != nil {
		section(func() { printTLS(w, rep.TLS) })
	}
	if rep.Dovecot != nil {
		section(func() { printDovecot(w, rep.Dovecot) })
	}
	if rep.LMTP != nil {
		section(func() { printLMTP(w, rep.LMTP) })
	}
	if rep.HTTP != nil {
		section(func() { printHTTP(w, rep.HTTP) })
	}
	if rep.Cluster != nil {
		if len(rep.Paths) > 0 || rep.LMTP != nil || rep.HTTP != nil {
			fmt.Fprintln(w)
		}
		printCluster(w, rep.Cluster)
	}
}

// printIMAP is the table of the IMAP suite, its budget lines and notes.
func printIMAP(w io.Writer, rep *Report) {
	by := byPath(rep.Paths)
	var cols []string
	for _, p := range allPaths {
		if _, ok := by[p]; ok {
			cols = append(cols, p)
		}
	}
	var pairs []string
	for _, pair := range ratioPairs {
		if _, ok := rep.Ratios[pair[0]+"/"+pair[1]]; ok {
			pairs = append(pairs, pair[0]+"/"+pair[1])
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "metric\t")
	for _, c := range cols {
		fmt.Fprintf(tw, "%s\t", c)
	}
	for _, p := range pairs {
		fmt.Fprintf(tw, "%s\t", p)
	}
	fmt.Fprintln(tw)
	for _, met := range metrics {
		fmt.Fprintf(tw, "%s\t", met.name)
		for _, c := range cols {
			if v, ok := met.get(by[c]); ok {
				fmt.Fprintf(tw, "%s\t", num(v))
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		for _, p := range pairs {
			if v, ok := rep.Ratios[p][met.name]; ok {
				fmt.Fprintf(tw, "%.2f\t", v)
			} else {
				fmt.Fprint(tw, "-\t")
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, c := range cols {
		p := by[c]
		if p.Idle != nil && p.Idle.Later.RSSKiB > 0 {
			fmt.Fprintf(w, "%s: pid %d, idle %d sessions opened in %.1fs; VmRSS %d → %d → %d KiB, RssAnon %d → %d → %d KiB, fds %d → %d, threads %d\n",
				c, p.PID, p.Idle.Sessions, p.Idle.OpenSeconds,
				p.Idle.Before.RSSKiB, p.Idle.Settled.RSSKiB, p.Idle.Later.RSSKiB,
				p.Idle.Before.AnonKiB, p.Idle.Settled.AnonKiB, p.Idle.Later.AnonKiB,
				p.Idle.Before.FDs, p.Idle.Settled.FDs, p.Idle.ThreadsEnd)
		}
		for _, x := range []XferResult{p.Xfer1, p.XferN} {
			if x.TimedOut || x.FirstError != "" {
				fmt.Fprintf(w, "%s: xfer %d session(s): %d bytes in %.1fs (time limit hit: %v) %s\n", c, x.Sessions, x.Bytes, x.Seconds, x.TimedOut, x.FirstError)
			}
		}
		for _, r := range []RateResult{p.RateSeq, p.RatePar} {
			if r.Failed > 0 {
				fmt.Fprintf(w, "%s: login rate with %d worker(s): %d failed, first: %s\n", c, r.Workers, r.Failed, r.FirstError)
			}
		}
		if p.Error != "" {
			fmt.Fprintf(w, "%s: ERROR %s\n", c, p.Error)
		}
	}
	for _, c := range cols {
		if v, ok := rep.Budget[c]; ok {
			verdict := func(ok bool) string {
				if ok {
					return "within"
				}
				return "OVER"
			}
			fmt.Fprintf(w, "budget %s: %.2f KiB/session (%s %.1f), %.2f fds/session (%s %.0f)\n",
				c, v.KiB, verdict(v.WithinK), budgetKiB, v.FDs, verdict(v.WithinF), budgetFDs)
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// num formats a measurement with about three significant digits.
func num(v float64) string {
	switch a := abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

// lmtpMetric is one row of the LMTP table, per target and recipient count.
type lmtpMetric struct {
	name    string
	get     func(LMTPRun) (float64, bool)
	noRatio bool // a fact about the run, not a path's figure
}

var lmtpMetrics = []lmtpMetric{
	{name: "messages/s", get: func(r LMTPRun) (float64, bool) { return measured(r.MsgPerS, r.Messages > 0) }},
	{name: "recipients/s", get: func(r LMTPRun) (float64, bool) { return measured(r.RcptPerS, r.Messages > 0) }},
	{name: "p50 ms", get: func(r LMTPRun) (float64, bool) { return measured(r.P50ms, r.Messages > 0) }},
	{name: "p99 ms", get: func(r LMTPRun) (float64, bool) { return measured(r.P99ms, r.Messages > 0) }},
	{name: "proxy CPU ms/message", get: func(r LMTPRun) (float64, bool) { return measured(r.CPUmsPerMsg, r.Messages > 0) }},
	{name: "machine CPU busy %", get: func(r LMTPRun) (float64, bool) { return measured(100*r.Busy, r.Messages > 0) }, noRatio: true},
}

// lmtpRatioPairs are the LMTP comparisons reported, numerator first.
var lmtpRatioPairs = [][2]string{
	{pathHAProxy, pathDirect},
	{pathMDLMTP, pathDirect},
	{pathMDLMTP, pathHAProxy},
}

// lmtpRowKey names a target and recipient count: "dovecot 2rcpt".
func lmtpRowKey(target string, rcpts int) string { return fmt.Sprintf("%s %drcpt", target, rcpts) }

// lmtpRows groups runs by target and recipient count, in run order, then by path.
func lmtpRows(runs []LMTPRun) ([]string, map[string]map[string]LMTPRun) {
	var keys []string
	by := make(map[string]map[string]LMTPRun)
	for _, r := range runs {
		k := lmtpRowKey(r.Target, r.Rcpts)
		if by[k] == nil {
			keys = append(keys, k)
			by[k] = make(map[string]LMTPRun)
		}
		by[k][r.Path] = r
	}
	return keys, by
}

// lmtpRatios maps "TARGET NRCPT A/B" to each metric both sides have.
func lmtpRatios(runs []LMTPRun) map[string]Ratios {
	keys, by := lmtpRows(runs)
	out := make(map[string]Ratios)
	for _, k := range keys {
		for _, pair := range lmtpRatioPairs {
			a, okA := by[k][pair[0]]
			b, okB := by[k][pair[1]]
			if !okA || !okB {
				continue
			}
			r := make(Ratios)
			for _, m := range lmtpMetrics {
				if m.noRatio {
					continue
				}
				va, ok1 := m.get(a)
				vb, ok2 := m.get(b)
				if ok1 && ok2 && vb != 0 {
					r[m.name] = va / vb
				}
			}
			out[k+" "+pair[0]+"/"+pair[1]] = r
		}
	}
	return out
}

// lmtpPaired maps "TARGET NRCPT A/B" to the messages/s ratio of each
// repetition (AllMsgPerS is in run order on every path).
func lmtpPaired(runs []LMTPRun) map[string][]float64 {
	keys, by := lmtpRows(runs)
	out := make(map[string][]float64)
	for _, k := range keys {
		for _, pair := range lmtpRatioPairs {
			a, okA := by[k][pair[0]]
			b, okB := by[k][pair[1]]
			if !okA || !okB {
				continue
			}
			var r []float64
			for i := range min(len(a.AllMsgPerS), len(b.AllMsgPerS)) {
				if b.AllMsgPerS[i] > 0 {
					r = append(r, a.AllMsgPerS[i]/b.AllMsgPerS[i])
				}
			}
			out[k+" "+pair[0]+"/"+pair[1]] = r
		}
	}
	return out
}

// printLMTP is the table of the LMTP suite: a row per target, recipient
// count and metric; a column per path, then the ratios.
func printLMTP(w io.Writer, rep *LMTPReport) {
	fmt.Fprintf(w, "LMTP: %d-byte messages, %d clients, each run %s or %d messages per client, median of %d runs\n\n",
		rep.Bytes, rep.Clients, rep.Limit, rep.Messages, rep.Repeat)
	keys, by := lmtpRows(rep.Runs)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "target\trcpts\tmetric\t")
	for _, p := range lmtpPaths {
		fmt.Fprintf(tw, "%s\t", p)
	}
	for _, pair := range lmtpRatioPairs {
		fmt.Fprintf(tw, "%s/%s\t", pair[0], pair[1])
	}
	fmt.Fprintln(tw)
	for _, k := range keys {
		target, rcpts, _ := strings.Cut(k, " ")
		for _, m := range lmtpMetrics {
			fmt.Fprintf(tw, "%s\t%s\t%s\t", target, strings.TrimSuffix(rcpts, "rcpt"), m.name)
			for _, p := range lmtpPaths {
				if v, ok := m.get(by[k][p]); ok {
					fmt.Fprintf(tw, "%s\t", num(v))
				} else {
					fmt.Fprint(tw, "-\t")
				}
			}
			ratioCells(tw, rep.Ratios, k, lmtpRatioPairs, m.name)
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, k := range keys {
		for _, p := range lmtpPaths {
			r, ok := by[k][p]
			if !ok {
				continue
			}
			all := make([]string, len(r.AllMsgPerS))
			for i, v := range r.AllMsgPerS {
				all[i] = num(v)
			}
			fmt.Fprintf(w, "lmtp %s %s: messages/s of each run %s", k, p, strings.Join(all, " "))
			if r.Failed > 0 || r.FirstError != "" {
				fmt.Fprintf(w, "; median run: %d failed, first error: %s", r.Failed, r.FirstError)
			}
			fmt.Fprintln(w)
		}
		for _, pair := range lmtpRatioPairs[:2] {
			pk := k + " " + pair[0] + "/" + pair[1]
			r := rep.Paired[pk]
			if len(r) == 0 {
				continue
			}
			all := make([]string, len(r))
			for i, v := range r {
				all[i] = fmt.Sprintf("%.2f", v)
			}
			sorted := slices.Clone(r)
			slices.Sort(sorted)
			fmt.Fprintf(w, "lmtp %s: messages/s of each repetition %s (median %.2f)\n", pk, strings.Join(all, " "), sorted[len(sorted)/2])
		}
	}
	for _, t := range allLMTPTargets {
		if e, ok := rep.Errors[t]; ok {
			fmt.Fprintf(w, "lmtp %s: ERROR %s\n", t, e)
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// ratioCells writes a table row's ratio cells: for each pair "A/B" the
// ratio of metric under key "PREFIX A/B" (just "A/B" when prefix is ""),
// "-" where there is none.
func ratioCells(tw io.Writer, ratios map[string]Ratios, prefix string, pairs [][2]string, metric string) {
	if prefix != "" {
		prefix += " "
	}
	for _, pair := range pairs {
		if v, ok := ratios[prefix+pair[0]+"/"+pair[1]][metric]; ok {
			fmt.Fprintf(tw, "%.2f\t", v)
		} else {
			fmt.Fprint(tw, "-\t")
		}
	}
}
