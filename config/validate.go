package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits shared by several keys.
const (
	maxConnLimit = 10_000_000
	// imapMinIdle is the shortest post-login idle timeout for IMAP: RFC 3501
	// section 5.4 says an autologout timer is at least 30 minutes, and IDLE
	// clients (RFC 2177) legitimately stay silent that long.
	imapMinIdle = 30 * time.Minute
)

// timeoutKeys lists the timeouts with their TOML key and range.
var timeoutKeys = []struct {
	key    string
	get    func(*Timeouts) Duration
	lo, hi time.Duration
}{
	{"handshake", func(t *Timeouts) Duration { return t.Handshake }, time.Second, 5 * time.Minute},
	{"preauth", func(t *Timeouts) Duration { return t.Preauth }, time.Second, 30 * time.Minute},
	{"connect", func(t *Timeouts) Duration { return t.Connect }, 100 * time.Millisecond, 2 * time.Minute},
	{"server_login", func(t *Timeouts) Duration { return t.ServerLogin }, time.Second, 5 * time.Minute},
	{"idle", func(t *Timeouts) Duration { return t.Idle }, time.Minute, 24 * time.Hour},
	{"data", func(t *Timeouts) Duration { return t.Data }, 10 * time.Second, time.Hour},
	{"login", func(t *Timeouts) Duration { return t.Login }, 10 * time.Second, time.Hour},
	{"request", func(t *Timeouts) Duration { return t.Request }, time.Second, 10 * time.Minute},
	{"queue", func(t *Timeouts) Duration { return t.Queue }, time.Second, 10 * time.Minute},
	{"client", func(t *Timeouts) Duration { return t.Client }, time.Second, time.Hour},
	{"server", func(t *Timeouts) Duration { return t.Server }, time.Second, time.Hour},
	{"keep_alive", func(t *Timeouts) Duration { return t.KeepAlive }, time.Second, time.Hour},
}

// Validate checks every value of c and returns all problems at once, joined
// with errors.Join, each a *[KeyError] naming its key path. It reads the
// certificate, key and CA files the configuration names. It does not apply
// defaults: Parse does that first, and code building a Config by hand must
// fill every field.
func (c *Config) Validate() error {
	var p problems
	c.validateGlobal(&p)
	usedBy := c.validateFrontends(&p)
	c.validateBackends(&p, usedBy)
	c.validateStats(&p)
	c.validateControl(&p)
	c.validateCluster(&p)
	return p.join()
}

func (p *problems) durRange(key string, d Duration, lo, hi time.Duration) {
	if d.D() < lo || d.D() > hi {
		p.addf(key, "%s out of range %s..%s", d, Duration(lo), Duration(hi))
	}
}

func (p *problems) intRange(key string, n, lo, hi int) {
	if n < lo || n > hi {
		p.addf(key, "%d out of range %d..%d", n, lo, hi)
	}
}

func (p *problems) enum(key string, err error) {
	if err != nil {
		p.add(key, err)
	}
}

func idx(i int) string { return "[" + strconv.Itoa(i) + "]" }

// validName reports whether s is made of [A-Za-z0-9._-] only.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// oneLine reports whether s has no control characters (CR, LF, NUL...).
func oneLine(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

func (c *Config) validateGlobal(p *problems) {
	g := &c.Global
	p.enum("global.log_level", oneOf(g.LogLevel, LogLevelDebug, LogLevelInfo, LogLevelWarn, LogLevelError))
	p.enum("global.log_format", oneOf(g.LogFormat, LogFormatText, LogFormatJSON))
	c.validateLogSinks(p)
	p.intRange("global.maxconn", g.MaxConn, 0, maxConnLimit)
	p.intRange("global.threads", g.Threads, 0, 1024)
	validatePrefixes(p, "global.trusted_proxies", g.TrustedProxies)
	p.durRange("global.shutdown_grace", g.ShutdownGrace, 0, time.Hour)
	p.durRange("global.backlog_wait", g.BacklogWait, 0, 10*time.Minute)
	for _, k := range timeoutKeys {
		p.durRange("global.timeouts."+k.key, k.get(&g.Timeouts), k.lo, k.hi)
	}
	validateLimits(p, "global.limits", &g.Limits)
}

func validateLimits(p *problems, at string, l *Limits) {
	p.intRange(at+".max_per_client", l.MaxPerClient, 0, maxConnLimit)
	p.intRange(at+".max_rate", l.MaxRate, 0, maxConnLimit)
	p.durRange(at+".rate_window", l.RateWindow, time.Second, time.Hour)
	p.intRange(at+".client_prefix", l.IPv6Prefix, 32, 128)
	validatePrefixes(p, at+".exempt", l.Exempt)
	p.durRange(at+".penalty_init", l.PenaltyInit, 0, time.Minute)
	p.durRange(at+".penalty_max", l.PenaltyMax, 0, 5*time.Minute)
	if l.PenaltyInit > l.PenaltyMax {
		p.addf(at+".penalty_init", "%s is more than penalty_max %s", l.PenaltyInit, l.PenaltyMax)
	}
	p.intRange(at+".block_after", l.BlockAfter, 0, 100000)
	p.durRange(at+".block_for", l.BlockFor, time.Second, 24*time.Hour)
	p.intRange(at+".table_size", l.TableSize, 16, 10000000)
}

// validateLogSinks checks where the log goes: log_file, or syslog with its
// facility and tag.
func (c *Config) validateLogSinks(p *problems) {
	g := &c.Global
	if g.LogFile != "" {
		switch dir := filepath.Dir(g.LogFile); {
		case !filepath.IsAbs(g.LogFile):
			p.addf("global.log_file", "%q: want an absolute path", g.LogFile)
		case c.noFiles:
		default:
			if st, err := os.Stat(dir); err != nil {
				p.add("global.log_file", err)
			} else if !st.IsDir() {
				p.addf("global.log_file", "%s is not a directory", dir)
			} else if st, err := os.Stat(g.LogFile); err == nil && !st.Mode().IsRegular() {
				p.addf("global.log_file", "%s is not a regular file", g.LogFile)
			}
		}
	}
	if g.Syslog != "" {
		if err := checkSyslogTarget(g.Syslog); err != nil {
			p.add("global.syslog", err)
		}
	}
	if g.SyslogFacility.Code() < 0 {
		names := make([]SyslogFacility, len(syslogFacilities))
		for i, sf := range syslogFacilities {
			names[i] = sf.name
		}
		p.enum("global.syslog_facility", oneOf(g.SyslogFacility, names...))
	}
	if n := len(g.SyslogTag); n < 1 || n > 48 || strings.ContainsFunc(g.SyslogTag, func(r rune) bool { return r < 33 || r > 126 }) {
		p.addf("global.syslog_tag", "%q: want 1 to 48 printable US-ASCII characters without spaces (RFC 5424 APP-NAME)", g.SyslogTag)
	}
}

// checkSyslogTarget checks a global.syslog value: "unix:" and an absolute
// path, or "udp:" and a host:port.
func checkSyslogTarget(s string) error {
	network, addr, _ := strings.Cut(s, ":")
	switch network {
	case "unix":
		if !filepath.IsAbs(addr) {
			return errorf("%q: want unix: and an absolute path, e.g. \"unix:/dev/log\"", s)
		}
	case "udp":
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			return errorf("%q: want udp:HOST:PORT, e.g. \"udp:127.0.0.1:514\"", s)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return errorf("%q: port out of range 1..65535", s)
		}
	default:
		return errorf("%q: want \"unix:PATH\" or \"udp:HOST:PORT\"", s)
	}
	return nil
}

func validatePrefixes(p *problems, at string, list []string) {
	for i, s := range list {
		if _, err := parsePrefix(s); err != nil {
			p.add(at+idx(i), err)
		}
	}
}

// validateFrontends checks every frontend and returns, per backend name,
// the frontends using it in name order.
func (c *Config) validateFrontends(p *problems) map[string][]*Frontend {
	usedBy := map[string][]*Frontend{}
	if len(c.Frontends) == 0 {
		p.addf("frontend", "no frontends defined; add a [frontend.NAME] table with protocol, bind and backend")
		return usedBy
	}
	binds := map[string]string{} // normalised address → key path of its first use
	for _, name := range c.FrontendNames() {
		f := c.Frontends[name]
		at := path("frontend", keyPart(name))
		if !validName(name) {
			p.addf(at, "frontend name %q: use only letters, digits, '.', '_' and '-'", name)
		}
		c.validateFrontend(p, at, f)

		if len(f.Bind) == 0 {
			p.addf(at+".bind", `required: at least one "IP:port", e.g. bind = ["0.0.0.0:143", "[::]:143"]`)
		}
		for i, s := range f.Bind {
			key := at + ".bind" + idx(i)
			ap, err := parseBind(s)
			if err != nil {
				p.add(key, err)
				continue
			}
			norm := ap.Addr().Unmap().String() + "|" + strconv.Itoa(int(ap.Port()))
			if first, dup := binds[norm]; dup {
				p.addf(key, "%q is already bound by %s; each address may be bound once", s, first)
				continue
			}
			binds[norm] = key
		}

		switch b := c.Backends[f.Backend]; {
		case f.Backend == "":
			p.addf(at+".backend", "required: the name of a [backend.NAME] table")
		case b == nil:
			p.addf(at+".backend", "backend %q is not defined; define [backend.%s] or use one of: %s",
				f.Backend, keyPart(f.Backend), strings.Join(c.BackendNames(), ", "))
		default:
			usedBy[f.Backend] = append(usedBy[f.Backend], f)
		}
		c.validateRoutes(p, at, f, usedBy)
	}
	return usedBy
}

func (c *Config) validateFrontend(p *problems, at string, f *Frontend) {
	g := &c.Global
	switch f.Protocol {
	case "":
		p.addf(at+".protocol", `required: one of "imap", "pop3", "submission", "lmtp", "managesieve", "tcp", "http"`)
	default:
		p.enum(at+".protocol", oneOf(f.Protocol, ProtocolIMAP, ProtocolPOP3, ProtocolSubmission, ProtocolLMTP, ProtocolTCP, ProtocolHTTP, ProtocolManageSieve))
	}
	p.intRange(at+".maxconn", f.MaxConn, 0, maxConnLimit)
	p.intRange(at+".reserve", f.Reserve, 0, 100000)
	p.durRange(at+".backlog_wait", f.BacklogWait, 0, 10*time.Minute)
	if !reflect.DeepEqual(f.Limits, g.Limits) {
		validateLimits(p, at+".limits", &f.Limits) // inherited values were checked under global
	}
	if !slices.Equal(f.TrustedProxies, g.TrustedProxies) {
		validatePrefixes(p, at+".trusted_proxies", f.TrustedProxies)
	}
	p.enum(at+".plaintext_login", oneOf(f.PlaintextLogin, PlaintextLoginAuto, PlaintextLoginAllow, PlaintextLoginDeny))
	p.enum(at+".forward", oneOf(f.Forward, ForwardProxy, ForwardID))
	loginProto := f.Protocol == ProtocolIMAP || f.Protocol == ProtocolPOP3 || f.Protocol == ProtocolSubmission || f.Protocol == ProtocolManageSieve
	if loginProto && f.PlaintextLogin == PlaintextLoginDeny && f.TLS.Mode == TLSModeNone {
		p.addf(at+".plaintext_login", `"deny" with tls.mode "none" means nobody can log in; set tls.mode to "starttls" or "implicit", or plaintext_login = "allow"`)
	}
	p.intRange(at+".max_login_attempts", f.MaxLoginAttempts, 1, 20)
	if !oneLine(f.Greeting) || len(f.Greeting) > 200 {
		p.addf(at+".greeting", "must be one line of at most 200 characters")
	}
	if !oneLine(f.Hostname) || strings.ContainsRune(f.Hostname, ' ') {
		p.addf(at+".hostname", "%q: must be a host name without spaces", f.Hostname)
	} else if f.Hostname == "" && (f.Protocol == ProtocolLMTP || f.Protocol == ProtocolSubmission) {
		p.addf(at+".hostname", "required: the host name could not be read from the system; set it, e.g. hostname = \"mx.example.com\"")
	}

	for _, k := range timeoutKeys {
		key := at + ".timeouts." + k.key
		own, global := k.get(&f.Timeouts), k.get(&g.Timeouts)
		inherited := own == 0 || own == global
		if !inherited && (own.D() < k.lo || own.D() > k.hi) {
			p.durRange(key, own, k.lo, k.hi)
			continue
		}
		if k.key == "idle" && f.Protocol == ProtocolIMAP {
			eff, from := own, ""
			if inherited {
				eff, from = global, " (inherited from global.timeouts.idle)"
			}
			if eff.D() < imapMinIdle {
				p.addf(key, "%s%s is too short for imap: RFC 3501 section 5.4 sets an autologout timer of at least 30 minutes and IDLE clients stay silent that long; set idle = \"30m\" or more", eff, from)
			}
		}
	}

	c.validateFrontendTLS(p, at+".tls", f)

	if f.LMTP != nil {
		if f.Protocol != ProtocolLMTP {
			p.addf(at+".lmtp", "only allowed for protocol \"lmtp\"; remove this table")
		} else {
			validateLMTP(p, at+".lmtp", f.LMTP)
		}
	}
	if f.HTTP != nil {
		if f.Protocol != ProtocolHTTP {
			p.addf(at+".http", "only allowed for protocol \"http\"; remove this table")
		} else {
			validateHTTP(p, at+".http", f.HTTP)
		}
	}
}

// maxCaptureLen caps a captured header's logged length (HAProxy's limit
// is its buffer size; a log line stays readable with these).
const maxCaptureLen = 1024

func validateHTTP(p *problems, at string, h *HTTP) {
	validatePrefixes(p, at+".forwardfor_except", h.ForwardForExcept)
	if len(h.ForwardForExcept) > 0 && !h.ForwardFor {
		p.addf(at+".forwardfor_except", "does nothing without forwardfor = true; set it, or remove the list")
	}
	seen := map[string]int{}
	for i, c := range h.Capture {
		cat := at + ".capture" + idx(i)
		switch {
		case c.Name == "":
			p.addf(cat+".name", `required: a request header, e.g. name = "X-Dovecot-Reason"`)
		case !isToken(c.Name):
			p.addf(cat+".name", "%q: not an HTTP header name (RFC 9110 section 5.1: a token)", c.Name)
		default:
			key := strings.ToLower(c.Name)
			if first, dup := seen[key]; dup {
				p.addf(cat+".name", "%q is already captured by capture[%d]", c.Name, first)
			} else {
				seen[key] = i
			}
		}
		p.intRange(cat+".len", c.Len, 1, maxCaptureLen)
	}
	if !isToken(h.ReasonHeader) {
		p.addf(at+".reason_header", "%q: not an HTTP header name (RFC 9110 section 5.1: a token)", h.ReasonHeader)
	}
	p.intRange(at+".max_reasons", h.MaxReasons, 1, 1000)
	p.intRange(at+".max_requests", h.MaxRequests, 0, maxConnLimit)
	p.intRange(at+".max_idle_per_server", h.MaxIdlePerServer, 0, 10000)
	if h.ReplayBuffer < 0 || h.ReplayBuffer > 64*MiB {
		p.addf(at+".replay_buffer", "%s out of range 0..64MiB", h.ReplayBuffer)
	}
}

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2),
// the syntax of a header name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func (c *Config) validateFrontendTLS(p *problems, at string, f *Frontend) {
	t := &f.TLS
	var err error
	switch f.Protocol {
	case ProtocolTCP, ProtocolHTTP:
		if t.Mode == TLSModeStartTLS {
			err = errorf(`%s has no STARTTLS; use "implicit" or "none"`, f.Protocol)
		} else {
			err = oneOf(t.Mode, TLSModeNone, TLSModeImplicit)
		}
	case ProtocolLMTP:
		if t.Mode == TLSModeImplicit {
			err = errorf(`LMTP has no implicit TLS port; use "starttls" or "none"`)
		} else {
			err = oneOf(t.Mode, TLSModeNone, TLSModeStartTLS)
		}
	default:
		err = oneOf(t.Mode, TLSModeNone, TLSModeStartTLS, TLSModeImplicit)
	}
	p.enum(at+".mode", err)
	if t.MinVersion.Uint16() == 0 {
		p.addf(at+".min_version", `unknown value %q; use one of "1.0", "1.1", "1.2", "1.3"`, string(t.MinVersion))
	}
	seen := make(map[TLSCurve]bool)
	for i, c := range t.Curves {
		switch {
		case c.CurveID() == 0:
			p.addf(fmt.Sprintf("%s.curves[%d]", at, i), `unknown curve %q; use "X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024", "X25519", "P-256", "P-384" or "P-521"`, string(c))
		case seen[c]:
			p.addf(fmt.Sprintf("%s.curves[%d]", at, i), "%q is listed twice", string(c))
		}
		seen[c] = true
	}
	if err != nil || t.Mode == TLSModeNone {
		return // certificates are unused
	}
	if len(t.Certs) == 0 {
		p.addf(at+".mode", "%q needs a certificate; add a [[%s.cert]] table with cert and key", string(t.Mode), at)
	}
	for i, cert := range t.Certs {
		if c.noFiles {
			break
		}
		cat := at + ".cert" + idx(i)
		certPEM, keyPEM := readPEM(p, cat+".cert", cert.Cert, "certificate chain"), readPEM(p, cat+".key", cert.Key, "private key")
		if certPEM == nil || keyPEM == nil {
			continue
		}
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			p.add(cat, fmt.Errorf("load %s and %s: %w", cert.Cert, cert.Key, err))
		}
	}
}

// readPEM reads a required PEM file, reporting a problem and returning nil
// when it is missing or unreadable.
func readPEM(p *problems, key, name, what string) []byte {
	if name == "" {
		p.addf(key, "required: the path of a PEM %s", what)
		return nil
	}
	data, err := readFile(name)
	if err != nil {
		p.add(key, fmt.Errorf("read %s: %w", what, err))
		return nil
	}
	return data
}

func validateLMTP(p *problems, at string, l *LMTP) {
	p.intRange(at+".max_recipients", l.MaxRecipients, 1, 100000)
	if l.MaxMessageSize < KiB || l.MaxMessageSize > 2*GiB {
		p.addf(at+".max_message_size", "%s out of range 1KiB..2GiB", l.MaxMessageSize)
	}
	if l.SpoolMemory < 0 || l.SpoolMemory > l.MaxMessageSize {
		p.addf(at+".spool_memory", "%s out of range 0..max_message_size (%s)", l.SpoolMemory, l.MaxMessageSize)
	}
	if l.SpoolBudget < l.MaxMessageSize || l.SpoolBudget > 1024*GiB {
		p.addf(at+".spool_budget", "%s out of range max_message_size (%s)..1TiB", l.SpoolBudget, l.MaxMessageSize)
	}
	if l.SpoolDir != "" {
		if st, err := os.Stat(l.SpoolDir); err != nil {
			p.add(at+".spool_dir", err)
		} else if !st.IsDir() {
			p.addf(at+".spool_dir", "%s is not a directory", l.SpoolDir)
		}
	}
	p.enum(at+".server_down", oneOf(l.ServerDown, ServerDownTempfail, ServerDownNext))
	p.enum(at+".bare_lf", oneOf(l.BareLF, BareLFNormalize, BareLFReject))
	p.intRange(at+".max_server_conns", l.MaxServerConns, 1, 1000)
}

func (c *Config) validateBackends(p *problems, usedBy map[string][]*Frontend) {
	for _, name := range c.BackendNames() {
		b := c.Backends[name]
		at := path("backend", keyPart(name))
		if !validName(name) {
			p.addf(at, "backend name %q: use only letters, digits, '.', '_' and '-'", name)
		}
		p.enum(at+".balance", oneOf(b.Balance, BalanceUser, BalanceLeastConn, BalanceRoundRobin, BalanceSource, BalanceDirector))
		if b.Balance == BalanceDirector && (b.DirectorUsernameHash == "" || !oneLine(b.DirectorUsernameHash)) {
			p.addf(at+".director_username_hash", "%q: write Dovecot's director_username_hash, e.g. \"%%Lu\"", b.DirectorUsernameHash)
		}
		p.durRange(at+".user_expire", b.UserExpire, 0, 168*time.Hour)
		if d := b.DefaultDomain; d != "" {
			if strings.HasPrefix(d, "@") {
				p.addf(at+".default_domain", "write %q without the '@'", d[1:])
			} else if err := checkHostname(d); err != nil {
				p.add(at+".default_domain", err)
			}
		}
		validateSeparators(p, at+".recipient_delimiter", b.RecipientDelimiter)
		if len(b.MasterUserSeparator) > 1 {
			// Dovecot splits at the first occurrence of one character.
			p.addf(at+".master_user_separator", "%q: one character, as Dovecot's auth_master_user_separator, e.g. \"*\"", b.MasterUserSeparator)
		} else {
			validateSeparators(p, at+".master_user_separator", b.MasterUserSeparator)
		}
		if b.MasterUserSeparator != "" && strings.Contains(b.DefaultDomain, b.MasterUserSeparator) {
			p.addf(at+".default_domain", "%q contains master_user_separator %q", b.DefaultDomain, b.MasterUserSeparator)
		}
		if b.MasterUserSeparator != "" && strings.Contains(strings.ToLower(b.RecipientDelimiter), strings.ToLower(b.MasterUserSeparator)) {
			p.addf(at+".master_user_separator", "%q is also in recipient_delimiter %q: a name could not be read both ways", b.MasterUserSeparator, b.RecipientDelimiter)
		}
		p.enum(at+".login_server_down", oneOf(b.LoginServerDown, ServerDownNext, ServerDownTempfail))
		p.intRange(at+".retries", b.Retries, 0, 10)
		p.intRange(at+".error_limit", b.ErrorLimit, 0, 1000)
		p.enum(at+".on_marked_down", oneOf(b.OnMarkedDown, OnMarkedDownNone, OnMarkedDownShutdownSessions))
		validateCheck(p, at+".check", &b.Check)

		// What the frontends using this backend need from it.
		var protos []Protocol
		var tcpUser *Frontend
		for _, f := range usedBy[name] {
			if !slices.Contains(protos, f.Protocol) {
				protos = append(protos, f.Protocol)
			}
			if f.Protocol == ProtocolTCP && tcpUser == nil {
				tcpUser = f
			}
		}
		if tcpUser != nil && (b.Balance == BalanceUser || b.Balance == BalanceDirector) {
			p.addf(at+".balance", `balance %q needs a protocol with a login, but frontend.%s (protocol tcp) uses this backend; use "leastconn", "roundrobin" or "source"`, string(b.Balance), keyPart(tcpUser.Name))
		}
		var httpUser *Frontend
		for _, f := range usedBy[name] {
			if f.Protocol == ProtocolHTTP {
				httpUser = f
				break
			}
		}
		if httpUser != nil {
			c.validateHTTPBackend(p, at, b, httpUser, protos)
		}

		if len(b.Servers) == 0 {
			p.addf(at+".server", "no servers; add at least one [[%s.server]] with name and address", at)
		}
		names := map[string]int{}
		used := *b
		used.Protocols = protos
		for i, s := range b.Servers {
			sat := at + ".server" + idx(i)
			validateServer(p, sat, b, s, c.noFiles)
			if s.Name != "" {
				if first, dup := names[s.Name]; dup {
					p.addf(sat+".name", "duplicate name %q (also server[%d]); names must be unique within a backend", s.Name, first)
				} else {
					names[s.Name] = i
				}
			}
			host, _, err := splitAddress(s.Address)
			if err != nil {
				continue // reported by validateServer
			}
			if b.Balance == BalanceDirector {
				// The ring hashes "<ip>-<i>": a host name would give other points.
				if _, err := netip.ParseAddr(host); err != nil {
					p.addf(sat+".address", "%q: balance \"director\" needs an IP address, the one in Dovecot's director_mail_servers (the ring hashes it)", s.Address)
				}
				p.intRange(sat+".vhost_count", s.VhostCount, 0, 10000)
			}
			if tcpUser != nil && s.Port(ProtocolTCP) == 0 {
				p.addf(sat+".address", "no port for protocol tcp (frontend.%s uses this backend): add one to the address, e.g. \"%s:8080\", or set ports.tcp", keyPart(tcpUser.Name), bracket(s.Host()))
			} else if len(protos) > 0 && s.Check && b.Check.Type != CheckTypeNone && checkTypeValid(b.Check.Type) == nil && used.CheckPort(s) == 0 {
				p.addf(sat, "no port for the %s check; set %s.check.port or this server's ports", string(b.Check.Type), at)
			}
		}
	}
}

// validateHTTPBackend checks a backend an http frontend (user) uses: its
// servers are object stores, not Dovecot, and HTTP requests carry no login.
func (c *Config) validateHTTPBackend(p *problems, at string, b *Backend, user *Frontend, protos []Protocol) {
	fe := "frontend." + keyPart(user.Name)
	for _, proto := range protos {
		if proto != ProtocolHTTP {
			p.addf(at, "used by %s (protocol http) and by a %s frontend; an object store and mail servers are different servers: give the http frontend a backend of its own", fe, proto)
			return
		}
	}
	if b.Balance == BalanceUser {
		p.addf(at+".balance", `balance "user" needs a protocol with a login, but %s (protocol http) uses this backend; use "roundrobin", "leastconn" or "source"`, fe)
	}
	for i, s := range b.Servers {
		if s.SendProxy != SendProxyNone && s.SendProxy != "" {
			// A pooled connection carries many clients' requests: a PROXY
			// header names one. X-Forwarded-For names each request's.
			p.addf(at+".server"+idx(i)+".send_proxy", "%q: an http frontend's servers get no PROXY header (a pooled connection carries many clients' requests; see http.forwardfor); remove it or set \"none\"", string(s.SendProxy))
		}
		if s.XClient {
			p.addf(at+".server"+idx(i)+".xclient", "XCLIENT is SMTP; %s (protocol http) uses this backend: remove it", fe)
		}
	}
}

func checkTypeValid(t CheckType) error {
	return oneOf(t, CheckTypeNone, CheckTypeTCP, CheckTypeIMAP, CheckTypePOP3, CheckTypeLMTP, CheckTypeSMTP, CheckTypeHTTP, CheckTypeManageSieve)
}

func validateCheck(p *problems, at string, ck *Check) {
	p.enum(at+".type", checkTypeValid(ck.Type))
	p.durRange(at+".inter", ck.Inter, 100*time.Millisecond, time.Hour)
	if ck.FastInter != 0 && ck.FastInter != ck.Inter {
		p.durRange(at+".fastinter", ck.FastInter, 100*time.Millisecond, time.Hour)
	}
	if ck.DownInter != 0 && ck.DownInter != ck.Inter {
		p.durRange(at+".downinter", ck.DownInter, 100*time.Millisecond, time.Hour)
	}
	p.intRange(at+".rise", ck.Rise, 1, 100)
	p.intRange(at+".fall", ck.Fall, 1, 100)
	p.durRange(at+".timeout", ck.Timeout, 100*time.Millisecond, time.Minute)
	p.intRange(at+".port", ck.Port, 0, 65535)
	if ck.Address != "" {
		if _, port, err := splitAddress(ck.Address); err != nil {
			p.add(at+".address", err)
		} else if port != 0 {
			p.addf(at+".address", "%q: put the port in check.port, not in the address", ck.Address)
		}
	}
	p.enum(at+".send_proxy", oneOf(ck.SendProxy, CheckProxyAuto, CheckProxyLocal, CheckProxyV2, CheckProxyNone))
	switch {
	case ck.User != "" && ck.Type != CheckTypeIMAP:
		p.addf(at+".user", "only imap checks log in; remove user (and password) or use type = \"imap\"")
	case ck.Type == CheckTypeIMAP && ck.User != "" && ck.Password == "" && ck.PasswordFile == "":
		p.addf(at+".user", "a probe login needs password or password_file")
	case ck.User == "" && (ck.Password != "" || ck.PasswordFile != ""):
		p.addf(at+".password", "a password without user does nothing; set user, or remove the password")
	case ck.User == "" && ck.SelectInbox:
		p.addf(at+".select_inbox", "SELECT INBOX needs a probe login; set user and password")
	}
	if !oneLine(ck.User) || !oneLine(ck.Password) {
		p.addf(at+".user", "user and password must not contain control characters")
	}
	if ck.HTTPMethod == "" || strings.ContainsFunc(ck.HTTPMethod, func(r rune) bool { return r < 'A' || r > 'Z' }) {
		p.addf(at+".http_method", "%q: write an HTTP method in capitals, e.g. \"GET\" or \"HEAD\"", ck.HTTPMethod)
	}
	if !strings.HasPrefix(ck.HTTPPath, "/") || !oneLine(ck.HTTPPath) || strings.ContainsRune(ck.HTTPPath, ' ') {
		p.addf(at+".http_path", "%q: write a path starting with '/', e.g. \"/health\"", ck.HTTPPath)
	}
	if ck.HTTPHost != "" && (!oneLine(ck.HTTPHost) || strings.ContainsRune(ck.HTTPHost, ' ')) {
		p.addf(at+".http_host", "%q: must be a host name", ck.HTTPHost)
	}
	switch r := ck.ExpectStatus; {
	case r.Lo > r.Hi:
		p.addf(at+".expect_status", "%q: the first status is above the second", r.String())
	case r.Lo < 100 || r.Hi > 599:
		p.addf(at+".expect_status", "%s out of range 100..599", r)
	}
}

// validateSeparators checks a set of separator characters (Dovecot's
// recipient_delimiter, auth_master_user_separator): printable, and none of
// them '@' or a space, which would cut every address.
func validateSeparators(p *problems, key, seps string) {
	if !oneLine(seps) || strings.ContainsAny(seps, "@ \t") || len(seps) > 8 {
		p.addf(key, "%q: use at most 8 printable characters other than '@' and space, e.g. \"+\"", seps)
	}
}

// portProtocols are the valid keys of Server.Ports.
var portProtocols = []Protocol{ProtocolIMAP, ProtocolPOP3, ProtocolLMTP, ProtocolSubmission, ProtocolHTTP, ProtocolTCP, ProtocolManageSieve}

func validateServer(p *problems, at string, b *Backend, s *Server, noFiles bool) {
	switch {
	case s.Name == "":
		p.addf(at+".name", "required, e.g. name = \"mail1\"")
	case !validName(s.Name):
		p.addf(at+".name", "%q: use only letters, digits, '.', '_' and '-'", s.Name)
	}
	if s.Address == "" {
		p.addf(at+".address", "required: a host or host:port, e.g. \"10.0.0.11\" or \"[2001:db8::11]:143\"")
	} else if _, _, err := splitAddress(s.Address); err != nil {
		p.add(at+".address", err)
	}
	for _, proto := range sortedKeys(s.Ports) {
		key := at + ".ports." + keyPart(string(proto))
		if !slices.Contains(portProtocols, proto) {
			p.addf(key, "unknown protocol; use imap, pop3, lmtp, submission, http, managesieve or tcp")
			continue
		}
		p.intRange(key, s.Ports[proto], 1, 65535)
	}
	p.intRange(at+".weight", s.Weight, 0, 1000)
	p.enum(at+".state", oneOf(s.State, ServerStateReady, ServerStateDrain, ServerStateMaint))
	p.enum(at+".send_proxy", oneOf(s.SendProxy, SendProxyV2SSL, SendProxyV2, SendProxyV1, SendProxyNone))
	if fe := b.forwardID; fe != "" && s.SendProxy != SendProxyNone {
		// Measured on Dovecot 2.3.19: behind a PROXY header the login
		// process judges login_trusted_networks by the header's client,
		// so the ID and XCLIENT fields would be ignored.
		p.addf(at+".send_proxy", "%q: frontend.%s has forward = \"id\", which tells the server the client in-band on a connection without a PROXY header (Dovecot ignores the ID/XCLIENT fields behind one); set send_proxy = \"none\" and point the server's port at a listener without haproxy = yes", string(s.SendProxy), keyPart(fe))
	}
	if s.XClient && s.SendProxy != SendProxyNone {
		// One way to name the client per connection: Dovecot takes the
		// PROXY header's address and would see XCLIENT from a client.
		p.addf(at+".xclient", "xclient and send_proxy = %q both tell the server who the client is; choose one (send_proxy = \"none\" for XCLIENT)", string(s.SendProxy))
	}
	p.intRange(at+".maxconn", s.MaxConn, 0, maxConnLimit)
	if s.TLS.CA != "" && !noFiles {
		if data, err := readFile(s.TLS.CA); err != nil {
			p.add(at+".tls.ca", fmt.Errorf("read CA bundle: %w", err))
		} else if !x509.NewCertPool().AppendCertsFromPEM(data) {
			p.addf(at+".tls.ca", "%s holds no PEM certificate", s.TLS.CA)
		}
	}
	if s.TLS.ServerName != "" {
		if err := checkHostname(s.TLS.ServerName); err != nil {
			p.add(at+".tls.server_name", err)
		}
	}
}

func (c *Config) validateStats(p *problems) {
	s := &c.Stats
	if s.Bind != "" {
		if _, err := netip.ParseAddrPort(s.Bind); err != nil {
			p.add("stats.bind", fmt.Errorf("want IP:port, e.g. \"127.0.0.1:8404\": %w", err))
		}
	}
	p.durRange("stats.refresh", s.Refresh, 500*time.Millisecond, time.Minute)
	for i, a := range s.Auth {
		if u, pw, ok := strings.Cut(a, ":"); !ok || u == "" || pw == "" {
			p.addf("stats.auth"+idx(i), `want "user:password" with both parts non-empty`)
		}
	}
	if s.Admin && len(s.Auth) == 0 {
		p.addf("stats.admin", "needs stats.auth: the commands steer the fleet")
	}
	t := &s.TLS
	switch {
	case t.Cert == "" && t.Key == "":
	case t.Cert == "" || t.Key == "":
		p.addf("stats.tls", "set both cert and key, or neither")
	case !c.noFiles:
		certPEM, keyPEM := readPEM(p, "stats.tls.cert", t.Cert, "certificate chain"), readPEM(p, "stats.tls.key", t.Key, "private key")
		if certPEM != nil && keyPEM != nil {
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				p.add("stats.tls", fmt.Errorf("load %s and %s: %w", t.Cert, t.Key, err))
			}
		}
	}
}

func (c *Config) validateControl(p *problems) {
	ct := &c.Control
	if m, err := strconv.ParseUint(ct.Mode, 8, 32); err != nil || m > 0o777 {
		p.addf("control.mode", "want octal permission bits, e.g. \"0660\"; got %q", ct.Mode)
	}
	p.durRange("control.freeze_wait", ct.FreezeWait, 0, 5*time.Minute)
	if ct.Socket != "" && !strings.HasPrefix(ct.Socket, "/") && !strings.HasPrefix(ct.Socket, ".") {
		p.addf("control.socket", "want a path, e.g. \"/run/maildirector/ctl.sock\"")
	}
}

func (c *Config) validateCluster(p *problems) {
	cl := &c.Cluster
	if !cl.Enabled() {
		return
	}
	for i, e := range cl.Endpoints {
		key := fmt.Sprintf("cluster.endpoints[%d]", i)
		hostport := e
		if scheme, rest, ok := strings.Cut(e, "://"); ok {
			if scheme != "http" && scheme != "https" {
				p.addf(key, "want host:port, http://host:port or https://host:port; got %q", e)
				continue
			}
			hostport = rest
		}
		if _, port, err := net.SplitHostPort(hostport); err != nil || port == "" {
			p.addf(key, "want host:port; got %q", e)
		}
	}
	if !strings.HasPrefix(cl.Prefix, "/") || strings.HasSuffix(cl.Prefix, "/") || len(cl.Prefix) < 2 {
		p.addf("cluster.prefix", "want a path such as \"/maildirector\" (a leading slash, none at the end); got %q", cl.Prefix)
	}
	if cl.Node == "" || strings.ContainsAny(cl.Node, "/ \t\n") {
		p.addf("cluster.node", "want a name without '/' or spaces; got %q", cl.Node)
	}
	p.durRange("cluster.dial_timeout", cl.DialTimeout, 100*time.Millisecond, time.Minute)
	p.durRange("cluster.request_timeout", cl.RequestTimeout, 10*time.Millisecond, 10*time.Second)
	p.durRange("cluster.heartbeat", cl.Heartbeat, 100*time.Millisecond, time.Minute)
	p.durRange("cluster.node_ttl", cl.NodeTTL, 2*time.Second, 10*time.Minute)
	if cl.NodeTTL.D() < 2*cl.Heartbeat.D() {
		p.addf("cluster.node_ttl", "%s: want at least twice cluster.heartbeat (%s)", cl.NodeTTL, cl.Heartbeat)
	}
	p.durRange("cluster.refresh", cl.Refresh, time.Second, time.Hour)
	t := &cl.TLS
	if (t.Cert == "") != (t.Key == "") {
		p.addf("cluster.tls", "set both cert and key, or neither")
	} else if t.Cert != "" && !c.noFiles {
		certPEM, keyPEM := readPEM(p, "cluster.tls.cert", t.Cert, "certificate chain"), readPEM(p, "cluster.tls.key", t.Key, "private key")
		if certPEM != nil && keyPEM != nil {
			if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
				p.add("cluster.tls", fmt.Errorf("load %s and %s: %w", t.Cert, t.Key, err))
			}
		}
	}
	if t.CA != "" && !c.noFiles {
		readPEM(p, "cluster.tls.ca", t.CA, "CA bundle")
	}
}
