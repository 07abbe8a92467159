package doveconf

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/maildirector/maildirector/config"
)

// Finding is one mismatch between maildirector and a Dovecot backend that
// breaks or weakens their pairing, with the key on each side.
type Finding struct {
	// Key is maildirector's side: a key path and its value.
	Key string
	// Dovecot is Dovecot's side: a setting and its value, with the line of
	// the doveconf output or "(Dovecot's default)".
	Dovecot string
	// Why says what goes wrong.
	Why string
}

func (f Finding) String() string { return f.Key + " <-> dovecot: " + f.Dovecot + ": " + f.Why }

// LintOptions are what Lint cannot read from the two configurations.
type LintOptions struct {
	// Source returns the address maildirector's connections to a server
	// (host, port) come from. Nil skips the checks that need it, with a
	// note.
	Source func(host string, port int) (netip.Addr, error)
}

// defaults are Dovecot 2.3.19's values of the settings Lint reads, which
// `doveconf -n` leaves out when unchanged (doveconf -a prints them).
var defaults = map[string]string{
	"disable_plaintext_auth":     "yes",
	"ssl":                        "yes",
	"haproxy_trusted_networks":   "",
	"login_trusted_networks":     "",
	"imap_idle_notify_interval":  "2 mins",
	"recipient_delimiter":        "+",
	"auth_master_user_separator": "",
	"auth_default_realm":         "",
	"mail_location":              "",
	"mail_nfs_storage":           "no",
	"mail_nfs_index":             "no",
}

// listener is one inet_listener of a login (or lmtp) service.
type listener struct {
	service, name string
	proto         string // the protocol its service speaks
	port          int
	haproxy, ssl  bool
	where         string // how to name it in a finding
}

// serviceProtocols maps the services with inet listeners to what they speak.
var serviceProtocols = map[string]string{
	"imap-login": "imap", "pop3-login": "pop3", "submission-login": "submission", "lmtp": "lmtp",
}

// defaultListeners are Dovecot 2.3.19's inet listeners per service
// (doveconf -a of an empty configuration): name, port, ssl.
var defaultListeners = map[string][]listener{
	"imap-login":       {{name: "imap", port: 143}, {name: "imaps", port: 993, ssl: true}},
	"pop3-login":       {{name: "pop3", port: 110}, {name: "pop3s", port: 995, ssl: true}},
	"submission-login": {{name: "submission", port: 587}},
	"lmtp":             nil,
}

// linter holds one Lint run.
type linter struct {
	conf     *Conf
	opts     LintOptions
	findings []Finding
	seen     map[string]bool
}

func (l *linter) add(key, dovecot, why string, a ...any) {
	f := Finding{Key: key, Dovecot: dovecot, Why: fmt.Sprintf(why, a...)}
	if !l.seen[f.String()] {
		l.seen[f.String()] = true
		l.findings = append(l.findings, f)
	}
}

// get returns the effective value of key for proto and how to name it.
func (l *linter) get(key, proto string) (string, string) {
	if s, ok := l.conf.Get(key, proto); ok {
		where := fmt.Sprintf("line %d", s.Line)
		if proto != "" && l.conf.Root.Child("protocol", proto) != nil {
			if _, inProto := l.conf.Root.Child("protocol", proto).Settings[key]; inProto {
				where = fmt.Sprintf("protocol %s, line %d", proto, s.Line)
			}
		}
		return s.Value, fmt.Sprintf("%s = %s (%s)", key, s.Value, where)
	}
	v := defaults[key]
	return v, fmt.Sprintf("%s = %s (Dovecot's default)", key, v)
}

// listeners returns the inet listeners with a port, defaults merged with
// what the output sets.
func (l *linter) listeners() []listener {
	var out []listener
	for _, svc := range slices.Sorted(maps.Keys(serviceProtocols)) {
		byName := map[string]*listener{}
		var order []string
		for _, d := range defaultListeners[svc] {
			d := d
			byName[d.name] = &d
			order = append(order, d.name)
		}
		if s := l.conf.Root.Child("service", svc); s != nil {
			for _, c := range s.Children {
				if c.Type != "inet_listener" {
					continue
				}
				li := byName[c.Name]
				if li == nil {
					li = &listener{name: c.Name}
					byName[c.Name] = li
					order = append(order, c.Name)
				}
				if v, ok := c.Settings["port"]; ok {
					li.port, _ = strconv.Atoi(v.Value)
				}
				if v, ok := c.Settings["haproxy"]; ok {
					li.haproxy = v.Value == "yes"
				}
				if v, ok := c.Settings["ssl"]; ok {
					li.ssl = v.Value == "yes"
				}
			}
		}
		for _, name := range order {
			li := byName[name]
			if li.port <= 0 {
				continue
			}
			li.service, li.proto = svc, serviceProtocols[svc]
			li.where = fmt.Sprintf("service %s { inet_listener %s { port = %d, haproxy = %s, ssl = %s } }", svc, li.name, li.port, yesNo(li.haproxy), yesNo(li.ssl))
			out = append(out, *li)
		}
	}
	return out
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// covered reports whether addr is in Dovecot's list of networks (CIDRs or
// addresses, separated by spaces or commas).
func covered(list string, addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, n := range strings.FieldsFunc(list, func(r rune) bool { return r == ' ' || r == ',' || r == '\t' }) {
		if p, err := netip.ParsePrefix(n); err == nil && p.Contains(addr) {
			return true
		}
		if a, err := netip.ParseAddr(n); err == nil && a.Unmap() == addr {
			return true
		}
	}
	return false
}

// Lint checks cfg against one Dovecot backend's doveconf output: every
// mismatch that breaks or weakens the pairing (Findings), and what it
// could not check (notes).
func Lint(cfg *config.Config, conf *Conf, opts LintOptions) ([]Finding, []string) {
	l := &linter{conf: conf, opts: opts, seen: map[string]bool{}}
	var notes []string
	if opts.Source == nil {
		notes = append(notes, "haproxy_trusted_networks and login_trusted_networks: not checked (maildirector's source address is unknown)")
	}
	listeners := l.listeners()
	protocols, protocolsKnown := conf.Get("protocols", "")
	shared := l.sharedStorage()

	for _, bname := range cfg.BackendNames() {
		b := cfg.Backends[bname]
		var mail []config.Protocol
		for _, p := range b.Protocols {
			if _, ok := defaultListeners[serviceFor(p)]; ok {
				mail = append(mail, p)
			}
		}
		if len(mail) == 0 {
			continue
		}
		at := "backend." + bname
		for _, p := range mail {
			if protocolsKnown && !slices.Contains(strings.Fields(protocols.Value), string(p)) {
				l.add(fmt.Sprintf("frontends of protocol %s using %s", p, at), fmt.Sprintf("protocols = %s (line %d)", protocols.Value, protocols.Line),
					"Dovecot does not serve %s: every session fails", p)
			}
		}
		// The frontends of b with forward = "id", by protocol.
		forwardID := map[config.Protocol]string{}
		for _, fname := range cfg.FrontendNames() {
			if f := cfg.Frontends[fname]; f.Backend == bname && f.Forward == config.ForwardID && forwardID[f.Protocol] == "" {
				forwardID[f.Protocol] = fname
			}
		}
		for i, s := range b.Servers {
			sat := fmt.Sprintf("%s.server[%d] (%s)", at, i, s.Name)
			for _, p := range mail {
				l.server(sat, s, p, listeners, forwardID[p])
			}
		}
		l.backend(cfg, b, at, mail, shared)
	}
	return l.findings, notes
}

func serviceFor(p config.Protocol) string {
	for svc, proto := range serviceProtocols {
		if proto == string(p) {
			return svc
		}
	}
	return ""
}

// server checks one server for protocol p; fwdID names the frontend of p
// with forward = "id" that uses it ("" when none does).
func (l *linter) server(sat string, s *config.Server, p config.Protocol, listeners []listener, fwdID string) {
	port := s.Port(p)
	var li *listener
	for i := range listeners {
		if listeners[i].port == port {
			li = &listeners[i]
			if li.proto == string(p) {
				break
			}
		}
	}
	proto := string(p)
	portKey := fmt.Sprintf("%s address/ports.%s: port %d", sat, proto, port)
	if li == nil {
		var have []string
		for _, x := range listeners {
			if x.proto == proto {
				have = append(have, fmt.Sprintf("%s %d", x.name, x.port))
			}
		}
		l.add(portKey, fmt.Sprintf("no inet_listener with port %d (service %s has: %s)", port, serviceFor(p), strings.Join(have, ", ")),
			"maildirector's %s sessions cannot reach this server", proto)
		return
	}
	if li.proto != proto {
		l.add(portKey, li.where, "port %d is Dovecot's %s listener, not %s", port, li.proto, proto)
	}
	sendKey := fmt.Sprintf("%s.send_proxy = %q", sat, string(s.SendProxy))
	proxied := s.SendProxy != config.SendProxyNone
	switch {
	case li.haproxy && !proxied:
		l.add(sendKey, li.where, "the listener requires a PROXY header (haproxy = yes), so every session and check without one fails")
	case !li.haproxy && proxied:
		l.add(sendKey, li.where, "a PROXY header sent to a plain listener: Dovecot reads it as a command and the session fails")
	}
	tlsKey := fmt.Sprintf("%s.tls.enabled = %v", sat, s.TLS.Enabled)
	switch {
	case li.ssl && !s.TLS.Enabled:
		l.add(tlsKey, li.where, "the listener expects TLS from the first byte; plaintext sessions fail")
	case !li.ssl && s.TLS.Enabled:
		l.add(tlsKey, li.where, "the listener speaks plaintext; the TLS handshake fails")
	}
	var src netip.Addr
	if l.opts.Source != nil {
		var err error
		if src, err = l.opts.Source(s.Host(), port); err != nil {
			l.add(sat, "(source address)", "cannot tell maildirector's source address toward %s: %v", s.Host(), err)
		}
	}
	if li.haproxy && proxied && src.IsValid() {
		if v, where := l.get("haproxy_trusted_networks", proto); !covered(v, src) {
			l.add(fmt.Sprintf("%s (maildirector connects from %s)", sendKey, src), where,
				"Dovecot refuses PROXY headers from %s: every session through maildirector fails", src)
		}
	}
	if p == config.ProtocolSubmission && s.XClient && src.IsValid() {
		if v, where := l.get("login_trusted_networks", proto); !covered(v, src) {
			l.add(fmt.Sprintf("%s.xclient = true (maildirector connects from %s)", sat, src), where,
				"Dovecot's submission accepts XCLIENT only from login_trusted_networks: the client's address is lost")
		}
	}
	if fwdID != "" && src.IsValid() {
		// Dovecot honours IMAP ID's x-originating-ip and x-session-ext-id
		// and POP3 XCLIENT only from login_trusted_networks, judged by
		// maildirector's address on a plain listener.
		if v, where := l.get("login_trusted_networks", proto); !covered(v, src) {
			what := "Dovecot ignores the ID fields: sessions log maildirector's address as rip and Dovecot's own session id, and plaintext logins are not secured"
			if p == config.ProtocolPOP3 {
				what = "Dovecot refuses XCLIENT (\"-ERR You are not from trusted IP\"): every POP3 login through maildirector fails"
			}
			l.add(fmt.Sprintf("frontend.%s.forward = \"id\" toward %s (maildirector connects from %s)", fwdID, sat, src), where, "%s", what)
		}
	}
	// With forward = "id" from a trusted address Dovecot counts the
	// session as secured (login-common: trusted networks are secured);
	// from an untrusted one the finding above says what breaks.
	if fwdID == "" && (p == config.ProtocolIMAP || p == config.ProtocolPOP3 || p == config.ProtocolSubmission) {
		sslv, sslWhere := l.get("ssl", proto)
		dpa, dpaWhere := l.get("disable_plaintext_auth", proto)
		if (sslv == "required" || dpa == "yes") && !s.TLS.Enabled && s.SendProxy != config.SendProxyV2SSL {
			where := dpaWhere
			if sslv == "required" {
				where = sslWhere
			}
			l.add(sendKey, where, "Dovecot wants secured logins; without the PP2 SSL TLV (send_proxy = \"v2-ssl\") or TLS to the server, even clients that used TLS with maildirector are refused")
		}
	}
}

// backend checks what the frontends using b and b's routing keys need.
func (l *linter) backend(cfg *config.Config, b *config.Backend, at string, mail []config.Protocol, shared string) {
	for _, fname := range cfg.FrontendNames() {
		f := cfg.Frontends[fname]
		if f.Backend != b.Name {
			continue
		}
		fat := "frontend." + fname
		switch f.Protocol {
		case config.ProtocolIMAP:
			v, where := l.get("imap_idle_notify_interval", "imap")
			if every, err := parseTime(v); err == nil && every > 0 && f.Timeouts.Idle.D() <= every {
				l.add(fmt.Sprintf("%s.timeouts.idle = %q", fat, f.Timeouts.Idle.D()), where,
					"Dovecot says nothing to an idling client for %s, so maildirector ends IDLE sessions first", every)
			}
		case config.ProtocolLMTP:
			if f.LMTP != nil && f.LMTP.ServerDown == config.ServerDownNext && shared != "" {
				l.add(fmt.Sprintf("%s.lmtp.server_down = \"next\"", fat), shared,
					"without shared storage, mail for a user whose server is down is delivered to a server that does not hold the mailbox")
			}
		}
		if (f.Protocol == config.ProtocolIMAP || f.Protocol == config.ProtocolPOP3 || f.Protocol == config.ProtocolSubmission) &&
			f.PlaintextAllowed() && f.TLS.Mode == config.TLSModeNone {
			if dpa, where := l.get("disable_plaintext_auth", string(f.Protocol)); dpa == "yes" {
				why := "maildirector takes plaintext logins on this frontend that Dovecot refuses as unsecured: users are asked for a password that cannot work"
				if f.Forward == config.ForwardID {
					// Dovecot counts login_trusted_networks as secured.
					why = "with forward = \"id\" Dovecot counts maildirector's sessions as secured, so its disable_plaintext_auth no longer keeps passwords off the client's plaintext hop: maildirector must (tls.mode, plaintext_login = \"deny\")"
				}
				l.add(fmt.Sprintf("%s.plaintext_login (tls.mode = \"none\")", fat), where, "%s", why)
			}
		}
	}
	login := slices.ContainsFunc(mail, func(p config.Protocol) bool { return p != config.ProtocolLMTP })
	if login && b.LoginServerDown == config.ServerDownNext && shared != "" {
		l.add(fmt.Sprintf("%s.login_server_down = \"next\"", at), shared,
			"without shared storage, a user whose server is down logs in on a server that does not hold the mailbox and sees it empty")
	}
	if slices.Contains(mail, config.ProtocolLMTP) || b.StripLoginDetail {
		if v, where := l.get("recipient_delimiter", "lmtp"); v != b.RecipientDelimiter {
			l.add(fmt.Sprintf("%s.recipient_delimiter = %q", at, b.RecipientDelimiter), where,
				"maildirector and Dovecot cut a different detail off addresses: one user's mail can land on two servers")
		}
	}
	if login {
		if v, where := l.get("auth_master_user_separator", ""); v != b.MasterUserSeparator {
			l.add(fmt.Sprintf("%s.master_user_separator = %q", at, b.MasterUserSeparator), where,
				"master user logins are routed on another name than the user Dovecot logs in: they can land on another server than the user's")
		}
	}
	if v, where := l.get("auth_default_realm", ""); v != b.DefaultDomain {
		l.add(fmt.Sprintf("%s.default_domain = %q", at, b.DefaultDomain), where,
			"\"user\" and \"user@domain\" are one user on one side and two on the other: one mailbox can be used from two servers")
	}
}

// sharedStorage returns "" when the output shows storage every server
// sees (NFS settings, object storage), else the setting that shows it is
// local, for a finding.
func (l *linter) sharedStorage() string {
	if v, _ := l.get("mail_nfs_storage", ""); v == "yes" {
		return ""
	}
	if v, _ := l.get("mail_nfs_index", ""); v == "yes" {
		return ""
	}
	loc, where := l.get("mail_location", "")
	if strings.HasPrefix(loc, "obox:") || strings.HasPrefix(loc, "imapc:") {
		return ""
	}
	return where + ", mail_nfs_storage = no: no shared storage"
}

// parseTime reads a Dovecot time setting: a number and a unit ("2 mins",
// "1 hour", "30s"); no unit means seconds (settings-parser.c).
func parseTime(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.Atoi(s[:i])
	if err != nil {
		return 0, fmt.Errorf("time %q: no number", s)
	}
	unit := strings.ToLower(strings.TrimSpace(s[i:]))
	var u time.Duration
	switch unit {
	case "", "s", "sec", "secs", "second", "seconds":
		u = time.Second
	case "ms", "msec", "msecs", "millisecond", "milliseconds":
		u = time.Millisecond
	case "m", "min", "mins", "minute", "minutes":
		u = time.Minute
	case "h", "hour", "hours":
		u = time.Hour
	case "d", "day", "days":
		u = 24 * time.Hour
	case "w", "week", "weeks":
		u = 7 * 24 * time.Hour
	default:
		return 0, fmt.Errorf("time %q: unknown unit", s)
	}
	return time.Duration(n) * u, nil
}
