package haproxycfg

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Mail ports and their protocols (IANA); the TLS ones are implicit TLS.
var mailPorts = map[int]struct {
	proto string
	tls   bool
}{
	143: {"imap", false}, 993: {"imap", true}, 110: {"pop3", false}, 995: {"pop3", true},
	587: {"submission", false}, 465: {"submission", true}, 24: {"lmtp", false},
}

// startTLSPorts are the ports where Dovecot itself offered STARTTLS
// behind a mode tcp HAProxy.
var startTLSPorts = map[string]bool{"imap": true, "pop3": true, "submission": true}

// tomlName turns an HAProxy name (letters, digits, '-', '_', '.', ':') into a
// maildirector one ([A-Za-z0-9._-]).
func tomlName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' || c == '_' || c == '-' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "_"
	}
	return b.String()
}

// quote writes s as a TOML basic string.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range strings.ToValidUTF8(s, string(utf8.RuneError)) {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// key writes a key part, quoted unless it is a TOML bare key
// ([A-Za-z0-9_-]+).
func key(s string) string {
	if s != "" && tomlName(s) == s && !strings.Contains(s, ".") {
		return s
	}
	return quote(s)
}

// comment makes s safe in a TOML comment: no control characters.
func comment(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

// dur writes d as a duration maildirector reads ("5s", "1m", "500ms").
func dur(d time.Duration) string {
	switch {
	case d >= time.Hour && d%time.Hour == 0:
		return quote(strconv.FormatInt(int64(d/time.Hour), 10) + "h")
	case d >= time.Minute && d%time.Minute == 0:
		return quote(strconv.FormatInt(int64(d/time.Minute), 10) + "m")
	case d >= time.Second && d%time.Second == 0:
		return quote(strconv.FormatInt(int64(d/time.Second), 10) + "s")
	case d%time.Millisecond == 0:
		return quote(strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms")
	}
	return quote(d.String())
}

// clamp bounds d to lo..hi and says when it had to.
func (t *translator) clamp(tv timeoutVal, lo, hi time.Duration, what string) time.Duration {
	switch {
	case tv.d < lo:
		t.warn(tv.stmt, "%s: maildirector's %s is at least %s; written as %s", fmtDur(tv.d), what, fmtDur(lo), fmtDur(lo))
		return lo
	case tv.d > hi:
		t.warn(tv.stmt, "%s: maildirector's %s is at most %s; written as %s", fmtDur(tv.d), what, fmtDur(hi), fmtDur(hi))
		return hi
	}
	return tv.d
}

func fmtDur(d time.Duration) string { return strings.Trim(dur(d), `"`) }

// frontendPlan is one maildirector frontend: an HAProxy frontend or listen.
type frontendPlan struct {
	p       *proxy
	name    string
	backend *proxy
	proto   string
	tls     bool // implicit TLS with the binds' certificates
	note    string
}

// emit writes the configuration.
func (t *translator) emit() []byte {
	var b strings.Builder
	b.WriteString("# maildirector configuration translated from an HAProxy configuration by `maildirector import-haproxy`.\n")
	b.WriteString("# Every HAProxy line that could not be carried over was reported, with its number, when it was translated.\n")
	b.WriteString("# Check it with `maildirector check -c FILE` (and `--dovecot` against the servers' doveconf -n).\n\n")

	// Names: backends (and listens) by their HAProxy name.
	backends := map[string]*proxy{}
	mdName := map[*proxy]string{}
	used := map[string]bool{}
	uniq := func(kind, n string, p *proxy) string {
		name := tomlName(n)
		for k := 2; used[kind+name]; k++ {
			name = fmt.Sprintf("%s_%d", tomlName(n), k)
		}
		used[kind+name] = true
		if name != n {
			t.warn(p.stmt, "named %q in maildirector (names are letters, digits, '.', '_' and '-', unique)", name)
		}
		return name
	}
	for _, p := range t.proxies {
		if p.kind == "backend" || p.kind == "listen" {
			if p.stats.enabled && len(p.servers) == 0 {
				continue
			}
			backends[p.name] = p
			mdName[p] = uniq("backend.", p.name, p)
		}
	}

	// Frontends, and the statistics page.
	var plans []*frontendPlan
	usedBy := map[*proxy][]*frontendPlan{}
	for _, p := range t.proxies {
		if p.kind != "frontend" && p.kind != "listen" {
			continue
		}
		if p.stats.enabled && len(p.servers) == 0 {
			if t.stats != nil {
				t.warn(p.stmt, "a second statistics page is not translated: maildirector has one [stats] listener")
				continue
			}
			t.stats = p
			continue
		}
		if len(p.binds) == 0 {
			t.warn(p.stmt, "no bind address translated: the frontend is left out")
			continue
		}
		plan := &frontendPlan{p: p, name: uniq("frontend.", p.name, p)}
		target := p.defBackend
		if p.kind == "listen" {
			target = p.name
		} else if target == "" {
			target = p.useBackend
		}
		plan.backend = backends[target]
		if plan.backend == nil {
			if target == "" {
				t.warn(p.stmt, "no default_backend: the frontend is left out")
			} else {
				t.warn(p.stmt, "backend %q is not defined (or not translated): the frontend is left out", target)
			}
			continue
		}
		t.decideProtocol(plan)
		plans = append(plans, plan)
		usedBy[plan.backend] = append(usedBy[plan.backend], plan)
	}

	t.emitGlobal(&b)
	for _, plan := range plans {
		t.emitFrontend(&b, plan, mdName[plan.backend])
	}
	for _, p := range t.proxies {
		if name, ok := mdName[p]; ok {
			t.emitBackend(&b, p, name, usedBy[p])
		}
	}
	return []byte(b.String())
}

// decideProtocol chooses the frontend's protocol: mode http is
// maildirector's HTTP path (protocol http); mode tcp by the first bind's
// port, else by a protocol's name in the frontend's or backend's name,
// else by the servers' port, else tcp. A mode tcp frontend hears about
// the HTTP settings it (or its backend) has.
func (t *translator) decideProtocol(plan *frontendPlan) {
	p := plan.p
	if p.mode == "http" {
		plan.proto = "http"
		plan.note = fmt.Sprintf("mode http (line %d): maildirector's HTTP path", p.modeStmt.Line)
		plan.tls = p.binds[0].ssl && len(p.binds[0].crts) > 0
		if plan.backend.mode != "http" {
			t.warn(plan.backend.stmt, "a mode tcp backend behind the mode http frontend %s: translated for the HTTP path, as HAProxy would have run it", p.name)
		}
		return
	}
	for _, q := range []*proxy{p, plan.backend} {
		for _, s := range q.http.only {
			if len(s.Words) >= 2 && s.Words[0] == "timeout" && s.Words[1] == "queue" {
				t.warn(s, "not translated: maildirector queues no mail sessions; a full frontend waits backlog_wait, then refuses in the protocol's words")
				continue
			}
			t.warn(s, "not translated: %s", httpOnlyTCP)
		}
	}
	first := p.binds[0]
	ssl := first.ssl && len(first.crts) > 0
	if mp, ok := mailPorts[first.port]; ok {
		plan.proto, plan.note = mp.proto, fmt.Sprintf("protocol %s: port %d", mp.proto, first.port)
		if mp.tls && !ssl {
			plan.proto = "tcp"
			plan.note = fmt.Sprintf("port %d without ssl on the bind: TLS passes through to the servers, so maildirector relays TCP; with the certificate here it could route by user (protocol %q, tls mode \"implicit\")", first.port, mp.proto)
		}
	} else {
		for _, n := range []string{p.name, plan.backend.name} {
			if proto := protoInName(n); proto != "" {
				plan.proto, plan.note = proto, fmt.Sprintf("protocol %s: from the name %q (port %d is not a mail port)", proto, n, first.port)
				break
			}
		}
		if plan.proto == "" {
			for _, s := range plan.backend.servers {
				if _, port := splitServerAddr(s.addr); port != 0 {
					if mp, ok := mailPorts[port]; ok && !mp.tls {
						plan.proto, plan.note = mp.proto, fmt.Sprintf("protocol %s: the servers' port %d", mp.proto, port)
					}
					break
				}
			}
		}
		if plan.proto == "" {
			plan.proto, plan.note = "tcp", fmt.Sprintf("protocol tcp: port %d is no mail port maildirector speaks", first.port)
		}
	}
	plan.tls = ssl
	if startTLSPorts[plan.proto] && !ssl {
		t.warn(first.stmt, "behind a mode tcp HAProxy, Dovecot itself offered STARTTLS here; maildirector answers %s before Dovecot and needs its own certificate for STARTTLS: add [frontend.%s.tls] mode = \"starttls\" with a [[frontend.%s.tls.cert]]", plan.proto, plan.name, plan.name)
	}
}

// protoInName finds a mail protocol's name in an HAProxy proxy name.
func protoInName(n string) string {
	n = strings.ToLower(n)
	switch {
	case strings.Contains(n, "imap"):
		return "imap"
	case strings.Contains(n, "pop"):
		return "pop3"
	case strings.Contains(n, "lmtp"):
		return "lmtp"
	case strings.Contains(n, "submission") || strings.Contains(n, "submit"):
		return "submission"
	}
	return ""
}

func (t *translator) emitGlobal(b *strings.Builder) {
	g := &t.global
	var lines []string
	if g.maxconn > 0 {
		lines = append(lines, fmt.Sprintf("maxconn = %d", g.maxconn))
	}
	if g.syslog != "" {
		lines = append(lines, "syslog = "+quote(g.syslog))
	}
	if g.facility != "" {
		lines = append(lines, "syslog_facility = "+quote(g.facility))
	}
	if g.level != "" {
		lines = append(lines, "log_level = "+quote(g.level))
	}
	if len(lines) > 0 {
		b.WriteString("[global]\n" + strings.Join(lines, "\n") + "\n\n")
	}
	if g.socket != "" {
		fmt.Fprintf(b, "# From HAProxy's \"stats socket\" (line %d): `maildirector ctl -s %s` steers the running instance.\n", g.socketLine, comment(g.socket))
		fmt.Fprintf(b, "[control]\nsocket = %s\n", quote(g.socket))
		if m, err := strconv.ParseUint(g.socketMode, 8, 32); err == nil && m <= 0o777 {
			fmt.Fprintf(b, "mode = %s\n", quote(fmt.Sprintf("%04o", m)))
		}
		if g.socketUser != "" {
			fmt.Fprintf(b, "user = %s\n", quote(g.socketUser))
		}
		if g.socketGroup != "" {
			fmt.Fprintf(b, "group = %s\n", quote(g.socketGroup))
		}
		b.WriteString("\n")
	}
	if p := t.stats; p != nil {
		if len(p.binds) == 0 {
			t.warn(p.stmt, "the statistics page has no bind address translated; [stats] left out")
		} else {
			if len(p.binds) > 1 {
				t.warn(p.binds[1].stmt, "[stats] binds one address; only the first is translated")
			}
			fmt.Fprintf(b, "# HAProxy's statistics page (%s, line %d): maildirector's dashboard, CSV, JSON and /metrics.\n", comment(p.name), p.stmt.Line)
			fmt.Fprintf(b, "[stats]\nbind = %s\n", quote(bindString(p.binds[0])))
			if len(p.stats.auth) > 0 {
				q := make([]string, len(p.stats.auth))
				for i, a := range p.stats.auth {
					q[i] = quote(a)
				}
				fmt.Fprintf(b, "auth = [%s]\n", strings.Join(q, ", "))
			}
			if p.stats.admin && len(p.stats.auth) > 0 {
				b.WriteString("admin = true\n")
			} else if p.stats.admin {
				t.warn(p.stmt, "stats admin without stats auth: maildirector's [stats] admin needs auth; not translated")
			}
			if p.stats.refresh > 0 {
				fmt.Fprintf(b, "refresh = %s\n", dur(t.clamp(timeoutVal{p.stats.refresh, p.stmt}, 500*time.Millisecond, time.Minute, "stats refresh")))
			}
			b.WriteString("\n")
		}
	}
}

// bindString writes a bind address as maildirector's IP:port.
func bindString(a bindAddr) string {
	return net.JoinHostPort(a.host, strconv.Itoa(a.port))
}

func (t *translator) emitFrontend(b *strings.Builder, plan *frontendPlan, backendName string) {
	p := plan.p
	at := "frontend." + key(plan.name)
	fmt.Fprintf(b, "# %s %s (line %d); %s\n", p.kind, comment(p.name), p.stmt.Line, comment(plan.note))
	fmt.Fprintf(b, "[%s]\nprotocol = %s\n", at, quote(plan.proto))
	var binds []string
	for _, a := range p.binds {
		binds = append(binds, quote(bindString(a)))
		if a.ssl != p.binds[0].ssl {
			t.warn(a.stmt, "a frontend has one TLS mode: this bind's ssl setting differs from the first bind's and is not translated")
		}
	}
	fmt.Fprintf(b, "bind = [%s]\nbackend = %s\n", strings.Join(binds, ", "), quote(backendName))
	if p.maxconn > 0 {
		fmt.Fprintf(b, "maxconn = %d\n", p.maxconn)
	}
	for _, a := range p.binds {
		if a.accept {
			b.WriteString("# accept-proxy: HAProxy took a PROXY header from anyone; name the proxies in front instead.\n")
			b.WriteString("trusted_proxies = [\"0.0.0.0/0\", \"::/0\"]\n")
			t.warn(a.stmt, "accept-proxy: translated as trusted_proxies = every address, as HAProxy had it; narrow it to the proxies in front")
			break
		}
	}

	if plan.proto == "http" {
		t.emitHTTPFrontend(b, plan, at)
		return
	}

	// Timeouts: the client's from the frontend, the server side's from the backend.
	be := plan.backend
	var tl []string
	client, hasClient := p.timeouts["client"]
	if hasClient {
		tl = append(tl, "preauth = "+dur(t.clamp(client, time.Second, 30*time.Minute, "preauth timeout")))
	}
	idle, hasIdle := be.timeouts["tunnel"]
	if !hasIdle {
		server, hasServer := be.timeouts["server"]
		switch {
		case hasClient && hasServer:
			idle, hasIdle = client, true
			if server.d < client.d {
				idle = server
			}
		case hasClient:
			idle, hasIdle = client, true
		case hasServer:
			idle, hasIdle = server, true
		}
	}
	if hasIdle {
		lo := time.Minute
		what := "idle timeout"
		if plan.proto == "imap" {
			lo, what = 30*time.Minute, "idle timeout for IMAP (IDLE lasts up to 29 minutes between commands, RFC 9051 section 6.3.13)"
		}
		tl = append(tl, "idle = "+dur(t.clamp(idle, lo, 24*time.Hour, what)))
	}
	if c, ok := be.timeouts["connect"]; ok {
		tl = append(tl, "connect = "+dur(t.clamp(c, 100*time.Millisecond, 2*time.Minute, "connect timeout")))
	}
	if s, ok := be.timeouts["server"]; ok && plan.proto != "tcp" {
		tl = append(tl, "server_login = "+dur(t.clamp(s, time.Second, 5*time.Minute, "server_login timeout")))
	}
	if len(tl) > 0 {
		fmt.Fprintf(b, "[%s.timeouts]\n%s\n", at, strings.Join(tl, "\n"))
	}
	if plan.tls {
		fmt.Fprintf(b, "[%s.tls]\nmode = \"implicit\"\n", at)
		if v := p.binds[0].minTLS; v == "1.0" || v == "1.1" || v == "1.2" || v == "1.3" {
			fmt.Fprintf(b, "min_version = %s\n", quote(v))
		}
		for _, crt := range p.binds[0].crts {
			// HAProxy's crt is one PEM with the chain and the key.
			fmt.Fprintf(b, "[[%s.tls.cert]]\ncert = %s\nkey = %s\n", at, quote(crt), quote(crt))
		}
	}
	b.WriteString("\n")
}

// emitHTTPFrontend writes the rest of a mode http frontend: the HTTP
// path's timeouts (the client side's from the frontend, the server side's
// from the backend, as HAProxy takes them), TLS, and [frontend.NAME.http]
// with what the frontend and its backend say (HAProxy adds
// X-Forwarded-For when either has option forwardfor, unless the client is
// in the except network of either; it closes server connections when
// either has http-server-close).
func (t *translator) emitHTTPFrontend(b *strings.Builder, plan *frontendPlan, at string) {
	p, be := plan.p, plan.backend
	var tl []string
	for _, k := range []struct {
		name, key string
		from      *proxy
		lo, hi    time.Duration
	}{
		{"http-request", "request", p, time.Second, 10 * time.Minute},
		{"client", "client", p, time.Second, time.Hour},
		{"http-keep-alive", "keep_alive", p, time.Second, time.Hour},
		{"queue", "queue", be, time.Second, 10 * time.Minute},
		{"connect", "connect", be, 100 * time.Millisecond, 2 * time.Minute},
		{"server", "server", be, time.Second, time.Hour},
	} {
		if v, ok := k.from.timeouts[k.name]; ok {
			tl = append(tl, k.key+" = "+dur(t.clamp(v, k.lo, k.hi, "timeouts."+k.key)))
		}
	}
	for _, q := range []*proxy{p, be} {
		if v, ok := q.timeouts["tunnel"]; ok {
			t.warn(v.stmt, "timeout tunnel: the HTTP path has no tunnels (no CONNECT, no upgrades); not translated")
		}
	}
	if len(tl) > 0 {
		fmt.Fprintf(b, "[%s.timeouts]\n%s\n", at, strings.Join(tl, "\n"))
	}
	if plan.tls {
		fmt.Fprintf(b, "[%s.tls]\nmode = \"implicit\"\n", at)
		if v := p.binds[0].minTLS; v == "1.0" || v == "1.1" || v == "1.2" || v == "1.3" {
			fmt.Fprintf(b, "min_version = %s\n", quote(v))
		}
		for _, crt := range p.binds[0].crts {
			fmt.Fprintf(b, "[[%s.tls.cert]]\ncert = %s\nkey = %s\n", at, quote(crt), quote(crt))
		}
	}

	fmt.Fprintf(b, "[%s.http]\n", at)
	var except, from []string
	for _, q := range []*proxy{p, be} {
		if q.http.forwardFor {
			from = append(from, fmt.Sprintf("line %d", q.http.ffStmt.Line))
			for _, n := range q.http.ffExcept {
				if !slices.Contains(except, n) {
					except = append(except, n)
				}
			}
		}
	}
	if len(from) > 0 {
		fmt.Fprintf(b, "# option forwardfor (%s); each such line sets its except network anew, as HAProxy does\n", strings.Join(slices.Compact(from), ", "))
		for _, q := range []*proxy{p, be} {
			for _, r := range q.http.ffReset {
				if q.http.forwardFor {
					fmt.Fprintf(b, "# (line %d, %s, is replaced by line %d for %s %s)\n", r.Line, comment(strings.Join(r.Words, " ")), q.http.ffStmt.Line, q.kind, comment(q.name))
				}
			}
		}
		b.WriteString("forwardfor = true\n")
		if len(except) > 0 {
			q := make([]string, len(except))
			for i, n := range except {
				q[i] = quote(n)
			}
			fmt.Fprintf(b, "forwardfor_except = [%s]\n", strings.Join(q, ", "))
		}
	}
	if p.http.serverClose || be.http.serverClose {
		b.WriteString("server_close = true # option http-server-close\n")
	}
	if len(p.http.captures) == 0 {
		b.WriteString("capture = [] # HAProxy captured no header; without this line maildirector captures the three X-Dovecot-* headers\n")
	} else {
		b.WriteString("capture = [\n")
		for _, c := range p.http.captures {
			fmt.Fprintf(b, "  { name = %s, len = %d }, # line %d\n", quote(c.name), c.len, c.stmt.Line)
		}
		b.WriteString("]\n")
	}
	b.WriteString("\n")
}

// splitServerAddr reads HAProxy's server address "HOST[:PORT]", an IPv6
// host bare ("2001:db8::1:143" has port 143, as HAProxy reads it).
func splitServerAddr(a string) (string, int) {
	if strings.HasPrefix(a, "[") {
		if h, p, err := net.SplitHostPort(a); err == nil {
			n, _ := strconv.Atoi(p)
			return h, n
		}
		return strings.Trim(a, "[]"), 0
	}
	i := strings.LastIndexByte(a, ':')
	if i < 0 {
		return a, 0
	}
	n, err := strconv.Atoi(a[i+1:])
	if err != nil {
		return a, 0
	}
	return a[:i], n
}

func (t *translator) emitBackend(b *strings.Builder, p *proxy, name string, users []*frontendPlan) {
	at := "backend." + key(name)
	fmt.Fprintf(b, "# %s %s (line %d)\n[%s]\n", p.kind, comment(p.name), p.stmt.Line, at)
	switch p.balance {
	case "", "roundrobin", "static-rr":
		b.WriteString("balance = \"roundrobin\"")
		if p.balance == "" {
			b.WriteString(" # HAProxy's default")
		}
		b.WriteString("\n")
	case "leastconn", "source":
		fmt.Fprintf(b, "balance = %s\n", quote(p.balance))
	default:
		t.warn(p.balStmt, "balance %s: no maildirector equivalent; translated as roundrobin (balance \"user\" keeps each user on one server)", p.balance)
		b.WriteString("balance = \"roundrobin\"\n")
	}
	mail, httpPath := false, false
	for _, u := range users {
		mail = mail || (u.proto != "tcp" && u.proto != "http")
		httpPath = httpPath || u.proto == "http"
	}
	if mail {
		b.WriteString("# balance = \"user\" would keep every session of a user on one server, which mail servers want.\n")
	}
	retries := 3 // HAProxy's default
	if p.retries >= 0 {
		retries = p.retries
	}
	if retries > 10 {
		t.warn(p.retriesAt, "retries %d: maildirector tries at most 10 other servers; written as 10", retries)
		retries = 10
	}
	fmt.Fprintf(b, "retries = %d\n", retries)
	if !p.redispatch && retries > 0 {
		t.warn(p.stmt, "without option redispatch HAProxy retried the same server; maildirector's retries go to other servers")
	}
	if p.allBackups {
		b.WriteString("allbackups = true\n")
	}
	errorLimit, onDown := 0, ""
	for _, s := range p.servers {
		if s.observe && errorLimit == 0 {
			errorLimit = 10 // HAProxy's default error-limit
			if s.errorLimit >= 0 {
				errorLimit = s.errorLimit
			}
		}
		if s.onMarkedDown == "shutdown-sessions" {
			onDown = s.onMarkedDown
		}
	}
	fmt.Fprintf(b, "error_limit = %d", errorLimit)
	if errorLimit == 0 {
		b.WriteString(" # HAProxy observed no connection errors (no \"observe layer4\")")
	}
	b.WriteString("\n")
	if onDown != "" {
		fmt.Fprintf(b, "on_marked_down = %s\n", quote(onDown))
	}

	// The health check: per server in HAProxy, per backend here.
	var first *server
	for _, s := range p.servers {
		if s.check {
			first = s
			break
		}
	}
	fmt.Fprintf(b, "[%s.check]\n", at)
	checkType := "none"
	switch {
	case first == nil:
		b.WriteString("type = \"none\" # no server has \"check\": HAProxy considered them all up\n")
	case p.httpchk != nil:
		checkType = "http"
		fmt.Fprintf(b, "type = \"http\"\nhttp_method = %s\nhttp_path = %s\n", quote(p.httpchk.method), quote(p.httpchk.path))
		if p.expect > 0 {
			fmt.Fprintf(b, "expect_status = %d\n", p.expect)
		} else {
			b.WriteString("expect_status = \"200-399\" # HAProxy's httpchk passes any 2xx or 3xx answer\n")
		}
	case p.smtpchk:
		checkType = "smtp"
		b.WriteString("type = \"smtp\"\n")
	default:
		checkType = "tcp"
		b.WriteString("type = \"tcp\" # HAProxy's check connects; type = the protocol would also see a Dovecot that stopped answering\n")
	}
	if first != nil {
		if first.inter > 0 {
			fmt.Fprintf(b, "inter = %s\n", dur(t.clamp(timeoutVal{first.inter, first.stmt}, 100*time.Millisecond, time.Hour, "check inter")))
		}
		if first.fastinter > 0 {
			fmt.Fprintf(b, "fastinter = %s\n", dur(t.clamp(timeoutVal{first.fastinter, first.stmt}, 100*time.Millisecond, time.Hour, "check fastinter")))
		}
		if first.downinter > 0 {
			fmt.Fprintf(b, "downinter = %s\n", dur(t.clamp(timeoutVal{first.downinter, first.stmt}, 100*time.Millisecond, time.Hour, "check downinter")))
		}
		if first.rise > 0 {
			fmt.Fprintf(b, "rise = %d\n", first.rise)
		}
		if first.fall > 0 {
			fmt.Fprintf(b, "fall = %d\n", first.fall)
		}
		if first.port > 0 {
			fmt.Fprintf(b, "port = %d\n", first.port)
		}
		if first.checkAddr != "" {
			fmt.Fprintf(b, "address = %s\n", quote(first.checkAddr))
		}
		if first.checkSSL {
			b.WriteString("tls = true\n")
		}
		if c, ok := p.timeouts["check"]; ok {
			fmt.Fprintf(b, "timeout = %s\n", dur(t.clamp(c, 100*time.Millisecond, time.Minute, "check timeout")))
		}
		for _, s := range p.servers {
			if s != first && s.check && (s.inter != first.inter || s.fastinter != first.fastinter || s.downinter != first.downinter ||
				s.rise != first.rise || s.fall != first.fall || s.port != first.port || s.checkAddr != first.checkAddr || s.checkSSL != first.checkSSL) {
				t.warn(s.stmt, "maildirector checks every server of a backend alike: this server's check settings differ from %s's (line %d), whose are used", first.name, first.stmt.Line)
			}
		}
	}

	weighted := false
	for _, s := range p.servers {
		weighted = weighted || s.weight >= 0
	}
	names := map[string]bool{}
	for _, s := range p.servers {
		name := tomlName(s.name)
		for k := 2; names[name]; k++ {
			name = fmt.Sprintf("%s_%d", tomlName(s.name), k)
		}
		names[name] = true
		if name != s.name {
			t.warn(s.stmt, "server named %q in maildirector (names are letters, digits, '.', '_' and '-', unique)", name)
		}
		host, port := splitServerAddr(s.addr)
		if i := strings.LastIndexByte(s.addr, ':'); port == 0 && i >= 0 && !strings.HasPrefix(s.addr, "[") && strings.Count(s.addr, ":") == 1 {
			host = s.addr[:i]
			t.warn(s.stmt, "port %q (an offset or a range) is not translated: the server's port follows the client's", s.addr[i+1:])
		}
		if port == 0 && len(users) > 0 {
			port = users[0].p.binds[0].port // HAProxy connects to the port the client came to
		}
		addr := host
		if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() {
			addr = "[" + host + "]"
		}
		if port != 0 {
			addr = net.JoinHostPort(host, strconv.Itoa(port))
		}
		fmt.Fprintf(b, "[[%s.server]]\nname = %s\naddress = %s\n", at, quote(name), quote(addr))
		if weighted {
			w := s.weight
			if w < 0 {
				w = 1 // HAProxy's default weight
			}
			fmt.Fprintf(b, "weight = %d\n", w)
		}
		if s.backup {
			b.WriteString("backup = true\n")
		}
		if s.disabled {
			b.WriteString("state = \"maint\"\n")
		}
		sp := s.sendProxy
		if sp == "" {
			sp = "none" // HAProxy sends none unless told; maildirector's default is v2-ssl
		}
		if httpPath && sp != "none" {
			// A pooled HTTP connection carries many clients' requests.
			t.warn(s.stmt, "send-proxy on an HTTP backend: maildirector's HTTP path names each request's client in X-Forwarded-For (http.forwardfor), not in a PROXY header; not translated")
			sp = "none"
		}
		fmt.Fprintf(b, "send_proxy = %s\n", quote(sp))
		if s.maxconn > 0 {
			fmt.Fprintf(b, "maxconn = %d\n", s.maxconn)
		}
		if !s.check && checkType != "none" {
			b.WriteString("check = false\n")
		}
		if s.ssl {
			tls := []string{"enabled = true"}
			if s.verify == "none" {
				tls = append(tls, "verify = false")
			}
			if s.caFile != "" {
				tls = append(tls, "ca = "+quote(s.caFile))
			}
			fmt.Fprintf(b, "tls = { %s }\n", strings.Join(tls, ", "))
		}
	}
	b.WriteString("\n")
}
