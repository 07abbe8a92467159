package haproxycfg

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Warning is a line the translation could not carry over, or only in part,
// with the reason.
type Warning struct {
	Line int
	Text string // the line as written
	Why  string
}

func (w Warning) String() string { return fmt.Sprintf("line %d: %s: %s", w.Line, w.Text, w.Why) }

// Result is a translation: the maildirector configuration and what it
// could not carry over.
type Result struct {
	TOML     []byte
	Warnings []Warning
}

// httpOnlyTCP is the reason given for an HTTP setting on a proxy that is
// translated as a mode tcp one: only a mode http frontend becomes
// maildirector's HTTP path (protocol "http", [frontend.NAME.http]).
const httpOnlyTCP = "an HTTP setting, and this proxy is mode tcp: only mode http frontends become maildirector's HTTP path (protocol \"http\")"

// noHTTPRules is the reason given for HAProxy's HTTP rules: maildirector's
// HTTP path forwards requests and responses as they are.
const noHTTPRules = "maildirector's HTTP path forwards requests and responses as they are: it has no HTTP rules, rewrites, errorfiles or compression"

// Translate turns f into a maildirector configuration.
func Translate(f *File) *Result {
	t := &translator{backendNames: map[string]string{}}
	for _, s := range f.Sections {
		t.section(s)
	}
	toml := t.emit()
	// In line order, each once (a defaults line may be named for several
	// proxies with the same reason).
	slices.SortStableFunc(t.warns, func(a, b Warning) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return strings.Compare(a.Why, b.Why)
	})
	t.warns = slices.CompactFunc(t.warns, func(a, b Warning) bool { return a == b })
	return &Result{TOML: toml, Warnings: t.warns}
}

type translator struct {
	warns []Warning

	global struct {
		maxconn                        int
		syslog, facility, level        string
		crtBase, caBase                string
		socket, socketMode, socketUser string
		socketGroup                    string
		socketLine                     int
	}
	defaults *proxy   // the current defaults section (nil before any)
	proxies  []*proxy // frontends, backends and listens, in file order
	stats    *proxy   // the proxy that serves HAProxy's statistics page
	// backendNames maps HAProxy proxy names to maildirector names.
	backendNames map[string]string
}

func (t *translator) warn(s Stmt, format string, a ...any) {
	t.warns = append(t.warns, Warning{Line: s.Line, Text: s.Text, Why: fmt.Sprintf(format, a...)})
}

// proxy is a defaults, frontend, backend or listen section as read.
type proxy struct {
	kind, name string
	stmt       Stmt // the section line
	mode       string
	modeStmt   Stmt
	binds      []bindAddr
	defBackend string
	useBackend string // the first use_backend target
	balance    string
	balStmt    Stmt
	retries    int // -1: unset
	retriesAt  Stmt
	redispatch bool
	allBackups bool
	maxconn    int // -1: unset
	timeouts   map[string]timeoutVal
	httpchk    *httpCheck
	smtpchk    bool
	expect     int // http-check expect status
	servers    []*server
	defServer  server
	http       httpSettings
	stats      struct {
		enabled bool
		auth    []string
		admin   bool
		refresh time.Duration
	}
}

// httpSettings are what maildirector's HTTP path takes of a mode http
// proxy.
type httpSettings struct {
	captures []capture // capture request header (frontends only)
	// forwardFor is option forwardfor; ffExcept its except network, which
	// each option forwardfor line sets anew (HAProxy resets it); ffStmt
	// the line.
	forwardFor  bool
	ffExcept    []string
	ffStmt      Stmt
	ffReset     []Stmt // option forwardfor lines with an except that a later line replaced
	serverClose bool   // option http-server-close (or httpclose)
	// only are the lines translated only for mode http (options,
	// timeouts, captures): warned about when the proxy is mode tcp.
	only []Stmt
}

// capture is "capture request header NAME len N".
type capture struct {
	name string
	len  int
	stmt Stmt
}

type httpCheck struct {
	method, path string
	stmt         Stmt
}

// timeoutVal is a timeout and the line that set it.
type timeoutVal struct {
	d    time.Duration
	stmt Stmt
}

type bindAddr struct {
	host   string // "" for every address
	port   int
	ssl    bool
	crts   []string
	accept bool // accept-proxy
	stmt   Stmt
	minTLS string
	v6only bool
}

// server is a server line, or a default-server line's settings.
type server struct {
	name, addr                  string
	stmt                        Stmt
	check                       bool
	inter, fastinter, downinter time.Duration
	rise, fall                  int
	port                        int
	checkAddr                   string
	backup                      bool
	weight                      int // -1: unset
	maxconn                     int // -1: unset
	disabled                    bool
	sendProxy                   string
	ssl, checkSSL               bool
	verify                      string
	caFile                      string
	observe                     bool
	errorLimit                  int
	onMarkedDown                string
}

func newProxy(kind string, s *Section, defaults *proxy) *proxy {
	p := &proxy{kind: kind, name: s.Name, stmt: Stmt{Line: s.Line, Text: s.Text}, retries: -1, maxconn: -1,
		timeouts: map[string]timeoutVal{}, mode: "tcp", defServer: server{weight: -1, maxconn: -1, errorLimit: -1}}
	if defaults != nil {
		p.mode, p.modeStmt = defaults.mode, defaults.modeStmt
		p.balance, p.balStmt = defaults.balance, defaults.balStmt
		p.retries, p.redispatch, p.allBackups, p.maxconn = defaults.retries, defaults.redispatch, defaults.allBackups, defaults.maxconn
		p.retriesAt = defaults.retriesAt
		for k, v := range defaults.timeouts {
			p.timeouts[k] = v
		}
		p.httpchk, p.smtpchk, p.expect = defaults.httpchk, defaults.smtpchk, defaults.expect
		p.defServer = defaults.defServer
		p.http = defaults.http
		p.http.ffExcept = slices.Clone(defaults.http.ffExcept)
		p.http.only = slices.Clone(defaults.http.only)
		p.http.ffReset = slices.Clone(defaults.http.ffReset)
	}
	return p
}

// section dispatches one section.
func (t *translator) section(s *Section) {
	head := Stmt{Line: s.Line, Text: s.Text}
	switch s.Kind {
	case "global":
		for _, st := range s.Stmts {
			t.globalStmt(st)
		}
	case "defaults":
		if len(s.Args) > 0 {
			t.warn(head, "named defaults and \"from\" are not translated; the section is read as the defaults of what follows")
		}
		t.defaults = newProxy("defaults", s, nil)
		for _, st := range s.Stmts {
			t.proxyStmt(t.defaults, st)
		}
	case "frontend", "backend", "listen":
		if s.Name == "" {
			t.warn(head, "a %s without a name is not translated", s.Kind)
			return
		}
		p := newProxy(s.Kind, s, t.defaults)
		for _, st := range s.Stmts {
			t.proxyStmt(p, st)
		}
		t.proxies = append(t.proxies, p)
	case "":
		for _, st := range s.Stmts {
			t.warn(st, "outside any section (HAProxy refuses it too)")
		}
	default:
		t.warn(head, "section %q has no maildirector equivalent; its %d lines are not translated", s.Kind, len(s.Stmts))
		for _, st := range s.Stmts {
			t.warn(st, "in section %s: not translated", s.Kind)
		}
	}
}

// globalStmt reads one statement of the global section.
func (t *translator) globalStmt(s Stmt) {
	w := s.Words
	g := &t.global
	switch w[0] {
	case "maxconn":
		if n, ok := t.intArg(s, 1, 0, 10000000); ok {
			g.maxconn = n
		}
	case "log":
		t.globalLog(s)
	case "stats":
		if len(w) >= 3 && w[1] == "socket" {
			g.socket, g.socketLine = w[2], s.Line
			for i := 3; i < len(w); i++ {
				switch {
				case w[i] == "mode" && i+1 < len(w):
					g.socketMode = w[i+1]
					i++
				case w[i] == "user" && i+1 < len(w):
					g.socketUser = w[i+1]
					i++
				case w[i] == "group" && i+1 < len(w):
					g.socketGroup = w[i+1]
					i++
				case w[i] == "level" && i+1 < len(w):
					i++ // maildirector's socket has one level: the file mode decides
				default:
					t.warn(s, "stats socket option %q is not translated", w[i])
				}
			}
			if !strings.HasPrefix(g.socket, "/") {
				t.warn(s, "stats socket %q: maildirector's control socket is a UNIX socket path; not translated", g.socket)
				g.socket = ""
			}
			return
		}
		t.warn(s, "not translated (the control socket [control] and the statistics page [stats] have their own settings)")
	case "daemon", "master-worker", "chroot", "pidfile", "user", "group", "uid", "gid", "nbproc", "nbthread", "cpu-map", "ulimit-n":
		t.warn(s, "not needed: maildirector runs in the foreground under systemd, as its own user (see the README)")
	case "crt-base":
		if len(w) > 1 {
			g.crtBase = w[1]
		}
	case "ca-base":
		if len(w) > 1 {
			g.caBase = w[1]
		}
	default:
		t.warn(s, "global setting %q is not translated", w[0])
	}
}

// syslogFacilities are the facility names both accept.
var syslogFacilities = []string{"kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp",
	"local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7"}

// globalLog reads "log TARGET [len N] [format F] [sample R] FACILITY [LEVEL [MINLEVEL]]".
func (t *translator) globalLog(s Stmt) {
	w := s.Words
	if len(w) < 2 {
		t.warn(s, "log without a target is not translated")
		return
	}
	g := &t.global
	if g.syslog != "" {
		t.warn(s, "a second log target is not translated: maildirector sends to one syslog")
		return
	}
	target := w[1]
	switch {
	case strings.HasPrefix(target, "/"):
		g.syslog = "unix:" + target
	case target == "stdout" || target == "stderr":
		// maildirector logs to stderr anyway.
	default:
		target = strings.TrimPrefix(strings.TrimPrefix(target, "udp@"), "ipv4@")
		host, port, err := net.SplitHostPort(target)
		if err != nil {
			host, port = target, "514"
		}
		if _, perr := strconv.Atoi(port); perr != nil || host == "" {
			t.warn(s, "log target %q is not translated", w[1])
			return
		}
		g.syslog = "udp:" + net.JoinHostPort(host, port)
	}
	rest := w[2:]
	for len(rest) >= 2 && (rest[0] == "len" || rest[0] == "format" || rest[0] == "sample") {
		if rest[0] != "len" {
			t.warn(s, "log %s %s is not translated: maildirector writes RFC 5424", rest[0], rest[1])
		}
		rest = rest[2:]
	}
	if len(rest) > 0 {
		if slices.Contains(syslogFacilities, rest[0]) {
			g.facility = rest[0]
		} else {
			t.warn(s, "syslog facility %q is not translated", rest[0])
		}
	}
	if len(rest) > 1 {
		switch rest[1] {
		case "debug":
			g.level = "debug"
		case "info", "notice":
			g.level = "info"
		case "warning":
			g.level = "warn"
		case "err", "crit", "alert", "emerg":
			g.level = "error"
		default:
			t.warn(s, "log level %q is not translated", rest[1])
		}
	}
}

// proxyStmt reads one statement of a defaults, frontend, backend or listen
// section.
func (t *translator) proxyStmt(p *proxy, s Stmt) {
	w := s.Words
	args := w[1:]
	switch w[0] {
	case "mode":
		if len(args) == 0 || (args[0] != "tcp" && args[0] != "http") {
			t.warn(s, "mode %q is not translated", strings.Join(args, " "))
			return
		}
		p.mode, p.modeStmt = args[0], s
	case "bind":
		t.bind(p, s)
	case "default_backend":
		if len(args) == 1 {
			p.defBackend = args[0]
		}
	case "use_backend":
		if p.useBackend == "" && len(args) > 0 {
			p.useBackend = args[0]
		}
		t.warn(s, "the rule is not translated (the default_backend, else the first use_backend, is the frontend's backend): write it as a [[frontend.NAME.route]] rule (README \"Routing rules\")")
	case "balance":
		if len(args) == 0 {
			return
		}
		p.balance, p.balStmt = args[0], s
	case "server":
		t.serverLine(p, s)
	case "default-server":
		p.defServer = t.serverParams(p.defServer, s, args)
	case "retries":
		if n, ok := t.intArg(s, 1, 0, 1<<20); ok {
			p.retries, p.retriesAt = n, s
		}
	case "maxconn":
		if n, ok := t.intArg(s, 1, 0, 10000000); ok {
			p.maxconn = n
		}
	case "timeout":
		t.timeout(p, s)
	case "option":
		t.option(p, s, true)
	case "no":
		if len(args) >= 2 && args[0] == "option" {
			t.option(p, Stmt{Words: args, Line: s.Line, Text: s.Text}, false)
			return
		}
		t.warn(s, "not translated")
	case "log":
		if len(args) == 1 && args[0] == "global" {
			return // maildirector logs every session to its own log
		}
		t.warn(s, "a proxy's own log target is not translated: maildirector logs to [global] syslog")
	case "stats":
		t.statsStmt(p, s)
	case "http-check":
		if len(args) >= 3 && args[0] == "expect" && args[1] == "status" {
			if n, err := strconv.Atoi(args[2]); err == nil && n >= 100 && n <= 599 {
				p.expect = n
				return
			}
		}
		t.warn(s, "not translated: an http check expects one status (check.expect_status)")
	case "capture":
		t.capture(p, s)
	case "http-request", "http-response", "http-after-response", "http-reuse", "http-send-name-header",
		"compression", "cookie", "errorfile", "errorloc", "errorloc302", "errorloc303", "redirect", "monitor-uri",
		"unique-id-format", "unique-id-header", "http-error", "errorfiles", "reqadd", "rspadd":
		t.warn(s, "not translated: %s", noHTTPRules)
	case "acl":
		t.warn(s, "ACLs are not translated: maildirector routes every session of a frontend to its backend")
	case "tcp-request", "tcp-response":
		t.warn(s, "not translated: maildirector's per-client limits ([global.limits]) and trusted_proxies cover the usual tcp-request rules")
	case "stick-table", "stick", "stick-store", "stick-on":
		t.warn(s, "not translated: balance \"user\" keeps each user on one server by itself (sticky table with user_expire)")
	case "hash-type", "hash-balance-factor", "fullconn", "server-template", "dispatch", "description", "id", "bind-process",
		"persist", "force-persist", "ignore-persist", "load-server-state-from-file", "email-alert", "external-check":
		t.warn(s, "%q is not translated", w[0])
	default:
		t.warn(s, "%q is not translated", w[0])
	}
}

func (t *translator) intArg(s Stmt, i, lo, hi int) (int, bool) {
	if i >= len(s.Words) {
		t.warn(s, "missing value; not translated")
		return 0, false
	}
	n, err := strconv.Atoi(s.Words[i])
	if err != nil || n < lo || n > hi {
		t.warn(s, "%q: want a number %d..%d; not translated", s.Words[i], lo, hi)
		return 0, false
	}
	return n, true
}

// timeout reads "timeout NAME DURATION".
func (t *translator) timeout(p *proxy, s Stmt) {
	if len(s.Words) < 3 {
		t.warn(s, "not translated")
		return
	}
	name := s.Words[1]
	d, err := parseDuration(s.Words[2])
	if err != nil {
		t.warn(s, "%v; not translated", err)
		return
	}
	switch name {
	case "client", "server", "connect", "check", "tunnel":
		p.timeouts[name] = timeoutVal{d, s}
	case "http-request", "http-keep-alive", "queue":
		// The HTTP path's timeouts.request, keep_alive and queue; a mode
		// tcp proxy hears why not (emit).
		p.timeouts[name] = timeoutVal{d, s}
		p.http.only = append(p.http.only, s)
	default:
		t.warn(s, "timeout %s is not translated", name)
	}
}

// option reads "option NAME ..." (on) or "no option NAME" (off).
func (t *translator) option(p *proxy, s Stmt, on bool) {
	if len(s.Words) < 2 {
		t.warn(s, "not translated")
		return
	}
	name := s.Words[1]
	switch {
	case name == "redispatch":
		p.redispatch = on
	case name == "allbackups":
		p.allBackups = on
	case name == "httpchk" && on:
		c := &httpCheck{method: "OPTIONS", path: "/", stmt: s} // HAProxy's default request
		switch a := s.Words[2:]; len(a) {
		case 0:
		case 1:
			c.path = a[0]
		default:
			c.method, c.path = strings.ToUpper(a[0]), a[1]
		}
		p.httpchk = c
	case name == "smtpchk" && on:
		p.smtpchk = true
	case name == "tcplog" || name == "splice-auto" || name == "splice-request" || name == "splice-response":
		// maildirector logs one line per session and splices where it can.
	case name == "forwardfor":
		t.forwardFor(p, s, on)
	case name == "http-server-close" || name == "httpclose":
		p.http.serverClose = on
		p.http.only = append(p.http.only, s)
		if name == "httpclose" && on {
			t.warn(s, "translated as http.server_close = true: maildirector closes the server side after each response; the client's connection stays open (HAProxy's httpclose closed both)")
		}
	case name == "http-keep-alive":
		p.http.serverClose = !on
		p.http.only = append(p.http.only, s)
	case name == "httplog":
		// The HTTP path writes HAProxy's httplog fields on every request.
		p.http.only = append(p.http.only, s)
	case name == "http-pretend-keepalive" || name == "http-buffer-request" || name == "http-use-htx" ||
		name == "originalto" || name == "http-no-delay":
		t.warn(s, "option %s: no maildirector equivalent on the HTTP path", name)
	case name == "dontlognull" || name == "dontlog-normal" || name == "log-separate-errors" || name == "log-health-checks":
		t.warn(s, "not translated: maildirector logs every session and every server state change")
	default:
		t.warn(s, "option %s is not translated", name)
	}
}

// forwardFor reads "option forwardfor [except NETWORK] [header NAME]
// [if-none]". Each such line sets the except network anew: HAProxy resets
// it, so a frontend's own "option forwardfor" drops the defaults' except.
func (t *translator) forwardFor(p *proxy, s Stmt, on bool) {
	p.http.only = append(p.http.only, s)
	if len(p.http.ffExcept) > 0 {
		p.http.ffReset = append(p.http.ffReset, p.http.ffStmt)
	}
	p.http.forwardFor, p.http.ffExcept, p.http.ffStmt = on, nil, s
	if !on {
		return
	}
	a := s.Words[2:]
	for i := 0; i < len(a); i++ {
		switch {
		case a[i] == "except" && i+1 < len(a):
			if _, err := netip.ParsePrefix(a[i+1]); err != nil {
				if _, err := netip.ParseAddr(a[i+1]); err != nil {
					t.warn(s, "except %s: not a network; not translated", a[i+1])
					i++
					continue
				}
			}
			p.http.ffExcept = append(p.http.ffExcept, a[i+1])
			i++
		case a[i] == "header" && i+1 < len(a):
			if !strings.EqualFold(a[i+1], "X-Forwarded-For") {
				t.warn(s, "header %s: maildirector adds the client to X-Forwarded-For only; not translated", a[i+1])
			}
			i++
		case a[i] == "if-none":
			t.warn(s, "if-none: maildirector appends the client to any X-Forwarded-For the request has; not translated")
		default:
			t.warn(s, "forwardfor argument %q is not translated", a[i])
		}
	}
}

// capture reads "capture request header NAME len N": a header the HTTP
// path writes into the access log, cut to N bytes.
func (t *translator) capture(p *proxy, s Stmt) {
	w := s.Words
	if len(w) != 6 || w[1] != "request" || w[2] != "header" || w[4] != "len" {
		t.warn(s, "not translated: maildirector captures request headers only (capture request header NAME len N)")
		return
	}
	n, err := strconv.Atoi(w[5])
	switch {
	case err != nil || n < 1:
		t.warn(s, "len %s: want a number 1..1024; not translated", w[5])
		return
	case n > 1024:
		t.warn(s, "len %d: maildirector logs at most 1024 bytes of a header; written as 1024", n)
		n = 1024
	}
	p.http.captures = append(p.http.captures, capture{name: w[3], len: n, stmt: s})
	p.http.only = append(p.http.only, s)
}

// statsStmt reads the statistics page's settings (a proxy with "stats enable").
func (t *translator) statsStmt(p *proxy, s Stmt) {
	a := s.Words[1:]
	if len(a) == 0 {
		t.warn(s, "not translated")
		return
	}
	switch a[0] {
	case "enable":
		p.stats.enabled = true
	case "uri":
		p.stats.enabled = true
		if len(a) > 1 && a[1] != "/" {
			t.warn(s, "maildirector serves its dashboard at / (and /stats;csv, /stats.json, /metrics); the URI is not translated")
		}
	case "auth":
		p.stats.enabled = true
		if len(a) > 1 {
			p.stats.auth = append(p.stats.auth, a[1])
		}
	case "admin":
		p.stats.admin = true
		if len(a) > 1 && !(len(a) == 3 && a[1] == "if" && a[2] == "TRUE") {
			t.warn(s, "the condition is not translated: [stats] admin is on for every authenticated user")
		}
	case "refresh":
		if d, err := parseDuration(a[len(a)-1]); err == nil && len(a) == 2 {
			p.stats.refresh = d
			return
		}
		t.warn(s, "not translated")
	default:
		t.warn(s, "stats %s is not translated", a[0])
	}
}

// bind reads "bind ADDR[,ADDR...] [params]".
func (t *translator) bind(p *proxy, s Stmt) {
	if len(s.Words) < 2 {
		t.warn(s, "not translated")
		return
	}
	var params bindAddr
	params.stmt = s
	w := s.Words[2:]
	for i := 0; i < len(w); i++ {
		switch w[i] {
		case "ssl":
			params.ssl = true
		case "crt":
			if i+1 < len(w) {
				crt := w[i+1]
				if !strings.HasPrefix(crt, "/") && t.global.crtBase != "" {
					crt = strings.TrimSuffix(t.global.crtBase, "/") + "/" + crt
				}
				params.crts = append(params.crts, crt)
				i++
			}
		case "accept-proxy":
			params.accept = true
		case "ssl-min-ver":
			if i+1 < len(w) {
				params.minTLS = strings.TrimPrefix(w[i+1], "TLSv")
				i++
			}
		case "v4v6":
			// The default for ":::PORT" on Linux: written as two binds below.
		case "v6only":
			params.v6only = true
		case "alpn", "npn", "ciphers", "ciphersuites", "curves", "ecdhe", "ca-file", "crl-file", "verify", "name", "id",
			"process", "interface", "mss", "backlog", "maxconn", "nice", "mode", "user", "group", "level", "tcp-ut", "namespace", "ssl-max-ver":
			t.warn(s, "bind option %s %s is not translated", w[i], next(w, i))
			i++
		case "transparent", "tfo", "defer-accept", "allow-0rtt", "strict-sni", "prefer-client-ciphers", "no-sslv3", "no-tlsv10", "no-tlsv11", "no-tls-tickets":
			t.warn(s, "bind option %s is not translated", w[i])
		default:
			t.warn(s, "bind option %s is not translated", w[i])
		}
	}
	if params.ssl && len(params.crts) == 0 {
		t.warn(s, "ssl without crt: no certificate to translate")
	}
	for _, a := range strings.Split(s.Words[1], ",") {
		b := params
		host, port, err := splitBindAddr(a)
		if err != nil {
			t.warn(s, "bind address %q: %v; not translated", a, err)
			continue
		}
		b.host, b.port = host, port
		if host == "::" && !b.v6only {
			// HAProxy's ":::PORT" is one dual-stack socket (Linux's
			// bindv6only = 0); maildirector's "[::]:PORT" is v6-only, so
			// IPv4 clients need "0.0.0.0:PORT" too.
			b4 := b
			b4.host = "0.0.0.0"
			p.binds = appendBind(p.binds, b4)
		}
		p.binds = appendBind(p.binds, b)
	}
}

// appendBind appends b unless its address is there already (maildirector
// refuses an address twice).
func appendBind(binds []bindAddr, b bindAddr) []bindAddr {
	for _, x := range binds {
		if x.host == b.host && x.port == b.port {
			return binds
		}
	}
	return append(binds, b)
}

func next(w []string, i int) string {
	if i+1 < len(w) {
		return w[i+1]
	}
	return ""
}

// splitBindAddr reads HAProxy's "[ipv4@|ipv6@]ADDR:PORT", where ADDR may be
// empty or "*" (every address) and an IPv6 address is written bare.
func splitBindAddr(a string) (string, int, error) {
	a = strings.TrimPrefix(strings.TrimPrefix(a, "ipv4@"), "ipv6@")
	if strings.HasPrefix(a, "/") || strings.Contains(a, "@") {
		return "", 0, fmt.Errorf("not a TCP address (maildirector listens on TCP only)")
	}
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("no port")
	}
	host, portStr := a[:i], a[i+1:]
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("port %q: want one port 1..65535", portStr)
	}
	host = strings.Trim(host, "[]")
	switch host {
	case "", "*", "0.0.0.0":
		return "0.0.0.0", port, nil
	case "::":
		return "::", port, nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return "", 0, fmt.Errorf("host %q: maildirector binds IP addresses", host)
	}
	return host, port, nil
}

// serverLine reads "server NAME ADDR [params]".
func (t *translator) serverLine(p *proxy, s Stmt) {
	if len(s.Words) < 3 {
		t.warn(s, "a server needs a name and an address; not translated")
		return
	}
	srv := t.serverParams(p.defServer, s, s.Words[3:])
	srv.name, srv.stmt = s.Words[1], s
	addr := strings.TrimPrefix(strings.TrimPrefix(s.Words[2], "ipv4@"), "ipv6@")
	if strings.HasPrefix(addr, "/") || strings.Contains(addr, "@") {
		t.warn(s, "server address %q: maildirector dials TCP only; not translated", s.Words[2])
		return
	}
	srv.addr = addr
	p.servers = append(p.servers, &srv)
}

// serverValueParams take a value; serverFlags do not.
var serverValueParams = map[string]bool{
	"inter": true, "fastinter": true, "downinter": true, "rise": true, "fall": true, "port": true, "addr": true,
	"weight": true, "maxconn": true, "verify": true, "ca-file": true, "sni": true, "crt": true, "observe": true,
	"error-limit": true, "on-error": true, "on-marked-down": true, "on-marked-up": true, "cookie": true, "id": true,
	"resolvers": true, "init-addr": true, "resolve-prefer": true, "slowstart": true, "track": true, "agent-port": true,
	"agent-inter": true, "agent-send": true, "agent-addr": true, "maxqueue": true, "minconn": true, "alpn": true, "npn": true,
	"proto": true, "ciphers": true, "ciphersuites": true, "ssl-min-ver": true, "ssl-max-ver": true, "source": true,
	"namespace": true, "check-alpn": true, "check-proto": true, "check-sni": true, "crl-file": true, "proxy-v2-options": true,
	"pool-max-conn": true, "pool-purge-delay": true, "pool-low-conn": true, "max-reuse": true, "tcp-ut": true, "ws": true,
	"log-proto": true, "resolve-opts": true, "resolve-net": true, "redir": true, "set-proxy-v2-tlv-fmt": true,
}

// serverParams applies server (or default-server) parameters to base.
func (t *translator) serverParams(base server, s Stmt, w []string) server {
	srv := base
	for i := 0; i < len(w); i++ {
		k := w[i]
		v := ""
		if serverValueParams[k] {
			if i+1 >= len(w) {
				t.warn(s, "%s without its value; not translated", k)
				break
			}
			v = w[i+1]
			i++
		}
		dur := func(dst *time.Duration) {
			if d, err := parseDuration(v); err == nil {
				*dst = d
			} else {
				t.warn(s, "%s %s: %v; not translated", k, v, err)
			}
		}
		num := func(dst *int, lo, hi int) {
			if n, err := strconv.Atoi(v); err == nil && n >= lo && n <= hi {
				*dst = n
			} else {
				t.warn(s, "%s %s: want %d..%d; not translated", k, v, lo, hi)
			}
		}
		switch k {
		case "check":
			srv.check = true
		case "no-check":
			srv.check = false
		case "inter":
			dur(&srv.inter)
		case "fastinter":
			dur(&srv.fastinter)
		case "downinter":
			dur(&srv.downinter)
		case "rise":
			num(&srv.rise, 1, 100)
		case "fall":
			num(&srv.fall, 1, 100)
		case "port":
			num(&srv.port, 1, 65535)
		case "addr":
			srv.checkAddr = v
		case "backup":
			srv.backup = true
		case "non-stick":
		case "weight":
			num(&srv.weight, 0, 1000)
		case "maxconn":
			num(&srv.maxconn, 0, 10000000)
		case "disabled":
			srv.disabled = true
		case "enabled":
			srv.disabled = false
		case "send-proxy":
			srv.sendProxy = "v1"
		case "send-proxy-v2":
			srv.sendProxy = "v2"
		case "send-proxy-v2-ssl":
			srv.sendProxy = "v2-ssl"
		case "send-proxy-v2-ssl-cn":
			srv.sendProxy = "v2-ssl"
			t.warn(s, "send-proxy-v2-ssl-cn: sent as v2-ssl, without the client certificate's CN (maildirector verifies no client certificates)")
		case "no-send-proxy", "no-send-proxy-v2", "no-send-proxy-v2-ssl", "no-send-proxy-v2-ssl-cn":
			srv.sendProxy = "none"
		case "ssl":
			srv.ssl = true
		case "no-ssl":
			srv.ssl = false
		case "check-ssl":
			srv.checkSSL = true
		case "verify":
			srv.verify = v
		case "ca-file":
			if !strings.HasPrefix(v, "/") && t.global.caBase != "" {
				v = strings.TrimSuffix(t.global.caBase, "/") + "/" + v
			}
			srv.caFile = v
		case "observe":
			srv.observe = v == "layer4" || v == "layer7"
			if v == "layer7" {
				t.warn(s, "observe layer7: maildirector observes connections and logins (layer 4 and the protocol's login)")
			}
		case "error-limit":
			num(&srv.errorLimit, 0, 1000)
		case "on-error":
			if v != "mark-down" && v != "fail-check" {
				t.warn(s, "on-error %s: maildirector marks a server down after error_limit failures; not translated", v)
			}
		case "on-marked-down":
			srv.onMarkedDown = v
			if v != "shutdown-sessions" {
				t.warn(s, "on-marked-down %s is not translated", v)
			}
		case "check-send-proxy":
			// maildirector's checks send a PROXY LOCAL header whenever the server gets a header (check.send_proxy = "auto").
		default:
			if v != "" {
				t.warn(s, "server option %s %s is not translated", k, v)
			} else {
				t.warn(s, "server option %s is not translated", k)
			}
		}
	}
	return srv
}

// parseDuration reads HAProxy's time format: a number with an optional
// unit us, ms (the default), s, m, h or d.
func parseDuration(s string) (time.Duration, error) {
	units := []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}, {"d", 24 * time.Hour}}
	unit, num := time.Millisecond, s
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			unit, num = u.unit, strings.TrimSuffix(s, u.suffix)
			break
		}
	}
	n, err := strconv.ParseUint(num, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("time %q: want a number with a unit (us, ms, s, m, h, d)", s)
	}
	return time.Duration(n) * unit, nil
}
