package config

import (
	"crypto/tls"
	"strconv"
	"strings"
)

// Protocol is a frontend protocol, also used as a key of Server.Ports.
type Protocol string

// Protocols. Each is a frontend protocol and a Server.Ports key.
const (
	ProtocolIMAP       Protocol = "imap"
	ProtocolPOP3       Protocol = "pop3"
	ProtocolSubmission Protocol = "submission"
	ProtocolLMTP       Protocol = "lmtp"
	ProtocolTCP        Protocol = "tcp"
	ProtocolHTTP       Protocol = "http" // HTTP/1.1 to object storage (Scality sproxyd, S3-like)
	// ProtocolManageSieve is ManageSieve (RFC 5804): Sieve scripts.
	ProtocolManageSieve Protocol = "managesieve"
)

// StandardPort returns the IANA port of p: imap 143, pop3 110, lmtp 24,
// submission 587 (RFC 6409), http 80, managesieve 4190 (RFC 5804 section
// 1.8); tcp and unknown protocols give 0.
func StandardPort(p Protocol) int {
	switch p {
	case ProtocolIMAP:
		return 143
	case ProtocolPOP3:
		return 110
	case ProtocolLMTP:
		return 24
	case ProtocolSubmission:
		return 587
	case ProtocolHTTP:
		return 80
	case ProtocolManageSieve:
		return 4190
	default:
		return 0
	}
}

// hasLogin reports whether sessions of p carry a user name before a server
// is picked (LMTP: the recipient).
func (p Protocol) hasLogin() bool {
	return p == ProtocolIMAP || p == ProtocolPOP3 || p == ProtocolSubmission || p == ProtocolLMTP
}

// LogLevel is global.log_level.
type LogLevel string

// Log levels.
const (
	LogLevelDebug LogLevel = "debug"
	LogLevelInfo  LogLevel = "info"
	LogLevelWarn  LogLevel = "warn"
	LogLevelError LogLevel = "error"
)

// LogFormat is global.log_format.
type LogFormat string

// Log formats.
const (
	LogFormatText LogFormat = "text"
	LogFormatJSON LogFormat = "json"
)

// SyslogFacility is global.syslog_facility: a facility name of RFC 5424
// section 6.2.1, table 1.
type SyslogFacility string

// syslogFacilities are the facility names accepted, with their codes
// (RFC 5424 section 6.2.1, table 1; codes 12 to 15 have no common name).
var syslogFacilities = []struct {
	name SyslogFacility
	code int
}{
	{"kern", 0}, {"user", 1}, {"mail", 2}, {"daemon", 3}, {"auth", 4}, {"syslog", 5}, {"lpr", 6}, {"news", 7},
	{"uucp", 8}, {"cron", 9}, {"authpriv", 10}, {"ftp", 11},
	{"local0", 16}, {"local1", 17}, {"local2", 18}, {"local3", 19}, {"local4", 20}, {"local5", 21}, {"local6", 22}, {"local7", 23},
}

// SyslogFacilityLocal0 is the default facility.
const SyslogFacilityLocal0 SyslogFacility = "local0"

// Code returns the facility's numeric code (0..23), or -1 for an unknown
// name.
func (f SyslogFacility) Code() int {
	for _, sf := range syslogFacilities {
		if f == sf.name {
			return sf.code
		}
	}
	return -1
}

// TLSMode is frontend.NAME.tls.mode.
type TLSMode string

// TLS modes.
const (
	TLSModeNone     TLSMode = "none"     // plain TCP only
	TLSModeStartTLS TLSMode = "starttls" // plain TCP, upgraded by STARTTLS / STLS (RFC 3501 6.2.1, RFC 2595 4, RFC 3207)
	TLSModeImplicit TLSMode = "implicit" // TLS from the first byte (RFC 8314)
)

// TLSVersion is frontend.NAME.tls.min_version: "1.0", "1.1", "1.2" or "1.3".
type TLSVersion string

// Uint16 returns the crypto/tls constant for v, or 0 if v is not a known
// version.
func (v TLSVersion) Uint16() uint16 {
	switch v {
	case "1.0":
		return tls.VersionTLS10
	case "1.1":
		return tls.VersionTLS11
	case "1.2":
		return tls.VersionTLS12
	case "1.3":
		return tls.VersionTLS13
	default:
		return 0
	}
}

// PlaintextLogin is frontend.NAME.plaintext_login.
type PlaintextLogin string

// Plaintext login policies; see [Frontend.PlaintextAllowed].
const (
	PlaintextLoginAuto  PlaintextLogin = "auto"
	PlaintextLoginAllow PlaintextLogin = "allow"
	PlaintextLoginDeny  PlaintextLogin = "deny"
)

// Forward is frontend.NAME.forward: how the servers learn who the client
// is.
type Forward string

// Forwarding methods.
const (
	// ForwardProxy: the PROXY header each server's send_proxy names.
	ForwardProxy Forward = "proxy"
	// ForwardID: no PROXY header; the client's address and port and
	// maildirector's session id in-band before the login (IMAP ID
	// x-originating-ip, x-session-ext-id...; POP3 XCLIENT ADDR PORT
	// SESSION), as Dovecot's own proxy forwards a client. Dovecot honours
	// them from login_trusted_networks only.
	ForwardID Forward = "id"
)

// ServerDown is frontend.NAME.lmtp.server_down and
// backend.NAME.login_server_down.
type ServerDown string

// LMTP policies for a recipient whose server is unusable.
const (
	// ServerDownTempfail answers 451 4.4.1: the MTA retries later, and two
	// servers never write one mailbox.
	ServerDownTempfail ServerDown = "tempfail"
	// ServerDownNext delivers to the next server in the user's hash order;
	// only safe with shared storage.
	ServerDownNext ServerDown = "next"
)

// BareLF is frontend.NAME.lmtp.bare_lf.
type BareLF string

// Bare LF policies (SMTP smuggling defence; RFC 5321 section 2.3.8 allows
// CR and LF only as CRLF).
const (
	BareLFNormalize BareLF = "normalize" // turn a bare LF or CR into CRLF
	BareLFReject    BareLF = "reject"    // refuse the message with 5xx
)

// Balance is backend.NAME.balance.
type Balance string

// Balance algorithms.
const (
	BalanceUser       Balance = "user"       // weighted consistent hash of the login name, sticky
	BalanceLeastConn  Balance = "leastconn"  // fewest live sessions
	BalanceRoundRobin Balance = "roundrobin" // weighted round robin
	BalanceSource     Balance = "source"     // hash of the client IP
	BalanceDirector   Balance = "director"   // Dovecot 2.3 director's ring (vhost_count, director_username_hash), sticky
)

// OnMarkedDown is backend.NAME.on_marked_down.
type OnMarkedDown string

// Actions when a server is marked down.
const (
	OnMarkedDownNone             OnMarkedDown = "none"
	OnMarkedDownShutdownSessions OnMarkedDown = "shutdown-sessions"
)

// CheckType is backend.NAME.check.type.
type CheckType string

// Check types.
const (
	CheckTypeNone CheckType = "none"
	CheckTypeTCP  CheckType = "tcp"
	CheckTypeIMAP CheckType = "imap"
	CheckTypePOP3 CheckType = "pop3"
	CheckTypeLMTP CheckType = "lmtp"
	CheckTypeSMTP CheckType = "smtp"
	CheckTypeHTTP CheckType = "http"
	// CheckTypeManageSieve reads the ManageSieve greeting (its capabilities,
	// which the managesieve frontends advertise) and logs out.
	CheckTypeManageSieve CheckType = "managesieve"
)

// CheckProxy is backend.NAME.check.send_proxy.
type CheckProxy string

// PROXY headers sent by checks.
const (
	CheckProxyAuto  CheckProxy = "auto"  // LOCAL when the server's send_proxy is not none, else none
	CheckProxyLocal CheckProxy = "local" // PROXY v2 LOCAL command
	CheckProxyV2    CheckProxy = "v2"    // PROXY v2 PROXY command with the checker's addresses
	CheckProxyNone  CheckProxy = "none"
)

// SendProxy is backend.NAME.server.send_proxy.
type SendProxy string

// PROXY headers sent to servers.
const (
	SendProxyV2SSL SendProxy = "v2-ssl" // v2 with the PP2 SSL TLV (HAProxy send-proxy-v2-ssl)
	SendProxyV2    SendProxy = "v2"
	SendProxyV1    SendProxy = "v1"
	SendProxyNone  SendProxy = "none"
)

// ServerState is backend.NAME.server.state.
type ServerState string

// Administrative server states.
const (
	ServerStateReady ServerState = "ready" // takes traffic
	ServerStateDrain ServerState = "drain" // no new users; existing users and sessions stay
	ServerStateMaint ServerState = "maint" // no traffic; checks go on
)

// oneOf returns nil if v is one of allowed, else an error listing them.
func oneOf[T ~string](v T, allowed ...T) error {
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	names := make([]string, len(allowed))
	for i, a := range allowed {
		names[i] = strconv.Quote(string(a))
	}
	return errorf("unknown value %q; use one of %s", string(v), strings.Join(names, ", "))
}

func itoa(n int) string { return strconv.Itoa(n) }
