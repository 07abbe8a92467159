package main

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

// The dovecot suite: logins as a user makes them, IMAP and POP3, to one
// real Dovecot 2.3 instance (internal/dovecotlab, as the lmtp suite starts
// it: what a user sees) and to the in-process fake IMAP and POP3 servers
// (backend.go, pop3fake.go: the proxy's own cost), over each path:
//
//	direct    the clients to the server's plain listeners (Dovecot's
//	          IMAPDirect, POP3Direct)
//	haproxy   HAProxy mode tcp; send-proxy-v2 to Dovecot's haproxy = yes
//	          listeners
//	md-proto  maildirector's imap or pop3 frontend (it answers the client's
//	          greeting and login itself, then replays the login to the
//	          server); send_proxy v2-ssl (the default) to Dovecot
//	md-tcp    maildirector's tcp frontend; send_proxy v2 to Dovecot
//
// IMAP cycle: connect, greeting, LOGIN, SELECT INBOX, LOGOUT. POP3 cycle:
// connect, greeting, USER, PASS, STAT, QUIT. Each protocol is measured with
// -dovecot-clients clients at once (logins/s, proxy CPU per login) and with
// one client (its login's p50, and what each path adds to direct's).

const (
	// targetFake is the in-process fake IMAP and POP3 servers.
	targetFake = "fake"

	protoIMAP = "imap"
	protoPOP3 = "pop3"
	// pathMDProto is maildirector's frontend of the row's protocol.
	pathMDProto = "md-proto"
)

var (
	allLoginTargets = []string{targetDovecot, targetFake}
	dovecotProtos   = []string{protoIMAP, protoPOP3}
	dovecotPaths    = []string{pathDirect, pathHAProxy, pathMDProto, pathMDTCP}
	// dovecotRatioPairs are the comparisons reported, numerator first.
	dovecotRatioPairs = [][2]string{
		{pathHAProxy, pathDirect},
		{pathMDProto, pathDirect},
		{pathMDTCP, pathDirect},
		{pathMDProto, pathHAProxy},
		{pathMDTCP, pathHAProxy},
	}
)

// dovecotUsers is how many lab users the logins rotate over.
const dovecotUsers = 100

// LoginRun is one login-rate measurement of one protocol on one path.
type LoginRun struct {
	Target    string  `json:"target"`
	Proto     string  `json:"protocol"`
	Path      string  `json:"path"`
	Workers   int     `json:"workers"`
	Done      int     `json:"done"`
	Failed    int     `json:"failed"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"logins_per_s"`
	P50ms     float64 `json:"p50_ms"`
	P99ms     float64 `json:"p99_ms"`
	ProxyCPU  float64 `json:"proxy_cpu_seconds,omitempty"`
	CPUus     float64 `json:"proxy_cpu_us_per_login,omitempty"`
	// SysCPUus is the part of CPUus spent in the kernel (stime): the
	// sockets' own work, which any proxy making the same connections pays.
	SysCPUus   float64 `json:"proxy_sys_cpu_us_per_login,omitempty"`
	Busy       float64 `json:"machine_cpu_busy"`
	FirstError string  `json:"first_error,omitempty"`
	// AllPerSecond and AllP50ms hold every repetition in run order.
	AllPerSecond []float64 `json:"all_logins_per_s,omitempty"`
	AllP50ms     []float64 `json:"all_p50_ms,omitempty"`
}

// DovecotReport is the dovecot suite of one run.
type DovecotReport struct {
	Clients int    `json:"clients"`
	Limit   string `json:"time_limit"`
	Repeat  int    `json:"repeat"`
	// Parallel and Sequential are the median runs of each protocol and path.
	Parallel   []LoginRun `json:"parallel"`
	Sequential []LoginRun `json:"sequential"`
	// Ratios maps "TARGET PROTO A/B" to metric to ratio.
	Ratios map[string]Ratios `json:"ratios"`
	// Paired maps "TARGET PROTO A/B" to the parallel logins/s ratio of each repetition.
	Paired map[string][]float64 `json:"paired_logins_per_s_ratios"`
	Errors map[string]string    `json:"errors,omitempty"`
	Notes  []string             `json:"notes"`
	// Fetch is the FETCH table (fetch.go), against Dovecot.
	Fetch *FetchReport `json:"fetch,omitempty"`
}

// loginCycle is one user's session on addr.
type loginCycle func(addr, user string) error

// imapCycle: greeting, LOGIN (RFC 9051 section 6.2.3), SELECT INBOX
// (6.3.2), LOGOUT (6.1.3).
func imapCycle(addr, user string) error {
	c, err := net.DialTimeout("tcp", addr, clientTimeout)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(clientTimeout))
	cl := &client{c: c, r: bufio.NewReaderSize(c, 4096)}
	if err := cl.greeting(); err != nil {
		return err
	}
	for _, step := range []struct{ tag, cmd string }{
		{"a", "LOGIN " + user + " " + dovecotlab.Password},
		{"b", "SELECT INBOX"},
		{"c", "LOGOUT"},
	} {
		if _, err := io.WriteString(c, step.tag+" "+step.cmd+"\r\n"); err != nil {
			return fmt.Errorf("send %s: %w", step.cmd, err)
		}
		if err := cl.tagged(step.tag); err != nil {
			return err
		}
	}
	return nil
}

// pop3Cycle: greeting, USER, PASS (RFC 1939 section 7), STAT (5), QUIT (6).
func pop3Cycle(addr, user string) error {
	c, err := net.DialTimeout("tcp", addr, clientTimeout)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(clientTimeout))
	cl := &client{c: c, r: bufio.NewReaderSize(c, 4096)}
	ok := func(what string) error {
		line, err := cl.readLine()
		if err != nil {
			return fmt.Errorf("read reply to %s: %w", what, err)
		}
		if !strings.HasPrefix(line, "+OK") {
			return fmt.Errorf("reply to %s is not +OK: %q", what, line)
		}
		return nil
	}
	if err := ok("greeting"); err != nil {
		return err
	}
	for _, cmd := range []string{"USER " + user, "PASS " + dovecotlab.Password, "STAT", "QUIT"} {
		if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
			return fmt.Errorf("send %s: %w", cmd, err)
		}
		if err := ok(strings.Fields(cmd)[0]); err != nil {
			return err
		}
	}
	return nil
}

// measureLogins has workers clients run cycle against addr until count
// cycles are done or limit passes; users rotate over dovecotUsers lab
// users. pid (0: none) is charged the CPU time it used meanwhile.
func measureLogins(addr string, pid, workers, count int, limit time.Duration, cycle loginCycle) LoginRun {
	res := LoginRun{Workers: workers}
	lat := make([]time.Duration, count)
	ok := make([]bool, count)
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var before procStats
	var sysCPU float64
	if pid > 0 {
		before, _ = readProcStats(pid)
	}
	busyBefore, _ := readMachineCPU()
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
				err := cycle(addr, fmt.Sprintf("user%03d", i%dovecotUsers))
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
	if busyAfter, err := readMachineCPU(); err == nil {
		res.Busy = busyAfter.busySince(busyBefore)
	}
	if pid > 0 {
		if after, err := readProcStats(pid); err == nil {
			res.ProxyCPU = (after.CPU - before.CPU).Seconds()
			sysCPU = (after.SysCPU - before.SysCPU).Seconds()
		}
	}
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
	if res.Done > 0 && pid > 0 {
		res.CPUus = res.ProxyCPU * 1e6 / float64(res.Done)
		res.SysCPUus = sysCPU * 1e6 / float64(res.Done)
	}
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	return res
}

// medianLogins returns the run with the median rate (sequential runs: the
// median p50), every run's figures attached in run order.
func medianLogins(runs []LoginRun, byP50 bool) LoginRun {
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b LoginRun) int {
		if byP50 {
			return cmp.Compare(a.P50ms, b.P50ms)
		}
		return cmp.Compare(a.PerSecond, b.PerSecond)
	})
	res := sorted[len(sorted)/2]
	res.AllPerSecond, res.AllP50ms = nil, nil
	for _, r := range runs {
		res.AllPerSecond = append(res.AllPerSecond, r.PerSecond)
		res.AllP50ms = append(res.AllP50ms, r.P50ms)
	}
	return res
}

// dovecotLoginLimit bounds the cycles of one run; its time limit ends it first.
const dovecotLoginLimit = 200_000

// runDovecot runs the dovecot suite on each of -dovecot-targets.
func runDovecot(o options, dir string, progress io.Writer) *DovecotReport {
	rep := &DovecotReport{Clients: o.dovecotClients, Limit: o.dovecotTime.String(), Repeat: o.dovecotRepeat, Errors: make(map[string]string)}
	rep.Notes = []string{
		"targets: dovecot = one real Dovecot 2.3 instance (internal/dovecotlab), what a user sees; fake = the in-process fake IMAP and POP3 servers, the proxy's own cost (no PROXY header to them)",
		"paths: direct = the server's plain listeners; haproxy = mode tcp, send-proxy-v2 to Dovecot's haproxy = yes listeners; md-proto = maildirector's imap (IMAP rows) or pop3 (POP3 rows) frontend, send_proxy v2-ssl to Dovecot; md-tcp = its tcp frontend, send_proxy v2 to Dovecot",
		"IMAP cycle = connect, greeting, LOGIN, SELECT INBOX, LOGOUT; POP3 cycle = connect, greeting, USER, PASS, STAT, QUIT; users rotate over 100 lab users with empty mailboxes",
		"N clients rows: -dovecot-clients clients for -dovecot-time; 1 client rows: one client, whose p50 is one login's latency; added p50 = the path's p50 - direct's; rows are the median of -dovecot-repeat runs, the paths taking turns in an order rotated per repetition",
		"of which in the kernel: the proxy's system time (stime) per login, the connections' TCP work done on its behalf (loopback delivery included), which any proxy making the same connections pays; the rest of its CPU is its own code and runtime",
		"FETCH: -fetch-clients clients, each logged in as a user of its own whose INBOX holds one -fetch-mib MiB message, fetch it whole (FETCH 1 BODY.PEEK[]) again and again for -dovecot-time, on each IMAP path to Dovecot (md-proto = the imap frontend); proxy CPU s/GiB is the proxy's utime+stime per GiB fetched",
		"the servers, the clients and the proxy share this machine's CPUs: a proxy's CPU per login comes straight off the parallel rate here, which a proxy on its own host would not cost Dovecot; Dovecot's own CPU is not measured",
	}
	for _, t := range o.dovecotTargets {
		fmt.Fprintf(progress, "bench: logins to %s ...\n", t)
		par, seq, fetch, err := runLoginTarget(o, dir, t, rep.Errors, progress)
		if err != nil {
			rep.Errors[t] = err.Error()
			fmt.Fprintf(progress, "bench: logins to %s: %v\n", t, err)
		}
		if fetch != nil {
			rep.Fetch = fetch
		}
		rep.Parallel = append(rep.Parallel, par...)
		rep.Sequential = append(rep.Sequential, seq...)
	}
	rep.Ratios, rep.Paired = dovecotRatios(rep.Parallel, rep.Sequential)
	return rep
}

// loginTarget is a running server of each protocol and how the paths
// reach it.
type loginTarget struct {
	direct    map[string]string // by protocol: plain listener
	proxied   map[string]string // by protocol: where the proxies go
	sendProxy bool              // proxied wants a PROXY v2 header
	close     func()
	// deliver puts a message into a user's INBOX (Dovecot only; nil for
	// the fakes).
	deliver func(user string, msg []byte) error
}

// startLoginTarget starts Dovecot (its maildirs in a new directory under
// mailDir; "" means the system's temporary directory) or the fake servers.
func startLoginTarget(name, mailDir string) (*loginTarget, error) {
	switch name {
	case targetDovecot:
		labDir, err := os.MkdirTemp(mailDir, "maildirector-bench-lab-")
		if err != nil {
			return nil, err
		}
		lab, err := dovecotlab.Start(dovecotlab.Options{Dir: labDir, Instances: 1, Users: dovecotUsers + maxFetchClients})
		if err != nil {
			os.RemoveAll(labDir)
			return nil, err
		}
		inst := lab.Instances[0]
		hp := func(port int) string { return net.JoinHostPort(inst.Address, strconv.Itoa(port)) }
		return &loginTarget{
			direct:    map[string]string{protoIMAP: hp(inst.Ports.IMAPDirect), protoPOP3: hp(inst.Ports.POP3Direct)},
			proxied:   map[string]string{protoIMAP: hp(inst.Ports.IMAP), protoPOP3: hp(inst.Ports.POP3)},
			sendProxy: true,
			close: func() {
				lab.Close()
				os.RemoveAll(labDir)
			},
			deliver: inst.Deliver,
		}, nil
	case targetFake:
		imap, err := startBackend("127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		pop3, err := startPOP3Backend("127.0.0.1:0")
		if err != nil {
			imap.Close()
			return nil, err
		}
		addrs := map[string]string{protoIMAP: imap.Addr(), protoPOP3: pop3.Addr()}
		return &loginTarget{direct: addrs, proxied: addrs, close: func() {
			imap.Close()
			pop3.Close()
		}}, nil
	}
	return nil, fmt.Errorf("unknown login target %q", name)
}

// runLoginTarget starts the target and a proxy of each kind and protocol
// in front of it, warms every path up, then measures: for each
// repetition, each protocol, each path (the order rotated per
// repetition), N clients then one. It returns the median runs; a path
// that failed to start or warm up is in errs by "TARGET PROTO PATH".
func runLoginTarget(o options, dir, target string, errs map[string]string, progress io.Writer) (par, seq []LoginRun, fetch *FetchReport, err error) {
	tgt, err := startLoginTarget(target, o.lmtpMailDir)
	if err != nil {
		return nil, nil, nil, err
	}
	defer tgt.close()
	cycles := map[string]loginCycle{protoIMAP: imapCycle, protoPOP3: pop3Cycle}

	addrs := make(map[string]string) // "PROTO PATH"
	procs := make(map[string]*proxyProc)
	for _, proto := range dovecotProtos {
		addrs[proto+" "+pathDirect] = tgt.direct[proto]
		for _, path := range dovecotPaths[1:] {
			key := proto + " " + path
			proc, err := startLoginProxy(o, dir, target, proto, path, tgt.proxied[proto], tgt.sendProxy)
			if err != nil {
				errs[target+" "+key] = err.Error()
				fmt.Fprintf(progress, "bench: logins to %s %s: %v\n", target, key, err)
				continue
			}
			defer proc.stop()
			addrs[key], procs[key] = proc.addr, proc
		}
	}
	// Warm up: Dovecot's login and auth processes, every user's maildir,
	// the proxies' pools.
	for key, addr := range addrs {
		proto, _, _ := strings.Cut(key, " ")
		w := measureLogins(addr, 0, 4, dovecotUsers, 30*time.Second, cycles[proto])
		if w.Failed > 0 || w.Done == 0 {
			errs[target+" "+key] = fmt.Sprintf("warm-up: %d done, %d failed, first error: %s", w.Done, w.Failed, w.FirstError)
			delete(addrs, key)
		}
	}

	parRuns := make(map[string][]LoginRun)
	seqRuns := make(map[string][]LoginRun)
	for r := range o.dovecotRepeat {
		for _, proto := range dovecotProtos {
			order := slices.Clone(dovecotPaths)
			for range r % len(order) {
				order = append(order[1:], order[0])
			}
			for _, path := range order {
				key := proto + " " + path
				addr, ok := addrs[key]
				if !ok {
					continue
				}
				pid := 0
				if p := procs[key]; p != nil {
					pid = p.pid()
				}
				fmt.Fprintf(progress, "bench: logins to %s %s (run %d)\n", target, key, r+1)
				for _, workers := range []int{o.dovecotClients, 1} {
					run := measureLogins(addr, pid, workers, dovecotLoginLimit, o.dovecotTime, cycles[proto])
					run.Target, run.Proto, run.Path = target, proto, path
					if workers == 1 {
						seqRuns[key] = append(seqRuns[key], run)
					} else {
						parRuns[key] = append(parRuns[key], run)
					}
				}
			}
		}
	}
	for _, proto := range dovecotProtos {
		for _, path := range dovecotPaths {
			key := proto + " " + path
			if len(parRuns[key]) > 0 {
				par = append(par, medianLogins(parRuns[key], false))
				seq = append(seq, medianLogins(seqRuns[key], true))
			}
		}
	}
	for _, proto := range dovecotProtos {
		for _, path := range []string{pathMDProto, pathMDTCP} {
			proc, ok := procs[proto+" "+path]
			if !ok {
				continue
			}
			proc.profileRun(o.profileDir, "logins-"+target+"-"+proto+"-"+path, o.profileTime, func(d time.Duration) {
				measureLogins(proc.addr, 0, o.dovecotClients, dovecotLoginLimit, d, cycles[proto])
			})
		}
	}
	if tgt.deliver != nil && o.fetchClients > 0 {
		fetch = runFetch(o, tgt, addrs, procs, errs, progress)
	}
	return par, seq, fetch, nil
}

// startLoginProxy starts the proxy of path for proto in front of server,
// which wants a PROXY v2 header when sendProxy is set (Dovecot's
// haproxy = yes listeners).
func startLoginProxy(o options, dir, target, proto, path, server string, sendProxy bool) (*proxyProc, error) {
	listen, err := freeAddr()
	if err != nil {
		return nil, err
	}
	name := "logins-" + target + "-" + proto + "-" + path
	haproxyOpts, mdProto, mdTCP := "", "none", "none"
	if sendProxy {
		haproxyOpts, mdProto, mdTCP = "send-proxy-v2", "v2-ssl", "v2"
	}
	switch path {
	case pathHAProxy:
		return startHAProxy(o.haproxy, dir, name, listen, haproxyConfig(listen, server, haproxyOpts, haproxyMaxconn))
	case pathMDProto:
		cfg := maildirectorFrontendConfig(mdFrontend{protocol: proto, listen: listen, server: server, sendProxy: mdProto, logLevel: o.logLevel})
		return startMaildirector(o.maildirector, dir, name, listen, cfg, o.profileDir != "")
	case pathMDTCP:
		cfg := maildirectorFrontendConfig(mdFrontend{protocol: "tcp", listen: listen, server: server, sendProxy: mdTCP, logLevel: o.logLevel})
		return startMaildirector(o.maildirector, dir, name, listen, cfg, o.profileDir != "")
	}
	return nil, fmt.Errorf("unknown login path %q", path)
}

// loginMetric is one row of the dovecot table, from a protocol's parallel
// and sequential runs on one path (direct's for the added latency).
type loginMetric struct {
	name string
	get  func(par, seq, directSeq LoginRun) (float64, bool)
	// ratio: whether a ratio of this metric says something.
	ratio bool
}

var loginMetrics = []loginMetric{
	{"logins/s, N clients", func(p, _, _ LoginRun) (float64, bool) { return measured(p.PerSecond, p.Done > 0) }, true},
	{"proxy CPU µs/login, N clients", func(p, _, _ LoginRun) (float64, bool) { return measured(p.CPUus, p.Done > 0) }, true},
	{"of which in the kernel", func(p, _, _ LoginRun) (float64, bool) { return measured(p.SysCPUus, p.Done > 0) }, true},
	{"login p99 ms, N clients", func(p, _, _ LoginRun) (float64, bool) { return measured(p.P99ms, p.Done > 0) }, true},
	{"logins/s, 1 client", func(_, s, _ LoginRun) (float64, bool) { return measured(s.PerSecond, s.Done > 0) }, true},
	{"login p50 ms, 1 client", func(_, s, _ LoginRun) (float64, bool) { return measured(s.P50ms, s.Done > 0) }, true},
	{"added p50 ms vs direct", func(_, s, d LoginRun) (float64, bool) {
		return s.P50ms - d.P50ms, s.Done > 0 && d.Done > 0 && s.Path != pathDirect
	}, true},
	{"machine CPU busy %, N clients", func(p, _, _ LoginRun) (float64, bool) { return measured(100*p.Busy, p.Done > 0) }, false},
}

// loginKey names a target, protocol and path: "dovecot imap md-tcp".
func loginKey(r LoginRun) string { return r.Target + " " + r.Proto + " " + r.Path }

// loginRows indexes runs by loginKey.
func loginRows(runs []LoginRun) map[string]LoginRun {
	by := make(map[string]LoginRun, len(runs))
	for _, r := range runs {
		by[loginKey(r)] = r
	}
	return by
}

// loginGroups are the "TARGET PROTO" rows of runs, in run order.
func loginGroups(runs []LoginRun) []string {
	var out []string
	for _, r := range runs {
		if g := r.Target + " " + r.Proto; !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// dovecotRatios computes every pair's ratio of every metric both sides
// have, and the per-repetition ratios of the parallel rate, by
// "TARGET PROTO A/B".
func dovecotRatios(par, seq []LoginRun) (map[string]Ratios, map[string][]float64) {
	p, s := loginRows(par), loginRows(seq)
	ratios := make(map[string]Ratios)
	paired := make(map[string][]float64)
	for _, g := range loginGroups(par) {
		d := s[g+" "+pathDirect]
		for _, pair := range dovecotRatioPairs {
			ka, kb := g+" "+pair[0], g+" "+pair[1]
			pa, okA := p[ka]
			pb, okB := p[kb]
			if !okA || !okB {
				continue
			}
			r := make(Ratios)
			for _, m := range loginMetrics {
				if !m.ratio {
					continue
				}
				va, ok1 := m.get(pa, s[ka], d)
				vb, ok2 := m.get(pb, s[kb], d)
				if ok1 && ok2 && vb != 0 {
					r[m.name] = va / vb
				}
			}
			k := g + " " + pair[0] + "/" + pair[1]
			ratios[k] = r
			var all []float64
			for i := range min(len(pa.AllPerSecond), len(pb.AllPerSecond)) {
				if pb.AllPerSecond[i] > 0 {
					all = append(all, pa.AllPerSecond[i]/pb.AllPerSecond[i])
				}
			}
			paired[k] = all
		}
	}
	return ratios, paired
}

// printDovecot is the table of the dovecot suite: a row per target,
// protocol and metric, a column per path, then the ratios.
func printDovecot(w io.Writer, rep *DovecotReport) {
	fmt.Fprintf(w, "Logins: N = %d clients, each run %s, median of %d runs\n\n", rep.Clients, rep.Limit, rep.Repeat)
	p, s := loginRows(rep.Parallel), loginRows(rep.Sequential)
	groups := loginGroups(rep.Parallel)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "target\tproto\tmetric\t")
	for _, path := range dovecotPaths {
		fmt.Fprintf(tw, "%s\t", path)
	}
	for _, pair := range dovecotRatioPairs {
		fmt.Fprintf(tw, "%s/%s\t", pair[0], pair[1])
	}
	fmt.Fprintln(tw)
	for _, g := range groups {
		target, proto, _ := strings.Cut(g, " ")
		d := s[g+" "+pathDirect]
		for _, m := range loginMetrics {
			fmt.Fprintf(tw, "%s\t%s\t%s\t", target, proto, m.name)
			for _, path := range dovecotPaths {
				k := g + " " + path
				if _, ok := p[k]; ok {
					if v, ok := m.get(p[k], s[k], d); ok {
						fmt.Fprintf(tw, "%s\t", num(v))
						continue
					}
				}
				fmt.Fprint(tw, "-\t")
			}
			ratioCells(tw, rep.Ratios, g, dovecotRatioPairs, m.name)
			fmt.Fprintln(tw)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, runs := range [][]LoginRun{rep.Parallel, rep.Sequential} {
		for _, r := range runs {
			if r.Failed > 0 || r.FirstError != "" {
				fmt.Fprintf(w, "logins %s, %d client(s): %d failed, first error: %s\n", loginKey(r), r.Workers, r.Failed, r.FirstError)
			}
		}
	}
	for _, g := range groups {
		for _, pair := range dovecotRatioPairs[:3] {
			k := g + " " + pair[0] + "/" + pair[1]
			if r := rep.Paired[k]; len(r) > 1 {
				all := make([]string, len(r))
				for i, v := range r {
					all[i] = fmt.Sprintf("%.2f", v)
				}
				fmt.Fprintf(w, "logins %s: logins/s ratio of each repetition %s\n", k, strings.Join(all, " "))
			}
		}
	}
	var errKeys []string
	for k := range rep.Errors {
		errKeys = append(errKeys, k)
	}
	slices.Sort(errKeys)
	for _, k := range errKeys {
		fmt.Fprintf(w, "logins %s: ERROR %s\n", k, rep.Errors[k])
	}
	if rep.Fetch != nil {
		fmt.Fprintln(w)
		printFetch(w, rep.Fetch)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}
