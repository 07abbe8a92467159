package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// maxFileSize caps every file the configuration reads (the TOML file,
// certificates, keys, CA bundles, password files): a typo pointing at a
// device or a huge file must fail, not hang or eat memory.
const maxFileSize = 4 << 20

// Load reads the file at path and returns [Parse] of its content. A
// returned error names the file; when there are several problems it says
// how many and lists one per line.
func Load(path string) (*Config, error) { return load(path, false) }

// LoadRouting is [Load] for tools that need only the routing (frontends,
// backends, servers, balance), like `maildirector where`: it validates
// everything but leaves the files the configuration names (certificates,
// keys, CA bundles, password files) unread, so it works for a user who
// cannot read the private keys. Its Config must not be used to serve.
func LoadRouting(path string) (*Config, error) { return load(path, true) }

func load(path string, noFiles bool) (*Config, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := parse(data, noFiles)
	if err != nil {
		if n := len(Problems(err)); n > 1 {
			return nil, fmt.Errorf("config %s: %d problems:\n%w", path, n, err)
		}
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes data strictly, applies defaults, resolves inherited values
// and validates the result.
//
// A TOML syntax error or a value of the wrong type stops decoding and is
// returned alone as a *[SyntaxError] with its line and column. Otherwise
// every problem is returned at once, joined with errors.Join, each a
// *[KeyError] naming its key path: unknown keys (wrapping [ErrUnknownKey])
// first, then what [Config.Validate] finds. On error the Config is nil.
func Parse(data []byte) (*Config, error) { return parse(data, false) }

func parse(data []byte, noFiles bool) (*Config, error) {
	// First pass: a plain map, to tell "absent" from "zero" when applying
	// defaults, and to locate unknown keys with array indexes.
	var raw map[string]any
	if _, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&raw); err != nil {
		return nil, decodeError(err)
	}
	c := &Config{noFiles: noFiles}
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(c)
	if err != nil {
		return nil, decodeError(err)
	}
	var p problems
	checkKeys(&p, md, raw)
	c.checkProtocolKeys(&p, table(raw))
	c.checkBalanceKeys(&p, table(raw))
	c.applyDefaults(table(raw))
	c.loadSecrets(&p)
	if err := c.Validate(); err != nil {
		p.errs = append(p.errs, Problems(err)...)
	}
	if err := p.join(); err != nil {
		return nil, err
	}
	return c, nil
}

// readFile reads a regular file of at most maxFileSize bytes. It checks
// the file type before opening, because opening a FIFO blocks.
func readFile(name string) ([]byte, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %s", name, Size(maxFileSize))
	}
	return data, nil
}

// mdError matches the decoder's type-mismatch errors, which are not
// toml.ParseError: `toml: line 5 (last key "a.b"): message`.
var mdError = regexp.MustCompile(`(?s)^toml: (?:line (\d+) )?\(last key ("(?:[^"\\]|\\.)*")\): (.*)$`)

// decodeError turns a decoder error into a *SyntaxError when it can.
func decodeError(err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return &SyntaxError{Key: pe.LastKey, Line: pe.Position.Line, Column: pe.Position.Col, Msg: pe.Message, err: err}
	}
	if m := mdError.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		key, uerr := strconv.Unquote(m[2])
		if uerr == nil {
			return &SyntaxError{Key: key, Line: line, Msg: m[3], err: err}
		}
	}
	return fmt.Errorf("decode config: %w", err)
}

var textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()

// checkKeys reports every key of raw that the schema does not know, with
// its array indexes and a suggestion. Keys matching a field only when case
// is ignored (which BurntSushi/toml would accept) are reported too. As a
// safety net, anything md.Undecoded lists that the walk missed is reported
// as well.
func checkKeys(p *problems, md toml.MetaData, raw map[string]any) {
	reported := map[string]bool{} // dotted keys without indexes, as toml.Key.String
	walkKeys(p, reported, "", "", raw, reflect.TypeFor[Config]())
	for _, k := range md.Undecoded() {
		covered := false
		for i := 1; i <= len(k) && !covered; i++ {
			covered = reported[k[:i].String()]
		}
		if !covered {
			reported[k.String()] = true
			p.add(k.String(), ErrUnknownKey)
		}
	}
}

// walkKeys checks raw (decoded TOML) against type t. at is the key path
// shown to the admin (with indexes); plain is the same without indexes.
func walkKeys(p *problems, reported map[string]bool, at, plain string, raw any, t reflect.Type) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return
	}
	join := func(base, part string) string {
		if base == "" {
			return part
		}
		return base + "." + part
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			return
		}
		fields := map[string]reflect.StructField{}
		var names []string
		for f := range t.Fields() {
			tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if tag == "" || tag == "-" || !f.IsExported() {
				continue
			}
			fields[tag] = f
			names = append(names, tag)
		}
		for _, k := range sortedKeys(m) {
			kat, kplain := join(at, keyPart(k)), join(plain, keyPart(k))
			if f, ok := fields[k]; ok {
				walkKeys(p, reported, kat, kplain, m[k], f.Type)
				continue
			}
			reported[kplain] = true
			p.add(kat, unknownKey(k, names))
		}
	case reflect.Map:
		m, ok := raw.(map[string]any)
		if !ok {
			return
		}
		for _, k := range sortedKeys(m) {
			walkKeys(p, reported, join(at, keyPart(k)), join(plain, keyPart(k)), m[k], t.Elem())
		}
	case reflect.Slice:
		var elems []any
		switch v := raw.(type) {
		case []map[string]any:
			for _, e := range v {
				elems = append(elems, e)
			}
		case []any:
			elems = v
		}
		for i, e := range elems {
			walkKeys(p, reported, at+"["+strconv.Itoa(i)+"]", plain, e, t.Elem())
		}
	}
}

// protocolKeys lists frontend keys that only some protocols use: a key set
// on a frontend whose protocol ignores it is an error, so that a setting
// that does nothing never looks as if it did something.
var protocolKeys = []struct {
	key    string // under [frontend.NAME]; "timeouts.x" for a timeout
	usedBy []Protocol
	why    string
}{
	{"greeting", []Protocol{ProtocolIMAP, ProtocolPOP3, ProtocolManageSieve}, "SMTP and LMTP greet with hostname; tcp says nothing"},
	{"hostname", []Protocol{ProtocolSubmission, ProtocolLMTP}, "only SMTP and LMTP greetings name the host"},
	{"plaintext_login", []Protocol{ProtocolIMAP, ProtocolPOP3, ProtocolSubmission, ProtocolManageSieve}, "it has no login"},
	{"forward", []Protocol{ProtocolIMAP, ProtocolPOP3}, "only IMAP (ID) and POP3 (XCLIENT) forward the client in-band; submission servers take xclient"},
	{"max_login_attempts", []Protocol{ProtocolIMAP, ProtocolPOP3, ProtocolSubmission, ProtocolManageSieve}, "it has no login"},
	{"splice", []Protocol{ProtocolIMAP, ProtocolPOP3, ProtocolSubmission, ProtocolManageSieve, ProtocolTCP}, "it relays no session: LMTP stores and forwards messages, HTTP forwards requests"},
	{"timeouts.login", []Protocol{ProtocolIMAP, ProtocolPOP3, ProtocolSubmission, ProtocolManageSieve}, "only the login protocols have a login to bound"},
	{"timeouts.data", []Protocol{ProtocolLMTP}, "only LMTP receives a message itself; other sessions are relayed after login and use idle"},
	{"timeouts.preauth", mailProtocols, "HTTP waits for a request's headers for timeouts.request"},
	{"timeouts.server_login", mailProtocols, "HTTP has no server login; a server's answer is bounded by timeouts.server"},
	{"timeouts.idle", mailProtocols, "HTTP uses timeouts.keep_alive between requests and timeouts.client and timeouts.server within one"},
	{"timeouts.request", httpOnly, "only HTTP reads requests"},
	{"timeouts.queue", httpOnly, "only HTTP requests queue (http.max_requests)"},
	{"timeouts.client", httpOnly, "other sessions use idle"},
	{"timeouts.server", httpOnly, "other sessions use server_login and idle"},
	{"timeouts.keep_alive", httpOnly, "only HTTP connections are kept alive between requests; other sessions use idle"},
}

var (
	knownProtocols = []Protocol{ProtocolIMAP, ProtocolPOP3, ProtocolSubmission, ProtocolLMTP, ProtocolTCP, ProtocolHTTP, ProtocolManageSieve}
	// mailProtocols are the protocols of the engine's sessions: every one
	// but http, whose requests net/http reads.
	mailProtocols = []Protocol{ProtocolIMAP, ProtocolPOP3, ProtocolSubmission, ProtocolLMTP, ProtocolTCP, ProtocolManageSieve}
	httpOnly      = []Protocol{ProtocolHTTP}
)

// checkProtocolKeys reports keys set on a frontend whose protocol does not
// use them. Unknown protocols are left to Validate.
func (c *Config) checkProtocolKeys(p *problems, raw table) {
	for _, name := range c.FrontendNames() {
		f := c.Frontends[name]
		if f == nil || !slices.Contains(knownProtocols, f.Protocol) {
			continue // Validate reports it
		}
		fraw := raw.sub("frontend").sub(name)
		for _, k := range protocolKeys {
			t, leaf := fraw, k.key
			if sub, rest, ok := strings.Cut(k.key, "."); ok {
				t, leaf = fraw.sub(sub), rest
			}
			if t.has(leaf) && !slices.Contains(k.usedBy, f.Protocol) {
				p.addf(path("frontend", keyPart(name), k.key), "does nothing for protocol %s (%s); remove it", f.Protocol, k.why)
			}
		}
	}
}

// checkBalanceKeys reports the keys of balance "director" set on a backend
// with another balance, which would silently do nothing.
func (c *Config) checkBalanceKeys(p *problems, raw table) {
	for _, name := range c.BackendNames() {
		b := c.Backends[name]
		if b == nil || b.Balance == BalanceDirector {
			continue
		}
		braw := raw.sub("backend").sub(name)
		at := path("backend", keyPart(name))
		why := fmt.Sprintf("does nothing with balance %q (only balance \"director\" places users on Dovecot's ring); remove it", string(b.Balance))
		if b.Balance == "" {
			why = `does nothing with the default balance "user" (only balance "director" places users on Dovecot's ring); remove it`
		}
		if braw.has("director_username_hash") {
			p.addf(at+".director_username_hash", "%s", why)
		}
		for i := range b.Servers {
			if braw.elem("server", i).has("vhost_count") {
				p.addf(at+".server"+idx(i)+".vhost_count", "%s", why)
			}
		}
	}
}

// unknownKey builds the error for key k in a table whose valid keys are
// names: the case-sensitive spelling, the closest name, or the full list.
func unknownKey(k string, names []string) error {
	for _, n := range names {
		if strings.EqualFold(n, k) {
			return fmt.Errorf("%w (keys are case-sensitive); write %q", ErrUnknownKey, n)
		}
	}
	best, bestDist := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(k), n); d < bestDist {
			best, bestDist = n, d
		}
	}
	if best != "" {
		return fmt.Errorf("%w; did you mean %q?", ErrUnknownKey, best)
	}
	sorted := slices.Sorted(slices.Values(names))
	return fmt.Errorf("%w; valid keys here: %s", ErrUnknownKey, strings.Join(sorted, ", "))
}

// editDistance is the Levenshtein distance between a and b (bytes).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64 // not a typo of a schema key
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// table is a decoded TOML table, used to tell an absent key from a zero one.
type table map[string]any

func (t table) has(k string) bool {
	_, ok := t[k]
	return ok
}

func (t table) sub(k string) table {
	m, _ := t[k].(map[string]any)
	return m
}

// elem returns entry i of the array of tables at key k.
func (t table) elem(k string, i int) table {
	switch v := t[k].(type) {
	case []map[string]any:
		if i < len(v) {
			return v[i]
		}
	case []any:
		if i < len(v) {
			m, _ := v[i].(map[string]any)
			return m
		}
	}
	return nil
}

// Defaults. Each is documented on its field.
const (
	defaultMaxConn          = 10000
	defaultShutdownGrace    = 30 * time.Second
	defaultStatsRefresh     = 2 * time.Second
	defaultFreezeWait       = 30 * time.Second
	defaultMaxLoginAttempts = 3
	defaultSyslogTag        = "maildirector"
	defaultMinTLSVersion    = TLSVersion("1.2")
	defaultMaxRecipients    = 1000
	defaultMaxMessageSize   = 50 * MiB
	defaultSpoolMemory      = 1 * MiB
	defaultMaxServerConns   = 16
	defaultSpoolBudget      = 1 * GiB
	defaultUserExpire       = 15 * time.Minute
	defaultRetries          = 2
	defaultErrorLimit       = 3
	defaultCheckInter       = 2 * time.Second
	defaultCheckTimeout     = 2 * time.Second
	defaultRise             = 2
	defaultFall             = 3
	defaultExpectStatus     = 200
	defaultWeight           = 100
	// defaultVhostCount and defaultUsernameHash are Dovecot 2.3's
	// (VHOST_MULTIPLIER in src/director/mail-host.c, director_username_hash).
	defaultVhostCount       = 100
	defaultUsernameHash     = "%Lu"
	defaultMaxReasons       = 20
	defaultMaxIdlePerServer = 64
	defaultReplayBuffer     = 128 * KiB
	// defaultRecipientDelimiter is Dovecot's recipient_delimiter default.
	defaultRecipientDelimiter = "+"
	// lmtpIdle is an LMTP frontend's idle timeout unless one is set: RFC
	// 5321 section 4.5.3.2.7 gives a server 5 minutes waiting for the next
	// command, and an MTA's cached connection should not hold a slot for
	// the hour an IMAP client gets.
	lmtpIdle = 5 * time.Minute
)

// defaultCheckType is the check that matches what the frontends using b
// speak: the first of imap, pop3, lmtp, submission (smtp), managesieve that
// one of them uses, else tcp.
func (b *Backend) defaultCheckType() CheckType {
	for _, p := range []Protocol{ProtocolIMAP, ProtocolPOP3, ProtocolLMTP, ProtocolSubmission, ProtocolManageSieve, ProtocolHTTP} {
		if slices.Contains(b.Protocols, p) {
			if p == ProtocolSubmission {
				return CheckTypeSMTP
			}
			return CheckType(p)
		}
	}
	return CheckTypeTCP
}

// httpOnly reports whether only http frontends use b.
func (b *Backend) httpOnly() bool {
	return len(b.Protocols) > 0 && !slices.ContainsFunc(b.Protocols, func(p Protocol) bool { return p != ProtocolHTTP })
}

// defaultBalance is "user", or "roundrobin" for a backend only http
// frontends use: HTTP requests carry no login to route by.
func (b *Backend) defaultBalance() Balance {
	if b.httpOnly() {
		return BalanceRoundRobin
	}
	return BalanceUser
}

// defaultSendProxy is the PROXY header a server gets unless it says:
// v2-ssl, what the Dovecot recipe (haproxy = yes listeners) needs, for a
// backend that mail frontends use; none for a tcp-only, http or unused
// backend, for a server that gets XCLIENT instead, and for the servers of
// a frontend with forward = "id" (the client goes in-band; never both).
func (b *Backend) defaultSendProxy(s *Server) SendProxy {
	if s.XClient || b.forwardID != "" {
		return SendProxyNone
	}
	for _, p := range b.Protocols {
		if p != ProtocolTCP && p != ProtocolHTTP {
			return SendProxyV2SSL
		}
	}
	return SendProxyNone
}

// DefaultTimeouts are the [global.timeouts] defaults.
var DefaultTimeouts = Timeouts{
	Handshake:   Duration(10 * time.Second),
	Preauth:     Duration(60 * time.Second),
	Connect:     Duration(5 * time.Second),
	ServerLogin: Duration(30 * time.Second),
	Idle:        Duration(time.Hour),
	Data:        Duration(10 * time.Minute),
	Login:       Duration(3 * time.Minute),
	// The HTTP path's, as in the HAProxy setup Dovecot documents for
	// object storage.
	Request:   Duration(time.Minute),
	Queue:     Duration(time.Minute),
	Client:    Duration(time.Minute),
	Server:    Duration(time.Minute),
	KeepAlive: Duration(10 * time.Minute),
}

// defaults fills the [cluster] keys that are absent.
func (c *Cluster) defaults(t table) {
	setStr(&c.Prefix, "/maildirector")
	if c.Node == "" {
		c.Node, _ = os.Hostname()
	}
	setDur(&c.DialTimeout, t, "dial_timeout", 2*time.Second)
	setDur(&c.RequestTimeout, t, "request_timeout", time.Second)
	setDur(&c.Heartbeat, t, "heartbeat", 2*time.Second)
	setDur(&c.NodeTTL, t, "node_ttl", 10*time.Second)
	setDur(&c.Refresh, t, "refresh", time.Minute)
}

// setInt and friends set *dst to def when the key is absent from t.
func setInt(dst *int, t table, key string, def int) {
	if !t.has(key) {
		*dst = def
	}
}

func setDur(dst *Duration, t table, key string, def time.Duration) {
	if !t.has(key) {
		*dst = Duration(def)
	}
}

func setStr[T ~string](dst *T, def T) {
	if *dst == "" {
		*dst = def
	}
}

// applyDefaults fills every absent key from its default (raw is the same
// file decoded into a map) and resolves inherited values.
func (c *Config) applyDefaults(raw table) {
	g := &c.Global
	graw := raw.sub("global")
	setStr(&g.LogLevel, LogLevelInfo)
	setStr(&g.LogFormat, LogFormatText)
	setStr(&g.SyslogFacility, SyslogFacilityLocal0)
	setStr(&g.SyslogTag, defaultSyslogTag)
	setInt(&g.MaxConn, graw, "maxconn", defaultMaxConn)
	setInt(&g.Threads, graw, "threads", 0)
	setDur(&g.ShutdownGrace, graw, "shutdown_grace", defaultShutdownGrace)
	setDur(&g.BacklogWait, graw, "backlog_wait", 10*time.Second)
	traw := graw.sub("timeouts")
	setDur(&g.Timeouts.Handshake, traw, "handshake", DefaultTimeouts.Handshake.D())
	setDur(&g.Timeouts.Preauth, traw, "preauth", DefaultTimeouts.Preauth.D())
	setDur(&g.Timeouts.Connect, traw, "connect", DefaultTimeouts.Connect.D())
	setDur(&g.Timeouts.ServerLogin, traw, "server_login", DefaultTimeouts.ServerLogin.D())
	setDur(&g.Timeouts.Idle, traw, "idle", DefaultTimeouts.Idle.D())
	setDur(&g.Timeouts.Data, traw, "data", DefaultTimeouts.Data.D())
	setDur(&g.Timeouts.Login, traw, "login", DefaultTimeouts.Login.D())
	g.Limits.defaults(graw.sub("limits"))
	setDur(&g.Timeouts.Request, traw, "request", DefaultTimeouts.Request.D())
	setDur(&g.Timeouts.Queue, traw, "queue", DefaultTimeouts.Queue.D())
	setDur(&g.Timeouts.Client, traw, "client", DefaultTimeouts.Client.D())
	setDur(&g.Timeouts.Server, traw, "server", DefaultTimeouts.Server.D())
	setDur(&g.Timeouts.KeepAlive, traw, "keep_alive", DefaultTimeouts.KeepAlive.D())
	setDur(&c.Stats.Refresh, raw.sub("stats"), "refresh", defaultStatsRefresh)
	setStr(&c.Control.Mode, "0660")
	setDur(&c.Control.FreezeWait, raw.sub("control"), "freeze_wait", defaultFreezeWait)
	c.Cluster.defaults(raw.sub("cluster"))

	hostname, _ := os.Hostname()
	for name, f := range c.Frontends {
		if f == nil { // [frontend] entries are tables, but be safe
			f = new(Frontend)
			c.Frontends[name] = f
		}
		fraw := raw.sub("frontend").sub(name)
		f.Name = name
		if f.TrustedProxies == nil {
			f.TrustedProxies = slices.Clone(g.TrustedProxies)
		}
		setStr(&f.PlaintextLogin, PlaintextLoginAuto)
		setStr(&f.Forward, ForwardProxy)
		setInt(&f.MaxLoginAttempts, fraw, "max_login_attempts", defaultMaxLoginAttempts)
		setStr(&f.Hostname, hostname)
		f.Timeouts = f.EffectiveTimeouts(*g)
		f.Limits.inherit(fraw.sub("limits"), g.Limits)
		if f.Protocol == ProtocolHTTP {
			// An http frontend's clients are a few Dovecot hosts, each with
			// as many connections as its processes' HTTP clients open:
			// per-client connection limits are off unless a table sets them.
			for _, k := range []struct {
				key string
				dst *int
			}{{"max_per_client", &f.Limits.MaxPerClient}, {"max_rate", &f.Limits.MaxRate}} {
				if !fraw.sub("limits").has(k.key) && !graw.sub("limits").has(k.key) {
					*k.dst = 0
				}
			}
		}
		setDur(&f.BacklogWait, fraw, "backlog_wait", g.BacklogWait.D())
		reserve := 0
		if f.Protocol == ProtocolLMTP {
			reserve = 100
		}
		setInt(&f.Reserve, fraw, "reserve", reserve)
		if f.Protocol == ProtocolLMTP && !fraw.sub("timeouts").has("idle") && !traw.has("idle") {
			f.Timeouts.Idle = Duration(lmtpIdle)
		}
		setStr(&f.TLS.Mode, TLSModeNone)
		setStr(&f.TLS.MinVersion, defaultMinTLSVersion)
		if f.Protocol == ProtocolLMTP && f.LMTP == nil {
			f.LMTP = new(LMTP)
		}
		if l := f.LMTP; l != nil {
			lraw := fraw.sub("lmtp")
			setInt(&l.MaxRecipients, lraw, "max_recipients", defaultMaxRecipients)
			if !lraw.has("max_message_size") {
				l.MaxMessageSize = defaultMaxMessageSize
			}
			if !lraw.has("spool_memory") {
				l.SpoolMemory = min(defaultSpoolMemory, l.MaxMessageSize)
			}
			setStr(&l.SpoolDir, os.TempDir())
			if !lraw.has("spool_budget") {
				l.SpoolBudget = max(defaultSpoolBudget, l.MaxMessageSize)
			}
			setStr(&l.ServerDown, ServerDownTempfail)
			setStr(&l.BareLF, BareLFNormalize)
			setInt(&l.MaxServerConns, lraw, "max_server_conns", defaultMaxServerConns)
		}
		if f.Protocol == ProtocolHTTP && f.HTTP == nil {
			f.HTTP = new(HTTP)
		}
		if h := f.HTTP; h != nil {
			hraw := fraw.sub("http")
			if !hraw.has("capture") { // capture = [] decodes to an empty list: none
				h.Capture = slices.Clone(DefaultCapture)
			}
			setStr(&h.ReasonHeader, "X-Dovecot-Reason")
			setInt(&h.MaxReasons, hraw, "max_reasons", defaultMaxReasons)
			setInt(&h.MaxIdlePerServer, hraw, "max_idle_per_server", defaultMaxIdlePerServer)
			if !hraw.has("replay_buffer") {
				h.ReplayBuffer = defaultReplayBuffer
			}
		}
	}

	for name, b := range c.Backends {
		if b == nil {
			b = new(Backend)
			c.Backends[name] = b
		}
	}
	for _, fname := range c.FrontendNames() {
		f := c.Frontends[fname]
		for _, name := range f.Backends() {
			if b := c.Backends[name]; b != nil && !slices.Contains(b.Protocols, f.Protocol) {
				b.Protocols = append(b.Protocols, f.Protocol)
			}
		}
		if b := c.Backends[f.Backend]; b != nil && f.Forward == ForwardID && b.forwardID == "" &&
			(f.Protocol == ProtocolIMAP || f.Protocol == ProtocolPOP3) { // elsewhere forward is an error of its own
			b.forwardID = fname
		}
	}
	for name, b := range c.Backends {
		braw := raw.sub("backend").sub(name)
		b.Name = name
		setStr(&b.Balance, b.defaultBalance())
		if !braw.has("director_username_hash") {
			b.DirectorUsernameHash = defaultUsernameHash
		}
		setDur(&b.UserExpire, braw, "user_expire", defaultUserExpire)
		setInt(&b.Retries, braw, "retries", defaultRetries)
		setInt(&b.ErrorLimit, braw, "error_limit", defaultErrorLimit)
		setStr(&b.OnMarkedDown, OnMarkedDownNone)
		if !braw.has("recipient_delimiter") {
			b.RecipientDelimiter = defaultRecipientDelimiter
		}
		setStr(&b.LoginServerDown, ServerDownNext)
		ck, craw := &b.Check, braw.sub("check")
		setStr(&ck.Type, b.defaultCheckType())
		setDur(&ck.Inter, craw, "inter", defaultCheckInter)
		if ck.FastInter == 0 {
			ck.FastInter = ck.Inter
		}
		if ck.DownInter == 0 {
			ck.DownInter = ck.Inter
		}
		setInt(&ck.Rise, craw, "rise", defaultRise)
		setInt(&ck.Fall, craw, "fall", defaultFall)
		setDur(&ck.Timeout, craw, "timeout", defaultCheckTimeout)
		setStr(&ck.SendProxy, CheckProxyAuto)
		setStr(&ck.HTTPMethod, "GET")
		setStr(&ck.HTTPPath, "/")
		if !craw.has("expect_status") {
			ck.ExpectStatus = StatusRange{defaultExpectStatus, defaultExpectStatus}
		}
		for i, s := range b.Servers {
			if s == nil {
				s = new(Server)
				b.Servers[i] = s
			}
			sraw := braw.elem("server", i)
			setInt(&s.Weight, sraw, "weight", defaultWeight)
			setInt(&s.VhostCount, sraw, "vhost_count", defaultVhostCount)
			setStr(&s.State, ServerStateReady)
			setStr(&s.SendProxy, b.defaultSendProxy(s))
			if !sraw.has("check") {
				s.Check = true
			}
			if !sraw.sub("tls").has("verify") {
				s.TLS.Verify = true
			}
			if host, _, err := splitAddress(s.Address); err == nil && s.TLS.ServerName == "" {
				s.TLS.ServerName = host // a bad address is reported once, as address
			}
		}
	}

}

// loadSecrets reads check password files into Check.Password.
func (c *Config) loadSecrets(p *problems) {
	for _, name := range c.BackendNames() {
		ck := &c.Backends[name].Check
		at := path("backend", keyPart(name), "check")
		if ck.PasswordFile == "" || c.noFiles {
			continue
		}
		if ck.Password != "" {
			p.addf(path(at, "password_file"), "set password or password_file, not both")
			continue
		}
		data, err := readFile(ck.PasswordFile)
		if err != nil {
			p.add(path(at, "password_file"), fmt.Errorf("read password: %w", err))
			continue
		}
		ck.Password = strings.TrimRight(string(data), "\r\n")
	}
}

// defaults fills the [global.limits] keys t does not set.
func (l *Limits) defaults(t table) {
	setInt(&l.MaxPerClient, t, "max_per_client", 500)
	setInt(&l.MaxRate, t, "max_rate", 200)
	setDur(&l.RateWindow, t, "rate_window", 10*time.Second)
	setInt(&l.IPv6Prefix, t, "client_prefix", 64)
	setDur(&l.PenaltyInit, t, "penalty_init", 2*time.Second)
	setDur(&l.PenaltyMax, t, "penalty_max", 15*time.Second)
	setInt(&l.BlockAfter, t, "block_after", 20)
	setDur(&l.BlockFor, t, "block_for", 5*time.Minute)
	setInt(&l.TableSize, t, "table_size", 65536)
}

// inherit takes from g every key that the frontend's table t does not set.
func (l *Limits) inherit(t table, g Limits) {
	keep := func(key string, dst, src any) {
		if t.has(key) {
			return
		}
		switch d := dst.(type) {
		case *int:
			*d = *src.(*int)
		case *Duration:
			*d = *src.(*Duration)
		case *[]string:
			*d = slices.Clone(*src.(*[]string))
		}
	}
	keep("max_per_client", &l.MaxPerClient, &g.MaxPerClient)
	keep("max_rate", &l.MaxRate, &g.MaxRate)
	keep("rate_window", &l.RateWindow, &g.RateWindow)
	keep("client_prefix", &l.IPv6Prefix, &g.IPv6Prefix)
	keep("exempt", &l.Exempt, &g.Exempt)
	keep("penalty_init", &l.PenaltyInit, &g.PenaltyInit)
	keep("penalty_max", &l.PenaltyMax, &g.PenaltyMax)
	keep("block_after", &l.BlockAfter, &g.BlockAfter)
	keep("block_for", &l.BlockFor, &g.BlockFor)
	keep("table_size", &l.TableSize, &g.TableSize)
}
