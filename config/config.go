package config

import (
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Config is one loaded configuration file. After [Parse] or [Load] it is a
// complete, validated snapshot: every default is filled in (see the
// package documentation for what "resolved at load" means per field) and
// callers must not modify it; a reload builds a new Config.
type Config struct {
	// Global holds process-wide settings and the defaults for frontends.
	Global Global `toml:"global"`
	// Frontends are the [frontend.NAME] tables, keyed by NAME. At least one
	// is required. Iterate in [Config.FrontendNames] order for stable output.
	Frontends map[string]*Frontend `toml:"frontend"`
	// Backends are the [backend.NAME] tables, keyed by NAME. Iterate in
	// [Config.BackendNames] order for stable output.
	Backends map[string]*Backend `toml:"backend"`
	// Stats is the [stats] table: the dashboard, CSV, JSON and metrics
	// listener. Off unless Stats.Bind is set.
	Stats Stats `toml:"stats"`
	// Control is the [control] table: the control socket, operator
	// freezes and the runtime state file.
	Control Control `toml:"control"`
	// Cluster is the [cluster] table: several maildirector nodes sharing
	// placement through etcd. Off unless Cluster.Endpoints is set.
	Cluster Cluster `toml:"cluster"`

	// noFiles, set by [LoadRouting], leaves the files the configuration
	// names (certificates, keys, CA bundles, password files) unread.
	noFiles bool
}

// Global is the [global] table.
type Global struct {
	// LogLevel is the minimum level logged. Default "info".
	LogLevel LogLevel `toml:"log_level"`
	// LogFormat selects slog's text or JSON handler. Default "text".
	LogFormat LogFormat `toml:"log_format"`
	// LogFile is the file the log goes to instead of stderr: an absolute
	// path in an existing directory, appended to, created with mode 0640
	// if missing. SIGUSR1 opens it again by name (after logrotate renamed
	// it). Default empty: stderr, unless Syslog is set. With both set,
	// every line goes to both.
	LogFile string `toml:"log_file"`
	// Syslog sends the log to syslog instead of stderr, each line one RFC
	// 5424 message with the line as its MSG: "unix:PATH" (a local datagram
	// socket, "unix:/dev/log") or "udp:HOST:PORT" (RFC 5426: any host, but
	// unencrypted and unacknowledged, so keep it on loopback or a trusted
	// network). Default empty: off.
	Syslog string `toml:"syslog"`
	// SyslogFacility is the syslog facility of the messages. Default
	// "local0".
	SyslogFacility SyslogFacility `toml:"syslog_facility"`
	// SyslogTag is the messages' APP-NAME (RFC 5424 section 6.2.5): 1 to
	// 48 printable US-ASCII characters. Default "maildirector".
	SyslogTag string `toml:"syslog_tag"`
	// MaxConn caps live sessions over all frontends; when reached, new
	// connections wait in the kernel backlog (as HAProxy's global maxconn).
	// Default 10000; 0 means unlimited; range 0..10000000.
	MaxConn int `toml:"maxconn"`
	// Threads is how many threads run Go code at once (GOMAXPROCS; HAProxy's
	// nbthread). Default 0: one per CPU the process may use (Go's own
	// default, which reads the cgroup's CPU limit); range 0..1024. A
	// reload applies it.
	Threads int `toml:"threads"`
	// TrustedProxies lists CIDRs or bare IP addresses whose PROXY v1/v2
	// headers are honoured on the listeners (e.g. an L4 balancer in front).
	// Headers from other sources are not parsed. Default empty: no PROXY
	// headers are accepted. Frontends inherit it unless they set their own.
	TrustedProxies []string `toml:"trusted_proxies"`
	// ShutdownGrace is the longest live sessions get after SIGTERM (or an
	// upgrade's handover) to reach a clean point of their protocol before
	// they are closed. Default 30s; range 0..1h.
	ShutdownGrace Duration `toml:"shutdown_grace"`
	// BacklogWait is how long new connections of a full frontend (maxconn
	// reached) wait in the listen backlog; past it they are accepted and
	// refused in the protocol's words until a slot frees. Default 10s;
	// range 0..10m; 0: they wait. Frontends inherit it unless they set
	// their own.
	BacklogWait Duration `toml:"backlog_wait"`
	// Timeouts are the defaults for every frontend.
	Timeouts Timeouts `toml:"timeouts"`
	// Limits are the per-client limits and the failed-login penalty, the
	// defaults for every frontend.
	Limits Limits `toml:"limits"`
}

// Timeouts are the per-phase deadlines of a session. In [global.timeouts]
// every key has a default; in [frontend.NAME.timeouts] a key that is absent
// (or zero) inherits the global value.
type Timeouts struct {
	// Handshake bounds a TLS handshake (implicit TLS and STARTTLS).
	// Default 10s; range 1s..5m.
	Handshake Duration `toml:"handshake"`
	// Preauth is how long a client may sit idle before it has logged in.
	// Default 60s; range 1s..30m.
	Preauth Duration `toml:"preauth"`
	// Connect bounds the backend TCP connect plus TLS to the server.
	// Default 5s; range 100ms..2m.
	Connect Duration `toml:"connect"`
	// ServerLogin bounds the backend greeting and its answer to the
	// replayed login. Default 30s; range 1s..5m.
	ServerLogin Duration `toml:"server_login"`
	// Idle closes a logged-in session after no bytes moved either way for
	// this long. Default 1h; range 1m..24h; at least 30m for protocol imap
	// (RFC 3501 section 5.4: the autologout timer is at least 30 minutes,
	// and IDLE clients are silent for long stretches).
	Idle Duration `toml:"idle"`
	// Login bounds the whole time before login however active the client
	// is: greeting, pre-login commands, TLS handshakes and failed
	// attempts together (Dovecot's login processes allow 3 minutes), so a
	// client sending a byte now and then cannot hold a slot. Default 3m;
	// range 10s..1h; imap, pop3, submission and managesieve.
	Login Duration `toml:"login"`
	// Data bounds receiving a DATA body from the client (LMTP, submission)
	// and a server's answer to DATA. Default 10m; range 10s..1h.
	Data Duration `toml:"data"`
	// Request bounds receiving an HTTP request's headers, from its first
	// byte (HAProxy's timeout http-request). Default 1m; range 1s..10m;
	// http only.
	Request Duration `toml:"request"`
	// Queue bounds how long an HTTP request waits for a slot under
	// http.max_requests before it gets 503 (HAProxy's timeout queue).
	// Default 1m; range 1s..10m; http only.
	Queue Duration `toml:"queue"`
	// Client closes an HTTP connection whose client is silent this long
	// while its request body is read or the response written (HAProxy's
	// timeout client). Default 1m; range 1s..1h; http only.
	Client Duration `toml:"client"`
	// Server fails an HTTP request whose server is silent this long: its
	// response headers (504), a body either way (HAProxy's timeout
	// server). Default 1m; range 1s..1h; http only.
	Server Duration `toml:"server"`
	// KeepAlive closes an idle HTTP client connection after this long
	// between requests (HAProxy's timeout http-keep-alive). Default 10m;
	// range 1s..1h; http only.
	KeepAlive Duration `toml:"keep_alive"`
}

// Frontend is one [frontend.NAME] table: a set of listeners speaking one
// protocol and sending sessions to one backend.
type Frontend struct {
	// Name is the table's NAME, filled in by Parse.
	Name string `toml:"-"`
	// Protocol is the protocol spoken on the listeners. Required.
	Protocol Protocol `toml:"protocol"`
	// Bind lists the listen addresses, each "IP:port" (IPv6 in brackets,
	// e.g. "[::]:143"). Required, at least one; no address may appear twice
	// over all frontends.
	Bind []string `toml:"bind"`
	// Backend names the [backend.NAME] that serves this frontend. Required.
	Backend string `toml:"backend"`
	// MaxConn caps this frontend's live sessions. Default 0: only the
	// global limit applies.
	MaxConn int `toml:"maxconn"`
	// Reserve is how many sessions this frontend may have beyond
	// global.maxconn, in slots no other frontend can take, so that a flood
	// on one port cannot lock the MTA out of LMTP. Default 100 for lmtp
	// frontends, 0 for the others; range 0..100000.
	Reserve int `toml:"reserve"`
	// BacklogWait overrides Global.BacklogWait. Resolved at load: after
	// Parse it holds the effective value.
	BacklogWait Duration `toml:"backlog_wait"`
	// TrustedProxies overrides Global.TrustedProxies when present (an empty
	// list trusts nobody). Resolved at load: after Parse it holds the
	// effective list.
	TrustedProxies []string `toml:"trusted_proxies"`
	// PlaintextLogin says whether LOGIN / AUTH PLAIN is accepted on a
	// connection without TLS. Default "auto"; see [Frontend.PlaintextAllowed].
	PlaintextLogin PlaintextLogin `toml:"plaintext_login"`
	// Forward is how the servers learn who the client is: "proxy" (the
	// PROXY header of each server's send_proxy) or "id" (no PROXY header:
	// the client's address and maildirector's session id in-band before
	// the login, IMAP ID or POP3 XCLIENT, which Dovecot takes from
	// login_trusted_networks; its log then shows session=<the session id
	// of maildirector's log line>). Default "proxy"; imap and pop3 only.
	// With "id" the backend's servers default to send_proxy = "none", and
	// any other value is an error.
	Forward Forward `toml:"forward"`
	// MaxLoginAttempts is how many failed logins one connection may make
	// before it is closed. Default 3; range 1..20.
	MaxLoginAttempts int `toml:"max_login_attempts"`
	// Splice moves a logged-in session's bulk transfers (a read that
	// fills the relay's 16 KiB buffer) by splice(2) through a pipe instead
	// of read and write (HAProxy's option splice-auto). Default false.
	// imap, pop3, submission, managesieve and tcp: the frontends that relay.
	Splice bool `toml:"splice"`
	// Greeting is the text after the protocol's greeting code. Default
	// empty: the frontend picks a per-protocol text. One line.
	Greeting string `toml:"greeting"`
	// Hostname is the name used in SMTP/LMTP greetings. Default (resolved
	// at load) os.Hostname().
	Hostname string `toml:"hostname"`
	// Timeouts override Global.Timeouts key by key. Resolved at load: after
	// Parse every key holds the effective value.
	Timeouts Timeouts `toml:"timeouts"`
	// Limits override Global.Limits key by key. Resolved at load: after
	// Parse every key holds the effective value.
	Limits Limits `toml:"limits"`
	// TLS is the client-side TLS setup.
	TLS FrontendTLS `toml:"tls"`
	// LMTP holds the LMTP delivery settings. Only allowed for protocol
	// lmtp; after Parse it is non-nil exactly for lmtp frontends.
	LMTP *LMTP `toml:"lmtp"`
	// HTTP holds the HTTP proxy's settings. Only allowed for protocol
	// http; after Parse it is non-nil exactly for http frontends.
	HTTP *HTTP `toml:"http"`
	// Route lists routing rules, in order: the first that matches a
	// session sends it to its backend instead of Backend (see [Route]).
	// Default none.
	Route []*Route `toml:"route"`
}

// HTTP is a [frontend.NAME.http] table: the HTTP path to Dovecot's object
// storage.
type HTTP struct {
	// ForwardFor adds the client's address to the X-Forwarded-For header
	// the servers get, after the values the client sent (HAProxy's option
	// forwardfor). Default false: the client's header passes unchanged.
	ForwardFor bool `toml:"forwardfor"`
	// ForwardForExcept lists CIDRs or addresses whose clients get no
	// X-Forwarded-For added (HAProxy's forwardfor except). Default empty.
	ForwardForExcept []string `toml:"forwardfor_except"`
	// Capture lists the request headers written into each request's
	// access log line, each cut to its length (HAProxy's capture request
	// header NAME len N). Default (absent): X-Dovecot-Reason 40,
	// X-Dovecot-Username 40, X-Dovecot-Session-Id 70; [] captures none.
	Capture []Capture `toml:"capture"`
	// ReasonHeader is the request header the statistics count requests
	// by. Default "X-Dovecot-Reason".
	ReasonHeader string `toml:"reason_header"`
	// MaxReasons is how many distinct reasons the statistics count on
	// their own; requests of further reasons count as "other", so the
	// metrics' label set stays bounded. Default 20; range 1..1000.
	MaxReasons int `toml:"max_reasons"`
	// MaxRequests caps the requests in flight to the servers; further
	// requests wait in a queue for up to timeouts.queue, then get 503.
	// Default 0: no limit; range 0..10000000.
	MaxRequests int `toml:"max_requests"`
	// ServerClose closes the server connection after each response
	// (HAProxy's option http-server-close). Default false: connections to
	// the servers are kept alive and pooled.
	ServerClose bool `toml:"server_close"`
	// MaxIdlePerServer caps the idle pooled connections to each server.
	// Default 64; range 0..10000 (0 keeps none).
	MaxIdlePerServer int `toml:"max_idle_per_server"`
	// ReplayBuffer is how much of a request body is kept so that the
	// request can go to another server after a failure; a body read past
	// it is never sent twice. Default 128KiB; range 0..64MiB.
	ReplayBuffer Size `toml:"replay_buffer"`
}

// Capture is one entry of frontend.NAME.http.capture.
type Capture struct {
	// Name is the header's name (an HTTP token). Required.
	Name string `toml:"name"`
	// Len is how many bytes of its value are logged. Required; range
	// 1..1024.
	Len int `toml:"len"`
}

// DefaultCapture is frontend.NAME.http.capture when absent: the headers
// Dovecot's HTTP client sends to object storage, with the lengths of
// Dovecot's documented HAProxy setup.
var DefaultCapture = []Capture{
	{Name: "X-Dovecot-Reason", Len: 40},
	{Name: "X-Dovecot-Username", Len: 40},
	{Name: "X-Dovecot-Session-Id", Len: 70},
}

// FrontendTLS is a [frontend.NAME.tls] table.
type FrontendTLS struct {
	// Mode is how clients get TLS. Default "none". starttls and implicit
	// need at least one certificate; tcp frontends allow none|implicit,
	// lmtp frontends none|starttls.
	Mode TLSMode `toml:"mode"`
	// MinVersion is the lowest TLS version accepted. Default "1.2".
	MinVersion TLSVersion `toml:"min_version"`
	// Curves are the key exchange groups accepted (HAProxy's bind option
	// curves): "X25519MLKEM768", "SecP256r1MLKEM768", "SecP384r1MLKEM1024",
	// "X25519", "P-256", "P-384", "P-521". Go picks among them in its own
	// order of preference; the list's order does not matter. Default: Go's
	// own set, which includes the post-quantum hybrids (chosen when the
	// client offers one, at some CPU per handshake).
	Curves []TLSCurve `toml:"curves"`
	// Certs are the [[frontend.NAME.tls.cert]] entries. The first is the
	// default; the others are chosen by SNI from the names in each
	// certificate. Of several for the same name, a client that supports an
	// ECDSA or Ed25519 one gets it, others the first they support.
	Certs []Certificate `toml:"cert"`
}

// Certificate is one [[frontend.NAME.tls.cert]] entry. Both files are read
// and parsed by Validate (crypto/tls.LoadX509KeyPair).
type Certificate struct {
	// Cert is the path of a PEM certificate chain, leaf first. Required.
	Cert string `toml:"cert"`
	// Key is the path of the PEM private key. Required.
	Key string `toml:"key"`
}

// LMTP is a [frontend.NAME.lmtp] table.
type LMTP struct {
	// MaxRecipients caps RCPTs per transaction; more get 452 4.5.3
	// (RFC 5321 section 4.5.3.1.8). Default 1000; range 1..100000.
	MaxRecipients int `toml:"max_recipients"`
	// MaxMessageSize caps a message; larger ones get 552 5.3.4.
	// Default 50MiB; range 1KiB..2GiB.
	MaxMessageSize Size `toml:"max_message_size"`
	// SpoolMemory is the largest body kept in memory; larger bodies are
	// spooled to a temporary file. Default 1MiB; range 0..MaxMessageSize.
	SpoolMemory Size `toml:"spool_memory"`
	// SpoolDir holds the temporary files. Default (resolved at load)
	// os.TempDir(). Must be an existing directory.
	SpoolDir string `toml:"spool_dir"`
	// SpoolBudget bounds the bytes all of the frontend's messages hold at
	// once while they are delivered, in memory and on disk (the spool files
	// are unlinked, so du does not see them); a message that would pass it
	// gets 452 4.3.1 and the MTA retries. Default 1GiB; range
	// max_message_size..1TiB.
	SpoolBudget Size `toml:"spool_budget"`
	// ServerDown is what a recipient whose server is unusable gets.
	// Default "tempfail".
	ServerDown ServerDown `toml:"server_down"`
	// BareLF is what happens to a bare LF or CR in a DATA body.
	// Default "normalize".
	BareLF BareLF `toml:"bare_lf"`
	// MaxServerConns caps the pooled LMTP connections per server.
	// Default 16; range 1..1000.
	MaxServerConns int `toml:"max_server_conns"`
}

// Backend is one [backend.NAME] table: a group of servers and how users are
// spread over them.
type Backend struct {
	// Name is the table's NAME, filled in by Parse.
	Name string `toml:"-"`
	// Balance is the server selection algorithm. Default "user".
	Balance Balance `toml:"balance"`
	// DirectorUsernameHash is Dovecot's director_username_hash: the name
	// whose MD5 places a user on the ring of balance "director" (%u the
	// login name as given, %n its part before '@', %d after it, with the
	// modifiers L U T R). Default "%Lu", Dovecot's; only with balance
	// "director".
	DirectorUsernameHash string `toml:"director_username_hash"`
	// UserExpire is how long a sticky user assignment is kept after the
	// user's last session ends. Default 15m; range 0..168h.
	UserExpire Duration `toml:"user_expire"`
	// DefaultDomain is appended as "@domain" to user names without a domain
	// before hashing, so "alice" and "alice@example.com" are one user.
	// Default empty: names are used as given.
	DefaultDomain string `toml:"default_domain"`
	// RecipientDelimiter is Dovecot's recipient_delimiter: each of its
	// characters starts the detail of a local part ("alice+lists"), which
	// is removed before routing an LMTP recipient, so that plus-addressed
	// mail lands on the user's own server. Set it to the same value as
	// Dovecot. Default "+"; "" disables it.
	RecipientDelimiter string `toml:"recipient_delimiter"`
	// StripLoginDetail removes the recipient_delimiter detail from IMAP,
	// POP3 and submission login names too (for sites whose passdb accepts
	// "alice+x" as alice). Default false: login names are routed as given.
	StripLoginDetail bool `toml:"strip_login_detail"`
	// MasterUserSeparator is Dovecot's auth_master_user_separator: a login
	// "alice*admin" is a master user logging in as alice, and is routed as
	// alice. Default "" (no separator); SASL PLAIN's authorization identity
	// is used whatever this says.
	MasterUserSeparator string `toml:"master_user_separator"`
	// LoginServerDown is what an IMAP, POP3 or submission login gets when
	// the user's own server is unusable: "next" sends it to the next server
	// (shared storage: every server sees every mailbox, as behind a Dovecot
	// director), "tempfail" refuses it for now (IMAP NO [UNAVAILABLE], POP3
	// -ERR [SYS/TEMP], SMTP 454 4.7.0), so a user whose mail lives on one
	// server never sees an empty mailbox elsewhere. Default "next".
	LoginServerDown ServerDown `toml:"login_server_down"`
	// AllBackups uses all backup servers at once (else the first usable
	// one) when no active server is usable. Default false.
	AllBackups bool `toml:"allbackups"`
	// Retries is how many other servers are tried after a dial or greeting
	// failure before the client hears the service is unavailable.
	// Default 2; range 0..10.
	Retries int `toml:"retries"`
	// ErrorLimit is how many consecutive dial/login failures mark a server
	// down until its checks pass again (passive health). Default 3; 0
	// disables; range 0..1000.
	ErrorLimit int `toml:"error_limit"`
	// OnMarkedDown says what happens to the live sessions of a server
	// marked down. Default "none".
	OnMarkedDown OnMarkedDown `toml:"on_marked_down"`
	// Check is the health check of every server of the backend.
	Check Check `toml:"check"`
	// Servers are the [[backend.NAME.server]] entries, in file order.
	// At least one is required.
	Servers []*Server `toml:"server"`
	// Protocols lists the protocols of the frontends using this backend, in
	// frontend name order, without repeats. Filled in by Parse; empty for
	// an unused backend.
	Protocols []Protocol `toml:"-"`
	// forwardID names a frontend with forward = "id" using this backend
	// ("" when none does). Filled in by Parse.
	forwardID string
}

// Check is a [backend.NAME.check] table.
type Check struct {
	// Type is the probe. Default (resolved at load) the protocol of the
	// frontends using the backend: imap, else pop3, else lmtp, else smtp
	// (for submission), else managesieve, else tcp. A protocol check
	// notices a Dovecot that accepts connections but no longer answers; a
	// tcp check does not. The imap, pop3 and managesieve checks also learn
	// what the servers announce before login, which the frontends of that
	// protocol advertise. "none" means no checks: servers are always up.
	Type CheckType `toml:"type"`
	// Inter is the interval between checks while a server is steadily up.
	// Default 2s; range 100ms..1h.
	Inter Duration `toml:"inter"`
	// FastInter is the interval while a server changes state (between the
	// first failure and Fall, between the first success and Rise).
	// Default (resolved at load) Inter; range 100ms..1h.
	FastInter Duration `toml:"fastinter"`
	// DownInter is the interval while a server is down. Default (resolved
	// at load) Inter; range 100ms..1h.
	DownInter Duration `toml:"downinter"`
	// Rise is the number of consecutive successes that mark a server up.
	// Default 2; range 1..100.
	Rise int `toml:"rise"`
	// Fall is the number of consecutive failures that mark a server down.
	// Default 3; range 1..100.
	Fall int `toml:"fall"`
	// Timeout bounds one check. Default 2s; range 100ms..1m.
	Timeout Duration `toml:"timeout"`
	// Port is the port checked. Default 0: see [Backend.CheckAddress].
	// Range 0..65535.
	Port int `toml:"port"`
	// Address is the host checked (no port; use Port). Default empty: the
	// server's host.
	Address string `toml:"address"`
	// TLS runs the check over implicit TLS. Default (absent): the same as
	// each server's tls.enabled, so a check probes exactly what sessions
	// use; see [Backend.CheckTLS].
	TLS *bool `toml:"tls"`
	// SendProxy is the PROXY header a check sends. Default "auto"; see
	// [Backend.CheckSendProxy].
	SendProxy CheckProxy `toml:"send_proxy"`
	// User is an optional IMAP probe login (type imap). Default empty: the
	// check ends after the greeting and CAPABILITY.
	User string `toml:"user"`
	// Password is the probe login's password. Resolved at load: after
	// Parse it holds the content of PasswordFile when that is set.
	Password string `toml:"password"`
	// PasswordFile is read at load time instead of Password (trailing
	// newline removed); an unreadable file is an error. Set one of
	// Password and PasswordFile, not both.
	PasswordFile string `toml:"password_file"`
	// SelectInbox sends SELECT INBOX after the probe login (type imap).
	// Default false.
	SelectInbox bool `toml:"select_inbox"`
	// HTTPMethod is the request method of an http check. Default "GET".
	HTTPMethod string `toml:"http_method"`
	// HTTPPath is the request path of an http check. Default "/".
	HTTPPath string `toml:"http_path"`
	// HTTPHost is the Host header of an http check. Default empty: the
	// check address.
	HTTPHost string `toml:"http_host"`
	// ExpectStatus is the HTTP status a passing http check returns: one
	// status (200) or a range ("200-399", HAProxy's http-check expect
	// status). Default 200; range 100..599.
	ExpectStatus StatusRange `toml:"expect_status"`
}

// Server is one [[backend.NAME.server]] entry.
type Server struct {
	// Name identifies the server in logs, stats and the control socket.
	// Required; unique within the backend; [A-Za-z0-9._-]+.
	Name string `toml:"name"`
	// Address is "host" or "host:port" (IPv6 in brackets). Required. See
	// [Server.Port] for how the port is chosen.
	Address string `toml:"address"`
	// Ports maps a protocol (imap pop3 lmtp submission http managesieve
	// tcp) to the server's port for it. Default empty.
	Ports map[Protocol]int `toml:"ports"`
	// Weight is the server's share of users: weight / sum of weights.
	// Default 100; range 0..1000; 0 gets no new users.
	Weight int `toml:"weight"`
	// VhostCount is the server's number of points on the ring of balance
	// "director", Dovecot's vhost_count: its share of new users is
	// vhost_count / sum of vhost_counts. Default 100; range 0..10000; 0
	// gets no new users. Only with balance "director" (weight is then
	// only "0 = no new users").
	VhostCount int `toml:"vhost_count"`
	// Backup marks a server used only when no active server is usable.
	// Default false.
	Backup bool `toml:"backup"`
	// State is the administrative state at start. Default "ready".
	State ServerState `toml:"state"`
	// SendProxy is the PROXY header sent to the server. Default "v2-ssl"
	// (what Dovecot's haproxy = yes listeners expect, see the README), or
	// "none" when only tcp frontends use the backend or XClient is set.
	SendProxy SendProxy `toml:"send_proxy"`
	// XClient sends Postfix XCLIENT instead of a PROXY header; used only by
	// submission frontends, ignored otherwise. It is one way to tell the
	// server who the client is, so it cannot be combined with send_proxy.
	// Default false.
	XClient bool `toml:"xclient"`
	// MaxConn caps sessions on this server. Default 0: unlimited.
	MaxConn int `toml:"maxconn"`
	// Check enables health checks for this server; false means it is always
	// considered up. Default true.
	Check bool `toml:"check"`
	// TLS is the TLS setup toward the server.
	TLS ServerTLS `toml:"tls"`
}

// ServerTLS is a [backend.NAME.server.tls] table.
type ServerTLS struct {
	// Enabled turns on TLS to the server. Default false.
	Enabled bool `toml:"enabled"`
	// Verify checks the server certificate. Default true.
	Verify bool `toml:"verify"`
	// CA is a PEM CA bundle. Default empty: the system roots.
	CA string `toml:"ca"`
	// ServerName is the SNI and verification name, for sessions and TLS
	// checks. Default (resolved at load) the server's host.
	ServerName string `toml:"server_name"`
}

// FrontendNames returns the frontend names, sorted.
func (c *Config) FrontendNames() []string { return sortedKeys(c.Frontends) }

// BackendNames returns the backend names, sorted.
func (c *Config) BackendNames() []string { return sortedKeys(c.Backends) }

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// EffectiveTimeouts returns g.Timeouts with every non-zero key of
// f.Timeouts laid over it. Parse already stores this result in f.Timeouts;
// the method serves code that builds a Config by hand.
func (f *Frontend) EffectiveTimeouts(g Global) Timeouts {
	t := g.Timeouts
	over := func(dst *Duration, v Duration) {
		if v != 0 {
			*dst = v
		}
	}
	over(&t.Handshake, f.Timeouts.Handshake)
	over(&t.Preauth, f.Timeouts.Preauth)
	over(&t.Connect, f.Timeouts.Connect)
	over(&t.ServerLogin, f.Timeouts.ServerLogin)
	over(&t.Idle, f.Timeouts.Idle)
	over(&t.Data, f.Timeouts.Data)
	over(&t.Login, f.Timeouts.Login)
	over(&t.Request, f.Timeouts.Request)
	over(&t.Queue, f.Timeouts.Queue)
	over(&t.Client, f.Timeouts.Client)
	over(&t.Server, f.Timeouts.Server)
	over(&t.KeepAlive, f.Timeouts.KeepAlive)
	return t
}

// PlaintextAllowed reports whether a client may log in with a plaintext
// mechanism on a connection that has no TLS. "auto" allows it unless the
// TLS mode is starttls (the client must STARTTLS first); with implicit TLS
// every connection has TLS, so the answer does not matter there.
func (f *Frontend) PlaintextAllowed() bool {
	switch f.PlaintextLogin {
	case PlaintextLoginAllow:
		return true
	case PlaintextLoginDeny:
		return false
	default:
		return f.TLS.Mode != TLSModeStartTLS
	}
}

// ForwardForExceptPrefixes returns h.ForwardForExcept parsed; bare
// addresses become single-address prefixes. Entries that do not parse are
// skipped (Validate reports them).
func (h *HTTP) ForwardForExceptPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(h.ForwardForExcept))
	for _, s := range h.ForwardForExcept {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// TrustedPrefixes returns f.TrustedProxies parsed; bare addresses become
// single-address prefixes. Entries that do not parse are skipped (Validate
// reports them).
func (f *Frontend) TrustedPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(f.TrustedProxies))
	for _, s := range f.TrustedProxies {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// BindAddrs returns f.Bind parsed. Entries that do not parse are skipped
// (Validate reports them). Open an IPv6 address with network "tcp6" and an
// IPv4 one with "tcp4": Go opens "[::]" dual-stack under "tcp", which
// would collide with a "0.0.0.0" listener on the same port.
func (f *Frontend) BindAddrs() []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(f.Bind))
	for _, s := range f.Bind {
		if ap, err := parseBind(s); err == nil {
			out = append(out, ap)
		}
	}
	return out
}

// Summary returns one line describing the configuration, e.g.
// "3 frontends (imap, lmtp, pop3), 1 backend (dovecot: 3 servers), 6 listeners".
func (c *Config) Summary() string {
	var b strings.Builder
	fnames := c.FrontendNames()
	listeners := 0
	for _, n := range fnames {
		listeners += len(c.Frontends[n].Bind)
	}
	b.WriteString(count(len(fnames), "frontend"))
	if len(fnames) > 0 {
		b.WriteString(" (" + strings.Join(fnames, ", ") + ")")
	}
	bnames := c.BackendNames()
	b.WriteString(", " + count(len(bnames), "backend"))
	if len(bnames) > 0 {
		parts := make([]string, len(bnames))
		for i, n := range bnames {
			parts[i] = n + ": " + count(len(c.Backends[n].Servers), "server")
		}
		b.WriteString(" (" + strings.Join(parts, ", ") + ")")
	}
	b.WriteString(", " + count(listeners, "listener"))
	return b.String()
}

func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return itoa(n) + " " + noun + "s"
}

// SlogLevel returns the slog level for l; unknown values give Info.
func (l LogLevel) SlogLevel() slog.Level {
	switch l {
	case LogLevelDebug:
		return slog.LevelDebug
	case LogLevelWarn:
		return slog.LevelWarn
	case LogLevelError:
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// Stats is the [stats] table: one HTTP listener serving the dashboard
// ("/"), HAProxy-style CSV ("/stats;csv", "/stats.csv"), JSON
// ("/stats.json") and Prometheus metrics ("/metrics").
type Stats struct {
	// Bind is the listen address, "IP:port". Default empty: no listener.
	// Keep it on loopback or a management network, or set Auth.
	Bind string `toml:"bind"`
	// Refresh is how often the dashboard asks for new figures. Default
	// 2s; range 500ms..1m.
	Refresh Duration `toml:"refresh"`
	// Auth lists "user:password" pairs for HTTP basic authentication of
	// every page. Default empty: no authentication.
	Auth []string `toml:"auth"`
	// TLS, when both files are set, serves HTTPS instead of HTTP.
	TLS StatsTLS `toml:"tls"`
	// Pprof serves Go's profiles at /debug/pprof/ (CPU, heap, goroutines)
	// behind Auth, for finding where time goes. Default false.
	Pprof bool `toml:"pprof"`
	// Admin also accepts the control socket's commands over this listener
	// (POST /ctl, one command in the body), behind Auth. Default false;
	// it needs Auth.
	Admin bool `toml:"admin"`
}

// StatsTLS is the [stats.tls] table.
type StatsTLS struct {
	// Cert is the path of a PEM certificate chain, leaf first. Default
	// empty: plain HTTP.
	Cert string `toml:"cert"`
	// Key is the path of the PEM private key; required with Cert.
	Key string `toml:"key"`
}

// Users returns Auth as user → password.
func (s *Stats) Users() map[string]string {
	if len(s.Auth) == 0 {
		return nil
	}
	m := make(map[string]string, len(s.Auth))
	for _, a := range s.Auth {
		u, p, _ := strings.Cut(a, ":")
		m[u] = p
	}
	return m
}

// Control is the [control] table.
type Control struct {
	// Socket is the path of the control socket (`maildirector ctl`,
	// `socat stdio unix:PATH`). Default empty: no socket. Its permissions
	// are the access control: anyone who can connect can steer the fleet.
	Socket string `toml:"socket"`
	// Mode is the socket's permission bits, octal. Default "0660".
	Mode string `toml:"mode"`
	// User and Group own the socket (names or numeric ids). Default empty:
	// the process's.
	User  string `toml:"user"`
	Group string `toml:"group"`
	// FreezeWait is how long a login of a frozen user waits for its
	// release before it gets a temporary failure (IMAP NO [UNAVAILABLE],
	// POP3 -ERR [SYS/TEMP], submission 454). Default 30s; range 0..5m.
	FreezeWait Duration `toml:"freeze_wait"`
	// StateFile keeps the runtime changes (admin states, weights, moves,
	// freezes) across restarts, as HAProxy's server-state-file: written on
	// every change, read at start. Default empty: they last until the
	// process ends (a reload keeps them either way).
	StateFile string `toml:"state_file"`
}

// Cluster is the [cluster] table: sticky assignments, operator moves,
// freezes, admin states and weights shared by several maildirector nodes
// through etcd (docs/cluster.md). Without Endpoints the node works alone,
// as it always did.
type Cluster struct {
	// Endpoints are the etcd members' client addresses ("host:port", or
	// "https://host:port" with TLS). Default empty: no cluster.
	Endpoints []string `toml:"endpoints"`
	// Prefix is the etcd key prefix every node of one fleet shares.
	// Default "/maildirector".
	Prefix string `toml:"prefix"`
	// Node is this node's name, unique in the fleet. Default the host
	// name.
	Node string `toml:"node"`
	// TLS is the client side of TLS toward etcd: a client certificate
	// and the CA that signed the members' certificates.
	TLS ClusterTLS `toml:"tls"`
	// DialTimeout bounds connecting to etcd at start. Default 2s.
	DialTimeout Duration `toml:"dial_timeout"`
	// RequestTimeout bounds one etcd request on the login path (the
	// compare-and-swap of a new assignment); past it the login goes on
	// with the local answer and the node is degraded. Default 1s.
	RequestTimeout Duration `toml:"request_timeout"`
	// Heartbeat is how often the node writes its heartbeat key. Default
	// 2s.
	Heartbeat Duration `toml:"heartbeat"`
	// NodeTTL is how long the node's heartbeat key outlives its last
	// heartbeat (an etcd lease). Default 10s; at least twice heartbeat.
	NodeTTL Duration `toml:"node_ttl"`
	// Refresh is how often assignments in use are written with a later
	// expiry, in one batch: the granularity of their expiry in etcd.
	// Default 1m.
	Refresh Duration `toml:"refresh"`
}

// Enabled reports whether the node is part of a cluster.
func (c *Cluster) Enabled() bool { return len(c.Endpoints) > 0 }

// ClusterTLS is the [cluster.tls] table.
type ClusterTLS struct {
	// Cert and Key are this node's client certificate chain and key
	// (PEM). Default empty: no client certificate.
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	// CA is the PEM bundle that verifies the etcd members. Default
	// empty: the system roots (when an endpoint is https://).
	CA string `toml:"ca"`
}

// SocketMode returns Mode as permission bits; Validate has checked it.
func (c *Control) SocketMode() uint32 {
	m, _ := strconv.ParseUint(c.Mode, 8, 32)
	return uint32(m)
}

// Limits are the [global.limits] and [frontend.NAME.limits] tables: what
// one client address may do, and the penalty for failed logins (as
// Dovecot's auth_penalty). A count or a duration of 0 turns its limit off.
type Limits struct {
	// MaxPerClient caps one client's live connections. Default 500 (a
	// company behind one NAT address is one client); 0: none.
	MaxPerClient int `toml:"max_per_client"`
	// MaxRate caps one client's new connections per RateWindow. Default
	// 200 per 10s; 0: none.
	MaxRate    int      `toml:"max_rate"`
	RateWindow Duration `toml:"rate_window"`
	// IPv6Prefix (client_prefix) is the prefix length of an IPv6 address
	// that is one client: a host usually gets a /64. Default 64; IPv4
	// clients count per address.
	IPv6Prefix int `toml:"client_prefix"`
	// Exempt lists networks (monitoring, webmail servers) without
	// per-client limits or penalty. Default empty.
	Exempt []string `toml:"exempt"`
	// PenaltyInit delays the answer to a failed login; it doubles with
	// each further failure of the client or of the user name, up to
	// PenaltyMax. Defaults 2s and 15s; penalty_init 0: no penalty.
	PenaltyInit Duration `toml:"penalty_init"`
	PenaltyMax  Duration `toml:"penalty_max"`
	// BlockAfter failed logins from one client (forgotten BlockFor after
	// its last failure; a success of a user clears that user's count), its
	// logins get a temporary failure for BlockFor. Defaults 20 and 5m;
	// block_after 0: never.
	BlockAfter int      `toml:"block_after"`
	BlockFor   Duration `toml:"block_for"`
	// TableSize bounds the clients and the user names tracked (each).
	// Default 65536.
	TableSize int `toml:"table_size"`
}

// ExemptPrefixes returns Exempt parsed; entries that do not parse are
// skipped (Validate reports them).
func (l *Limits) ExemptPrefixes() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(l.Exempt))
	for _, s := range l.Exempt {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}
