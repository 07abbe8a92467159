// Command bench measures maildirector against HAProxy 2.6 and against direct
// connections, in one run, on loopback, and reports the ratios.
//
// The imap suite starts a fake IMAP server in-process and four paths to it:
// direct, HAProxy in mode tcp, maildirector with an imap frontend and
// maildirector with a tcp frontend (like for like with HAProxy). On each
// path it measures the proxy process's memory and descriptors per idle
// logged-in session (from /proc, nothing asked of the proxy), bulk
// throughput with one and with several sessions, and the
// connect+LOGIN+LOGOUT rate sequentially and in parallel. The budget under
// test: 2 fds and at most 3.5 KiB per idle proxied session (HAProxy 2.6:
// 3.5 KiB, 2 fds).
//
// The tls suite (tls.go) measures TLS handshakes/s and the proxy's CPU per
// handshake, maildirector (imap frontend with implicit TLS or STARTTLS, tcp
// frontend with implicit TLS) against HAProxy terminating TLS on the same
// certificate (ECDSA P-256 and RSA 2048, generated per run), full and
// resumed, in front of the fake IMAP server; and the memory and descriptors
// per idle logged-in TLS session. The goals: within 1.2× HAProxy's
// CPU per handshake, and 2× its memory per idle TLS session.
//
// The dovecot suite (dovecot.go) measures IMAP (LOGIN, SELECT INBOX,
// LOGOUT) and POP3 (USER, PASS, STAT, QUIT) login cycles against one real
// Dovecot 2.3 (internal/dovecotlab) and against the in-process fake IMAP
// and POP3 servers, directly, through HAProxy (send-proxy-v2 to Dovecot),
// maildirector's protocol frontend and its tcp frontend: logins/s with 8
// clients, the proxy's CPU per login, one client's p50 and what each path
// adds to it.
//
// The http suite (http.go) GETs objects from a real nginx object store
// (internal/nginxlab) directly, through HAProxy in mode http and through
// maildirector's http frontend: requests/s of 4 KiB GETs with 16 keep-alive
// clients, MB/s of 100 MiB GETs, and maildirector's VmRSS through a 1 GiB
// PUT and GET. The goal: at least HAProxy's rate and throughput.
//
// The lmtp suite (lmtp.go) has several MTA clients deliver 10 KiB messages
// with one and with two recipients to real Dovecot LMTP (internal/dovecotlab)
// and to an in-process discard sink, directly, through HAProxy and through
// maildirector's lmtp frontend, and reports messages/s, recipients/s,
// latency and proxy CPU per message. The goal: maildirector at
// 0.90× direct or better against Dovecot, although it stores and forwards.
//
// The cluster suite (cluster.go) logs a user population in through one
// maildirector, three without [cluster] and three sharing placement in a
// real three-member etcd (internal/etcdlab): logins/s of first (new
// placement) and later logins, and etcd writes per login. The issue's
// goal: etcd costs under 10 % of the login throughput.
//
//	make build && go run ./bench -maildirector bin/maildirector
//	go run ./bench -maildirector bin/maildirector -quick -json /tmp/bench.json
//	go run ./bench -maildirector bin/maildirector -paths haproxy,md-imap -n 8000
//	go run ./bench -maildirector bin/maildirector -suites lmtp -lmtp-targets dovecot
//	go run ./bench -maildirector bin/maildirector -suites http
//	go run ./bench -maildirector bin/maildirector -suites cluster
//	go run ./bench -maildirector bin/maildirector -suites tls -profile /tmp/prof
//	go run ./bench -maildirector bin/maildirector -suites dovecot -dovecot-targets dovecot
//
// Every loop is bounded in count and time; the full run takes about twelve
// minutes on a loaded 2-vCPU machine (imap, tls and dovecot about three each),
// -quick about two. The lmtp suite
// needs root and Dovecot (scripts/deps.sh), as the integration tests do.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// options are the command line.
type options struct {
	maildirector string
	// maildirectorOpenSSL is a build with the openssl tag (make
	// build-openssl), measured in the TLS suite's RSA rows too ("" none).
	maildirectorOpenSSL string
	haproxy             string
	paths               []string
	n                   int
	bytes               int64
	xferLimit           time.Duration
	parallel            int
	repeat              int
	logins              int
	loginWorkers        int
	rateLimit           time.Duration
	settle              time.Duration
	extra               time.Duration
	logLevel            string
	jsonPath            string
	quick               bool
	profileDir          string        // maildirector's CPU profiles, one per suite and path
	profileTime         time.Duration // each profiled run's length

	suites         []string // imap, lmtp
	lmtpTargets    []string
	lmtpRcpts      []int
	lmtpPipelining bool
	lmtpClients    int
	lmtpBytes      int
	lmtpMessages   int // per client and run
	lmtpRepeat     int
	lmtpMailDir    string
	lmtpTime       time.Duration

	httpClients int
	httpTime    time.Duration
	httpRepeat  int
	httpBigMiB  int

	tlsN       int // idle TLS sessions per path
	tlsClients int
	tlsTime    time.Duration
	tlsRepeat  int

	dovecotTargets []string
	dovecotClients int
	fetchClients   int // FETCH clients against Dovecot (fetch.go); 0 none
	fetchMiB       int // size of the message each fetches
	dovecotTime    time.Duration
	dovecotRepeat  int

	clusterUsers int
	// clusterClients are the cluster suite's concurrent clients.
	clusterClients int
}

// allSuites in run order; defaultSuites are those a plain run has (the
// cluster suite is make bench-cluster's: it starts etcd and three nodes).
var (
	allSuites     = []string{suiteIMAP, suiteTLS, suiteDovecot, suiteLMTP, suiteHTTP, suiteCluster}
	defaultSuites = []string{suiteIMAP, suiteTLS, suiteDovecot, suiteLMTP, suiteHTTP}
)

const (
	suiteIMAP    = "imap"
	suiteTLS     = "tls"
	suiteDovecot = "dovecot"
	suiteLMTP    = "lmtp"
	suiteHTTP    = "http"
	// suiteCluster is cluster.go: logins through nodes sharing etcd.
	suiteCluster = "cluster"
)

// allPaths in run order.
var allPaths = []string{pathDirect, pathHAProxy, pathMDIMAP, pathMDTCP}

const (
	pathDirect  = "direct"
	pathHAProxy = "haproxy"
	pathMDIMAP  = "md-imap"
	pathMDTCP   = "md-tcp"
)

// haproxyMaxconn is HAProxy's global and frontend maxconn: each session
// takes 2 fds and HAProxy wants them under the hard limit (20000 here).
const haproxyMaxconn = 9000

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.maildirector, "maildirector", "bin/maildirector", "maildirector binary")
	fs.StringVar(&o.maildirectorOpenSSL, "maildirector-openssl", "", "a maildirector built with the openssl tag (make build-openssl): the TLS suite's RSA rows with implicit TLS measure it too, as paths md-imap+ossl and md-tcp+ossl")
	fs.StringVar(&o.haproxy, "haproxy", "", "HAProxy binary (default: haproxy on PATH, else /usr/sbin/haproxy)")
	paths := fs.String("paths", strings.Join(allPaths, ","), "paths to measure, comma separated")
	fs.IntVar(&o.n, "n", 4000, "idle sessions per path")
	mib := fs.Int64("mib", 1024, "MiB moved server → client per throughput test (split over the parallel sessions)")
	fs.DurationVar(&o.xferLimit, "xfer-time", 10*time.Second, "time limit of one throughput test")
	fs.IntVar(&o.parallel, "parallel", 8, "sessions of the parallel throughput test")
	fs.IntVar(&o.repeat, "repeat", 3, "runs of each throughput and login-rate test; the median is reported")
	fs.IntVar(&o.logins, "logins", 2000, "sessions per login-rate test")
	fs.IntVar(&o.loginWorkers, "login-workers", 16, "concurrent clients of the parallel login-rate test")
	fs.DurationVar(&o.rateLimit, "rate-time", 60*time.Second, "time limit of one login-rate test")
	fs.DurationVar(&o.settle, "settle", 2*time.Second, "wait after the last idle login before the first reading")
	fs.DurationVar(&o.extra, "extra-wait", 10*time.Second, "further wait before the second reading (Go returns freed memory lazily; 2m+ sees the periodic GC)")
	fs.StringVar(&o.logLevel, "md-log-level", "warn", "maildirector log_level (HAProxy logs nothing here)")
	fs.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	fs.StringVar(&o.profileDir, "profile", "", "after the measured runs, profile maildirector through one more run of each workload (parallel logins, LMTP rows, HTTP tests) and write its CPU profiles into this directory: go tool pprof -top bin/maildirector DIR/NAME.pprof")
	fs.DurationVar(&o.profileTime, "profile-time", 5*time.Second, "length of each profiled run (-profile)")
	fs.BoolVar(&o.quick, "quick", false, "small run (n=500, 128 MiB, 300 logins, one repetition, shorter waits and LMTP runs) that ends in under a minute; explicit flags still win")
	suites := fs.String("suites", strings.Join(defaultSuites, ","), "suites to run, comma separated: imap (fake IMAP server; -paths), tls (TLS handshakes and idle TLS sessions, fake IMAP server), dovecot (IMAP and POP3 logins to a real Dovecot), lmtp (Dovecot and a fake LMTP sink), http (an nginx object store), cluster (three nodes sharing a real etcd; not in the default list)")
	targets := fs.String("lmtp-targets", strings.Join(allLMTPTargets, ","), "what the LMTP paths deliver to, comma separated")
	fs.BoolVar(&o.lmtpPipelining, "lmtp-pipelining", false, "LMTP clients pipeline MAIL, RCPT and DATA as Postfix does (RFC 2920); otherwise go-smtp's client waits for each reply")
	rcpts := fs.String("lmtp-rcpts", "1,2", "recipients per LMTP message, comma separated; each is a row")
	fs.IntVar(&o.lmtpClients, "lmtp-clients", 4, "concurrent LMTP sessions (the MTA's delivery agents)")
	kib := fs.Int("lmtp-kib", 10, "LMTP message size in KiB")
	fs.IntVar(&o.lmtpMessages, "lmtp-messages", 5000, "messages each LMTP client sends per run at most")
	fs.DurationVar(&o.lmtpTime, "lmtp-time", 2*time.Second, "time limit of one LMTP run")
	fs.StringVar(&o.lmtpMailDir, "lmtp-mail-dir", "", "where Dovecot's maildirs go, in a new subdirectory (default: the system's temporary directory; /dev/shm takes the disk out)")
	fs.IntVar(&o.lmtpRepeat, "lmtp-repeat", 7, "runs of each LMTP row, the paths taking turns; the median is reported")
	fs.IntVar(&o.httpClients, "http-clients", 16, "keep-alive clients of the HTTP 4 KiB GET test")
	fs.DurationVar(&o.httpTime, "http-time", 5*time.Second, "time limit of one HTTP run")
	fs.IntVar(&o.httpRepeat, "http-repeat", 3, "runs of each HTTP test and path, the paths taking turns; the median is reported")
	fs.IntVar(&o.httpBigMiB, "http-big-mib", 100, "size of the HTTP big object in MiB")
	fs.IntVar(&o.clusterUsers, "cluster-users", 2000, "users of the cluster suite (each a new placement on its first login)")
	fs.IntVar(&o.clusterClients, "cluster-clients", 128, "concurrent clients of the cluster suite, spread over the nodes (enough to keep every node busy: the rate is then the nodes' throughput, not one login's latency)")
	fs.IntVar(&o.tlsN, "tls-n", 2000, "idle TLS sessions per path (0: none)")
	fs.IntVar(&o.tlsClients, "tls-clients", 8, "concurrent clients of the TLS handshake test")
	fs.DurationVar(&o.tlsTime, "tls-time", 2*time.Second, "time limit of one TLS handshake run")
	fs.IntVar(&o.tlsRepeat, "tls-repeat", 3, "runs of each TLS row and path, the paths taking turns; the median is reported")
	dtargets := fs.String("dovecot-targets", strings.Join(allLoginTargets, ","), "what the dovecot suite's logins go to, comma separated: dovecot (a real Dovecot), fake (the in-process fake IMAP and POP3 servers)")
	fs.IntVar(&o.dovecotClients, "dovecot-clients", 8, "concurrent clients of the Dovecot login test")
	fs.IntVar(&o.fetchClients, "fetch-clients", 4, "clients of the dovecot suite's FETCH test, each fetching its own big message from Dovecot again and again for -dovecot-time (0: no FETCH test)")
	fs.IntVar(&o.fetchMiB, "fetch-mib", 10, "size in MiB of the FETCH test's message")
	fs.DurationVar(&o.dovecotTime, "dovecot-time", 2*time.Second, "time limit of one Dovecot login run (parallel, then sequential)")
	fs.IntVar(&o.dovecotRepeat, "dovecot-repeat", 3, "runs of each Dovecot login test and path, the paths taking turns; the median is reported")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		quick := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		quick("n", func() { o.n = 500 })
		quick("mib", func() { *mib = 128 })
		quick("xfer-time", func() { o.xferLimit = 3 * time.Second })
		quick("logins", func() { o.logins = 300 })
		quick("repeat", func() { o.repeat = 1 })
		quick("settle", func() { o.settle = time.Second })
		quick("extra-wait", func() { o.extra = 2 * time.Second })
		quick("lmtp-time", func() { o.lmtpTime = time.Second })
		quick("lmtp-repeat", func() { o.lmtpRepeat = 1 })
		quick("http-time", func() { o.httpTime = 2 * time.Second })
		quick("http-repeat", func() { o.httpRepeat = 1 })
		quick("cluster-users", func() { o.clusterUsers = 300 })
		quick("tls-n", func() { o.tlsN = 300 })
		quick("tls-time", func() { o.tlsTime = time.Second })
		quick("tls-repeat", func() { o.tlsRepeat = 1 })
		quick("dovecot-time", func() { o.dovecotTime = time.Second })
		quick("dovecot-repeat", func() { o.dovecotRepeat = 1 })
	}
	o.bytes = *mib << 20
	for p := range strings.SplitSeq(*paths, ",") {
		p = strings.TrimSpace(p)
		if !isPath(p) {
			return o, fmt.Errorf("unknown path %q (want %s)", p, strings.Join(allPaths, ", "))
		}
		o.paths = append(o.paths, p)
	}
	var errs []error
	for v := range strings.SplitSeq(*suites, ",") {
		v = strings.TrimSpace(v)
		if !slices.Contains(allSuites, v) {
			errs = append(errs, fmt.Errorf("unknown suite %q (want %s)", v, strings.Join(allSuites, ", ")))
			continue
		}
		o.suites = append(o.suites, v)
	}
	for v := range strings.SplitSeq(*targets, ",") {
		v = strings.TrimSpace(v)
		if !slices.Contains(allLMTPTargets, v) {
			errs = append(errs, fmt.Errorf("unknown LMTP target %q (want %s)", v, strings.Join(allLMTPTargets, ", ")))
			continue
		}
		o.lmtpTargets = append(o.lmtpTargets, v)
	}
	for v := range strings.SplitSeq(*dtargets, ",") {
		v = strings.TrimSpace(v)
		if !slices.Contains(allLoginTargets, v) {
			errs = append(errs, fmt.Errorf("unknown dovecot target %q (want %s)", v, strings.Join(allLoginTargets, ", ")))
			continue
		}
		o.dovecotTargets = append(o.dovecotTargets, v)
	}
	for v := range strings.SplitSeq(*rcpts, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || n < 1 || n > lmtpUsers {
			errs = append(errs, fmt.Errorf("-lmtp-rcpts %q: want numbers 1..%d", v, lmtpUsers))
			continue
		}
		o.lmtpRcpts = append(o.lmtpRcpts, n)
	}
	if *kib < 1 || *kib > 10<<10 || o.lmtpClients < 1 || o.lmtpClients > 100 || o.lmtpMessages < 1 || o.lmtpTime <= 0 || o.lmtpRepeat < 1 || o.lmtpRepeat > 99 {
		errs = append(errs, errors.New("-lmtp-kib must be 1..10240, -lmtp-clients 1..100, -lmtp-messages at least 1, -lmtp-time positive, -lmtp-repeat 1..99"))
	}
	o.lmtpBytes = *kib << 10
	if o.httpClients < 1 || o.httpClients > 1000 || o.httpTime <= 0 || o.httpRepeat < 1 || o.httpRepeat > 20 || o.httpBigMiB < 1 || o.httpBigMiB > 4096 {
		errs = append(errs, errors.New("-http-clients must be 1..1000, -http-time positive, -http-repeat 1..20, -http-big-mib 1..4096"))
	}
	if o.clusterUsers < 1 || o.clusterUsers > 1000000 || o.clusterClients < 1 || o.clusterClients > 4096 {
		errs = append(errs, errors.New("-cluster-users must be 1..1000000, -cluster-clients 1..4096"))
	}
	if o.tlsN < 0 || o.tlsN > haproxyMaxconn-500 || o.tlsClients < 1 || o.tlsClients > 1000 || o.tlsTime <= 0 || o.tlsRepeat < 1 || o.tlsRepeat > 20 {
		errs = append(errs, fmt.Errorf("-tls-n must be 0..%d, -tls-clients 1..1000, -tls-time positive, -tls-repeat 1..20", haproxyMaxconn-500))
	}
	if o.fetchClients < 0 || o.fetchClients > maxFetchClients || o.fetchMiB < 1 || o.fetchMiB > 100 {
		errs = append(errs, fmt.Errorf("-fetch-clients must be 0..%d and -fetch-mib 1..100", maxFetchClients))
	}
	if o.dovecotClients < 1 || o.dovecotClients > 100 || o.dovecotTime <= 0 || o.dovecotRepeat < 1 || o.dovecotRepeat > 20 {
		errs = append(errs, errors.New("-dovecot-clients must be 1..100, -dovecot-time positive, -dovecot-repeat 1..20"))
	}
	if o.n < 1 || o.n > haproxyMaxconn-500 {
		errs = append(errs, fmt.Errorf("-n %d: want 1..%d (fd limit)", o.n, haproxyMaxconn-500))
	}
	if *mib < 1 || o.parallel < 1 || o.logins < 1 || o.loginWorkers < 1 || o.repeat < 1 || o.repeat > 20 {
		errs = append(errs, errors.New("-mib, -parallel, -logins and -login-workers must be at least 1, -repeat 1..20"))
	}
	if o.haproxy == "" {
		o.haproxy = "/usr/sbin/haproxy"
		if p, err := exec.LookPath("haproxy"); err == nil {
			o.haproxy = p
		}
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			errs = append(errs, err)
		}
	}
	return o, errors.Join(errs...)
}

func isPath(p string) bool {
	for _, q := range allPaths {
		if p == q {
			return true
		}
	}
	return false
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == refServeArg {
		if err := serveHTTPReference(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	rep, err := run(o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	printReport(os.Stdout, rep)
	if o.jsonPath != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.jsonPath, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
}

// PathResult is everything measured on one path.
type PathResult struct {
	Path     string      `json:"path"`
	PID      int         `json:"pid,omitempty"`
	Idle     *IdleResult `json:"idle,omitempty"` // nil for direct: no proxy process
	Xfer1    XferResult  `json:"xfer_single"`
	XferN    XferResult  `json:"xfer_parallel"`
	RateSeq  RateResult  `json:"rate_sequential"`
	RatePar  RateResult  `json:"rate_parallel"`
	Error    string      `json:"error,omitempty"`
	Duration float64     `json:"seconds"`
}

// Report is one run.
type Report struct {
	Machine Machine            `json:"machine"`
	Options map[string]any     `json:"options"`
	Paths   []PathResult       `json:"paths"`
	Ratios  map[string]Ratios  `json:"ratios"` // "md-imap/haproxy" → metric → ratio
	Budget  map[string]Verdict `json:"budget,omitempty"`
	TLS     *TLSReport         `json:"tls,omitempty"`
	Dovecot *DovecotReport     `json:"dovecot,omitempty"`
	LMTP    *LMTPReport        `json:"lmtp,omitempty"`
	HTTP    *HTTPReport        `json:"http,omitempty"`
	Cluster *ClusterReport     `json:"cluster,omitempty"`
	Notes   []string           `json:"notes"`
}

// Ratios maps a metric name to a / b.
type Ratios map[string]float64

// Verdict is the idle budget check of one maildirector path.
type Verdict struct {
	KiB     float64 `json:"kib_per_session"`
	FDs     float64 `json:"fds_per_session"`
	WithinK bool    `json:"within_kib"`
	WithinF bool    `json:"within_fds"`
}

// The budget per idle proxied session.
const (
	budgetKiB = 3.5
	budgetFDs = 2.0
)

func run(o options, progress io.Writer) (*Report, error) {
	rep := &Report{
		Machine: machineFacts(o),
		Options: map[string]any{
			"idle_sessions": o.n, "xfer_bytes": o.bytes, "xfer_time_limit": o.xferLimit.String(),
			"parallel": o.parallel, "repeat": o.repeat, "logins": o.logins, "login_workers": o.loginWorkers,
			"settle": o.settle.String(), "extra_wait": o.extra.String(), "md_log_level": o.logLevel, "quick": o.quick,
			"suites": o.suites, "http_clients": o.httpClients, "http_time": o.httpTime.String(), "http_repeat": o.httpRepeat,
			"tls_idle_sessions": o.tlsN, "tls_clients": o.tlsClients, "tls_time": o.tlsTime.String(), "tls_repeat": o.tlsRepeat,
			"cluster_users": o.clusterUsers, "cluster_clients": o.clusterClients,
			"dovecot_targets": o.dovecotTargets, "dovecot_clients": o.dovecotClients, "fetch_clients": o.fetchClients, "fetch_mib": o.fetchMiB, "dovecot_time": o.dovecotTime.String(), "dovecot_repeat": o.dovecotRepeat,
		},
	}
	imap, lmtp := slices.Contains(o.suites, suiteIMAP), slices.Contains(o.suites, suiteLMTP)
	httpSuite := slices.Contains(o.suites, suiteHTTP)
	tlsSuite, dovecot := slices.Contains(o.suites, suiteTLS), slices.Contains(o.suites, suiteDovecot)
	clusterSuite := slices.Contains(o.suites, suiteCluster)
	needMD := lmtp && len(o.lmtpTargets) > 0 || httpSuite || tlsSuite || dovecot || clusterSuite
	for _, p := range o.paths {
		needMD = needMD || (imap && strings.HasPrefix(p, "md-"))
	}
	if needMD {
		if _, err := os.Stat(o.maildirector); err != nil {
			return nil, fmt.Errorf("maildirector binary: %w (make build)", err)
		}
	}
	dir, err := os.MkdirTemp("", "maildirector-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if imap {
		runIMAP(o, dir, rep, progress)
	}
	if tlsSuite {
		rep.TLS = runTLS(o, dir, progress)
	}
	// Before the LMTP suite, whose deliveries fill maildirs.
	if dovecot {
		rep.Dovecot = runDovecot(o, dir, progress)
	}
	// After the IMAP suite, so that Dovecot's maildir writes cannot slow it.
	if lmtp {
		rep.LMTP = runLMTP(o, dir, progress)
	}
	// Last: its 1 GiB PUT writes to the disk the others' servers use.
	if httpSuite {
		rep.HTTP = runHTTP(o, dir, progress)
	}
	if clusterSuite {
		rep.Cluster = runCluster(o, dir, progress)
	}
	return rep, nil
}

// runIMAP measures every IMAP path into rep.
func runIMAP(o options, dir string, rep *Report, progress io.Writer) {
	for _, p := range o.paths {
		fmt.Fprintf(progress, "bench: %s ...\n", p)
		t0 := time.Now()
		pr := runPath(o, dir, p, progress)
		pr.Duration = time.Since(t0).Seconds()
		if pr.Error != "" {
			fmt.Fprintf(progress, "bench: %s: %s\n", p, pr.Error)
		}
		rep.Paths = append(rep.Paths, pr)
	}
	rep.Ratios = ratios(rep.Paths)
	rep.Budget = budget(rep.Paths)
	rep.Notes = []string{
		"all four paths share this machine's CPUs with the in-process fake server and clients; compare ratios, not absolutes",
		"idle KiB/session = (VmRSS with n idle sessions - VmRSS before) / n, read from /proc with nothing asked of the proxy (no forced GC)",
		"throughput MB/s = 10^6 bytes/s server → client; proxy CPU s/GiB is the proxy's utime+stime per GiB moved",
		"login = connect, greeting, LOGIN, tagged OK, LOGOUT, tagged OK; maildirector imap answers the client itself and replays the login as AUTHENTICATE PLAIN",
		"idle fds above 2/session are shared, not per session: maildirector's pooled splice pipes (up to 64 pipes, 128 fds)",
		"throughput and login-rate rows are the median of -repeat runs (all runs are in the JSON)",
	}
	if o.n < 2000 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("with n=%d, one-off costs (heap arenas, GC metadata, pools) inflate the per-session idle numbers; use n >= 4000 for the budget", o.n))
	}
}

// runPath measures one path with its own fake server and proxy process.
func runPath(o options, dir, path string, progress io.Writer) (pr PathResult) {
	pr.Path = path
	be, err := startBackend("127.0.0.1:0")
	if err != nil {
		pr.Error = err.Error()
		return pr
	}
	defer be.Close()
	addr := be.Addr()
	var proc *proxyProc
	if path != pathDirect {
		listen, err := freeAddr()
		if err != nil {
			pr.Error = err.Error()
			return pr
		}
		switch path {
		case pathHAProxy:
			proc, err = startHAProxy(o.haproxy, dir, "haproxy", listen, haproxyConfig(listen, addr, "", haproxyMaxconn))
		case pathMDIMAP:
			proc, err = startMaildirector(o.maildirector, dir, "maildirector-imap", listen, maildirectorConfig("imap", listen, addr, o.logLevel), o.profileDir != "")
		case pathMDTCP:
			proc, err = startMaildirector(o.maildirector, dir, "maildirector-tcp", listen, maildirectorConfig("tcp", listen, addr, o.logLevel), o.profileDir != "")
		}
		if err != nil {
			pr.Error = err.Error()
			return pr
		}
		defer proc.stop()
		addr = proc.addr
		pr.PID = proc.pid()
	}

	// Warm up: the first sessions create what every later one shares
	// (maildirector's epoll set, HAProxy's pools), which is not per-session cost.
	for range 16 {
		if err := loginLogout(addr); err != nil {
			pr.Error = fmt.Sprintf("warm-up login: %v", err)
			return pr
		}
	}

	if proc != nil {
		time.Sleep(o.settle)
		fmt.Fprintf(progress, "bench: %s: %d idle sessions\n", path, o.n)
		idle, err := measureIdle(addr, pr.PID, o.n, o.settle, o.extra)
		pr.Idle = &idle
		if err != nil {
			pr.Error = err.Error()
			return pr
		}
		// Wait for the proxy to close its side; shared descriptors it kept
		// (maildirector's pipe pool) stay, so count down from the reading.
		waitFDs(pr.PID, idle.Later.FDs-2*idle.Sessions+4, 15*time.Second)
	}
	fmt.Fprintf(progress, "bench: %s: throughput\n", path)
	pr.Xfer1 = medianXfer(o.repeat, func() XferResult { return measureXfer(addr, pr.PID, 1, o.bytes, o.xferLimit) })
	pr.XferN = medianXfer(o.repeat, func() XferResult { return measureXfer(addr, pr.PID, o.parallel, o.bytes, o.xferLimit) })
	fmt.Fprintf(progress, "bench: %s: login rate\n", path)
	pr.RateSeq = medianRate(o.repeat, func() RateResult { return measureRate(addr, 1, o.logins, o.rateLimit) })
	pr.RatePar = medianRate(o.repeat, func() RateResult { return measureRate(addr, o.loginWorkers, o.logins, o.rateLimit) })
	proc.profileRun(o.profileDir, "imap-"+path, o.profileTime, func(d time.Duration) {
		measureRate(addr, o.loginWorkers, profileCount, d)
	})
	return pr
}

// freeAddr returns a loopback address with a port free at the moment.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
