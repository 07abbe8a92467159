package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// baseConfig is a small valid configuration; the invalid cases edit it.
const baseConfig = `
[global]
log_level = "info"
trusted_proxies = ["192.0.2.0/24"]

[global.timeouts]
idle = "1h"

[frontend.imap]
protocol = "imap"
bind = ["127.0.0.1:1143", "[::1]:1143"]
backend = "dovecot"
max_login_attempts = 3

[frontend.imap.tls]
mode = "starttls"

[[frontend.imap.tls.cert]]
cert = "CERT"
key = "KEY"

[backend.dovecot]
balance = "user"
retries = 2

[backend.dovecot.check]
type = "imap"

[[backend.dovecot.server]]
name = "mail1"
address = "10.0.0.11"
weight = 100

[[backend.dovecot.server]]
name = "mail2"
address = "10.0.0.12:10143"
state = "ready"
send_proxy = "v2-ssl"
`

// fullConfig sets every key of the schema.
const fullConfig = `
[global]
log_level = "debug"
log_format = "json"
maxconn = 20000
trusted_proxies = ["10.0.0.0/8", "2001:db8::1"]
shutdown_grace = "1m"
log_file = "LOGFILE"
syslog = "udp:127.0.0.1:514"
syslog_facility = "mail"
syslog_tag = "md-eu1"

[global.timeouts]
handshake = "15s"
preauth = "2m"
connect = "3s"
server_login = "20s"
idle = "2h"
data = "20m"

[frontend.imap]
protocol = "imap"
bind = ["0.0.0.0:143", "[::]:143"]
backend = "dovecot"
maxconn = 5000
trusted_proxies = []
plaintext_login = "auto"
max_login_attempts = 5
greeting = "example.com IMAP ready"

[frontend.imap.timeouts]
handshake = "5s"
preauth = "30s"
connect = "2s"
server_login = "10s"
idle = "45m"

[frontend.imap.tls]
mode = "starttls"
min_version = "1.3"

[[frontend.imap.tls.cert]]
cert = "CERT"
key = "KEY"

[[frontend.imap.tls.cert]]
cert = "CERT"
key = "KEY"

[frontend.submission]
protocol = "submission"
bind = ["0.0.0.0:587"]
backend = "dovecot"
plaintext_login = "deny"
[frontend.submission.tls]
mode = "starttls"
[[frontend.submission.tls.cert]]
cert = "CERT"
key = "KEY"

[frontend.lmtp]
protocol = "lmtp"
bind = ["10.0.0.5:24"]
backend = "dovecot"
hostname = "lmtp.example.com"

[frontend.lmtp.timeouts]
data = "5m"

[frontend.lmtp.lmtp]
max_recipients = 500
max_message_size = "100MiB"
spool_memory = "2MiB"
spool_dir = "SPOOL"
spool_budget = "2GiB"
server_down = "next"
bare_lf = "reject"
max_server_conns = 32

[frontend.sproxyd]
protocol = "tcp"
bind = ["0.0.0.0:81"]
backend = "objects"
[frontend.sproxyd.tls]
mode = "implicit"
[[frontend.sproxyd.tls.cert]]
cert = "CERT"
key = "KEY"

[backend.dovecot]
balance = "user"
user_expire = "30m"
default_domain = "example.com"
allbackups = true
retries = 3
error_limit = 0
on_marked_down = "shutdown-sessions"
recipient_delimiter = "+-"
strip_login_detail = true
master_user_separator = "*"
login_server_down = "tempfail"

[backend.dovecot.check]
type = "imap"
inter = "3s"
fastinter = "1s"
downinter = "10s"
rise = 3
fall = 4
timeout = "1s"
port = 0
address = ""
tls = false
send_proxy = "auto"
user = "probe@example.com"
password_file = "PASSWORD"
select_inbox = true
http_method = "GET"
http_path = "/"
http_host = ""
expect_status = 200

[[backend.dovecot.server]]
name = "mail1"
address = "10.0.0.11"
ports = { imap = 10143, pop3 = 10110, lmtp = 10024, submission = 10587 }
weight = 100
backup = false
state = "ready"
send_proxy = "v2-ssl"
xclient = false
maxconn = 0
check = true

[[backend.dovecot.server]]
name = "mail2"
address = "[2001:db8::12]:10143"
weight = 50
state = "drain"
send_proxy = "none"
xclient = true
maxconn = 1000
[backend.dovecot.server.tls]
enabled = true
verify = false
ca = "CA"
server_name = "mail2.example.com"

[[backend.dovecot.server]]
name = "spare"
address = "mail3.example.com"
backup = true
state = "maint"
check = false

[backend.objects]
balance = "leastconn"
[backend.objects.check]
type = "http"
http_method = "HEAD"
http_path = "/.conf"
http_host = "sproxyd"
expect_status = 204
[[backend.objects.server]]
name = "ring1"
address = "10.0.1.1:81"
ports = { http = 81, tcp = 81 }

[backend.ring]
balance = "director"
director_username_hash = "%Ln"
[[backend.ring.server]]
name = "d1"
address = "10.0.2.1"
vhost_count = 250
`

func fullConfigText(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	pass := filepath.Join(dir, "probe.pass")
	writeFile(t, pass, "s3cret\n")
	ca, _ := writeCert(t)
	logFile := filepath.Join(dir, "maildirector.log")
	text := strings.NewReplacer(`"PASSWORD"`, `"`+pass+`"`, `"CA"`, `"`+ca+`"`, `"SPOOL"`, `"`+dir+`"`, `"LOGFILE"`, `"`+logFile+`"`).Replace(fullConfig)
	return withCert(t, text)
}

func TestParseFull(t *testing.T) {
	c := mustParse(t, fullConfigText(t))

	if got, want := c.Summary(), "4 frontends (imap, lmtp, sproxyd, submission), 3 backends (dovecot: 3 servers, objects: 1 server, ring: 1 server), 5 listeners"; got != want {
		t.Errorf("Summary: got %q, want %q", got, want)
	}
	if g := c.Global; !strings.HasSuffix(g.LogFile, "/maildirector.log") || g.Syslog != "udp:127.0.0.1:514" || g.SyslogFacility.Code() != 2 || g.SyslogTag != "md-eu1" {
		t.Errorf("log sinks: got %q %q %q (code %d) %q, want the file, udp, mail (2), md-eu1", g.LogFile, g.Syslog, g.SyslogFacility, g.SyslogFacility.Code(), g.SyslogTag)
	}
	imap := c.Frontends["imap"]
	if imap.Name != "imap" || c.Backends["dovecot"].Name != "dovecot" {
		t.Errorf("names: got %q, %q, want imap, dovecot", imap.Name, c.Backends["dovecot"].Name)
	}
	if got, want := imap.Timeouts.Idle.D(), 45*time.Minute; got != want {
		t.Errorf("imap idle: got %v, want %v", got, want)
	}
	if imap.TrustedProxies == nil || len(imap.TrustedProxies) != 0 {
		t.Errorf("imap trusted_proxies: got %#v, want empty non-nil (explicit [])", imap.TrustedProxies)
	}
	if got := len(c.Frontends["lmtp"].TrustedProxies); got != 2 {
		t.Errorf("lmtp trusted_proxies: got %d entries, want 2 inherited", got)
	}
	if got, want := c.Frontends["lmtp"].TrustedPrefixes()[1].String(), "2001:db8::1/128"; got != want {
		t.Errorf("bare IP prefix: got %s, want %s", got, want)
	}
	if got, want := imap.TLS.MinVersion.Uint16(), uint16(0x0304); got != want {
		t.Errorf("min version: got %#x, want %#x", got, want)
	}
	l := c.Frontends["lmtp"].LMTP
	if l == nil || l.MaxMessageSize != 100*MiB || l.SpoolMemory != 2*MiB || l.ServerDown != ServerDownNext {
		t.Errorf("lmtp: got %+v, want 100MiB, 2MiB, next", l)
	}
	if got, want := c.Frontends["lmtp"].Timeouts.Data.D(), 5*time.Minute; got != want {
		t.Errorf("lmtp data: got %v, want %v", got, want)
	}
	b := c.Backends["dovecot"]
	if b.RecipientDelimiter != "+-" || !b.StripLoginDetail || b.MasterUserSeparator != "*" || b.LoginServerDown != ServerDownTempfail {
		t.Errorf("routing keys: got %q %v %q %q, want \"+-\" true \"*\" tempfail", b.RecipientDelimiter, b.StripLoginDetail, b.MasterUserSeparator, b.LoginServerDown)
	}
	if b.CheckTLS(b.Servers[1]) {
		t.Errorf("check tls = false: server[1] (tls.enabled) got a TLS check")
	}
	if got := b.Check.Password; got != "s3cret" {
		t.Errorf("password from file: got %q, want %q", got, "s3cret")
	}
	if got, want := b.Protocols, []Protocol{ProtocolIMAP, ProtocolLMTP, ProtocolSubmission}; !slices.Equal(got, want) {
		t.Errorf("protocols: got %v, want %v", got, want)
	}
	if got := b.Servers[1]; got.Weight != 50 || got.TLS.Verify || !got.XClient || got.State != ServerStateDrain {
		t.Errorf("server[1]: got %+v", got)
	}
	if got := b.Servers[2]; got.Weight != 100 || got.Check || !got.Backup {
		t.Errorf("server[2]: got weight %d check %v backup %v, want 100 false true", got.Weight, got.Check, got.Backup)
	}
	if got, want := b.CheckAddress(b.Servers[0]), "10.0.0.11:10143"; got != want {
		t.Errorf("check address: got %s, want %s", got, want)
	}
	if got, want := b.CheckSendProxy(b.Servers[0]), CheckProxyLocal; got != want {
		t.Errorf("check send_proxy auto: got %s, want %s", got, want)
	}
	if r := c.Backends["ring"]; r.Balance != BalanceDirector || r.DirectorUsernameHash != "%Ln" || r.Servers[0].VhostCount != 250 {
		t.Errorf("backend ring: got balance %s, director_username_hash %q, vhost_count %d; want director, %%Ln, 250",
			r.Balance, r.DirectorUsernameHash, r.Servers[0].VhostCount)
	}
}

func TestParseInvalid(t *testing.T) {
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	writeFile(t, garbage, "not a certificate\n")

	tests := []struct {
		name     string
		old, new string // edit of baseConfig
		extra    string // appended to baseConfig
		key      string // key path that must be reported
		msg      string // substring of its message
	}{
		{name: "stats bind", extra: "[stats]\nbind = \"localhost:8404\"\n", key: "stats.bind", msg: "want IP:port"},
		{name: "stats refresh", extra: "[stats]\nrefresh = \"10ms\"\n", key: "stats.refresh", msg: "range"},
		{name: "stats auth", extra: "[stats]\nauth = [\"admin\"]\n", key: "stats.auth[0]", msg: "user:password"},
		{name: "stats tls half", extra: "[stats.tls]\ncert = \"/x.pem\"\n", key: "stats.tls", msg: "both cert and key"},
		{name: "stats tls missing file", extra: "[stats.tls]\ncert = \"/nonexistent.pem\"\nkey = \"KEY\"\n", key: "stats.tls.cert", msg: "read certificate chain"},
		{name: "stats unknown key", extra: "[stats]\nbnid = \"127.0.0.1:8404\"\n", key: "stats.bnid", msg: `did you mean "bind"`},
		{name: "stats admin without auth", extra: "[stats]\nbind = \"127.0.0.1:8404\"\nadmin = true\n", key: "stats.admin", msg: "needs stats.auth"},
		{name: "control mode", extra: "[control]\nmode = \"rw\"\n", key: "control.mode", msg: "octal"},
		{name: "vhost_count without balance director", old: `weight = 100`, new: "weight = 100\nvhost_count = 50", key: "backend.dovecot.server[0].vhost_count", msg: `does nothing with balance "user"`},
		{name: "director_username_hash without balance director", old: `retries = 2`, new: "retries = 2\ndirector_username_hash = \"%u\"", key: "backend.dovecot.director_username_hash", msg: "does nothing"},
		{name: "balance director with a host name", old: `balance = "user"`, new: `balance = "director"`, extra: "[[backend.dovecot.server]]\nname = \"mail3\"\naddress = \"mail3.example.org\"\n", key: "backend.dovecot.server[2].address", msg: "needs an IP address"},
		{name: "vhost_count range", old: "balance = \"user\"\nretries = 2", new: "balance = \"director\"\nretries = 2", extra: "[[backend.dovecot.server]]\nname = \"mail3\"\naddress = \"10.0.0.13\"\nvhost_count = 10001\n", key: "backend.dovecot.server[2].vhost_count", msg: "range"},
		{name: "director_username_hash empty", old: "balance = \"user\"\nretries = 2", new: "balance = \"director\"\nretries = 2\ndirector_username_hash = \"\"", key: "backend.dovecot.director_username_hash", msg: "%Lu"},
		{name: "control mode range", extra: "[control]\nmode = \"1777\"\n", key: "control.mode", msg: "octal"},
		{name: "control freeze_wait", extra: "[control]\nfreeze_wait = \"1h\"\n", key: "control.freeze_wait", msg: "range"},
		{name: "control socket", extra: "[control]\nsocket = \"ctl.sock\"\n", key: "control.socket", msg: "want a path"},
		{name: "master separator is a delimiter", old: `retries = 2`, new: "retries = 2\nmaster_user_separator = \"+\"", key: "backend.dovecot.master_user_separator", msg: "also in recipient_delimiter"},
		{name: "unknown key", old: `retries = 2`, new: "retries = 2\nbalanse = \"user\"", key: "backend.dovecot.balanse", msg: `did you mean "balance"`},
		{name: "unknown key in server", old: `weight = 100`, new: "weight = 100\nadress = \"x\"", key: "backend.dovecot.server[0].adress", msg: "unknown key"},
		{name: "unknown key second server", old: `state = "ready"`, new: "state = \"ready\"\nbogus = 1", key: "backend.dovecot.server[1].bogus", msg: "valid keys here"},
		{name: "key case", old: `protocol = "imap"`, new: `Protocol = "imap"`, key: "frontend.imap.Protocol", msg: `case-sensitive`},
		{name: "unknown table", extra: "[frontend.imap.tsl]\nmode = \"starttls\"\n", key: "frontend.imap.tsl", msg: `did you mean "tls"`},
		{name: "unknown top-level", extra: "[listen.imap]\nbind = 1\n", key: "listen", msg: "unknown key"},
		{name: "bind missing port", old: `"127.0.0.1:1143",`, new: `"127.0.0.1",`, key: "frontend.imap.bind[0]", msg: "missing port"},
		{name: "bind port range", old: `"127.0.0.1:1143",`, new: `"127.0.0.1:70000",`, key: "frontend.imap.bind[0]", msg: "out of range 1..65535"},
		{name: "bind port zero", old: `"127.0.0.1:1143",`, new: `"127.0.0.1:0",`, key: "frontend.imap.bind[0]", msg: "out of range 1..65535"},
		{name: "bind no host", old: `"127.0.0.1:1143",`, new: `":1143",`, key: "frontend.imap.bind[0]", msg: `"0.0.0.0:1143"`},
		{name: "bind name", old: `"127.0.0.1:1143",`, new: `"localhost:1143",`, key: "frontend.imap.bind[0]", msg: "IP address"},
		{name: "bind v6 without brackets", old: `"[::1]:1143"`, new: `"::1"`, key: "frontend.imap.bind[1]", msg: "brackets"},
		{name: "bind missing", old: `bind = ["127.0.0.1:1143", "[::1]:1143"]`, new: `bind = []`, key: "frontend.imap.bind", msg: "required"},
		{name: "duplicate bind", extra: "[frontend.imap2]\nprotocol = \"imap\"\nbind = [\"[0:0::1]:1143\"]\nbackend = \"dovecot\"\n", key: "frontend.imap2.bind[0]", msg: "already bound by frontend.imap.bind[1]"},
		{name: "server address port", old: `"10.0.0.12:10143"`, new: `"10.0.0.12:99999"`, key: "backend.dovecot.server[1].address", msg: "out of range"},
		{name: "server address empty port", old: `"10.0.0.12:10143"`, new: `"10.0.0.12:"`, key: "backend.dovecot.server[1].address", msg: "missing port"},
		{name: "server address v6", old: `"10.0.0.12:10143"`, new: `"2001:db8::12"`, key: "backend.dovecot.server[1].address", msg: "brackets"},
		{name: "server address bad host", old: `"10.0.0.12:10143"`, new: `"http://mail2"`, key: "backend.dovecot.server[1].address", msg: "not a number"},
		{name: "server address missing", old: `address = "10.0.0.11"`, new: ``, key: "backend.dovecot.server[0].address", msg: "required"},
		{name: "ports range", old: `weight = 100`, new: "weight = 100\nports = { imap = 0 }", key: "backend.dovecot.server[0].ports.imap", msg: "out of range"},
		{name: "ports protocol", old: `weight = 100`, new: "weight = 100\nports = { imaps = 993 }", key: "backend.dovecot.server[0].ports.imaps", msg: "unknown protocol"},
		{name: "unknown protocol", old: `protocol = "imap"`, new: `protocol = "imap4"`, key: "frontend.imap.protocol", msg: `unknown value "imap4"`},
		{name: "http frontend on a mail backend", extra: httpFrontend("dovecot", ""), key: "backend.dovecot", msg: "give the http frontend a backend of its own"},
		{name: "http table on imap", old: `max_login_attempts = 3`, new: "max_login_attempts = 3\n[frontend.imap.http]\nforwardfor = true\n", key: "frontend.imap.http", msg: `only allowed for protocol "http"`},
		{name: "http timeout on imap", extra: "[frontend.imap.timeouts]\nkeep_alive = \"5m\"\n", key: "frontend.imap.timeouts.keep_alive", msg: "does nothing for protocol imap"},
		{name: "idle on http", extra: httpFrontend("store", "[frontend.web.timeouts]\nidle = \"5m\"\n") + storeBackend(""), key: "frontend.web.timeouts.idle", msg: "does nothing for protocol http"},
		{name: "http splice", extra: httpFrontend("store", "splice = true\n") + storeBackend(""), key: "frontend.web.splice", msg: "does nothing for protocol http"},
		{name: "http greeting", extra: httpFrontend("store", "greeting = \"hi\"\n") + storeBackend(""), key: "frontend.web.greeting", msg: "does nothing for protocol http"},
		{name: "http starttls", extra: httpFrontend("store", "[frontend.web.tls]\nmode = \"starttls\"\n") + storeBackend(""), key: "frontend.web.tls.mode", msg: "http has no STARTTLS"},
		{name: "http capture name", extra: httpFrontend("store", "[frontend.web.http]\ncapture = [{name = \"X Reason\", len = 4}]\n") + storeBackend(""), key: "frontend.web.http.capture[0].name", msg: "not an HTTP header name"},
		{name: "http capture twice", extra: httpFrontend("store", "[frontend.web.http]\ncapture = [{name = \"A\", len = 4}, {name = \"a\", len = 5}]\n") + storeBackend(""), key: "frontend.web.http.capture[1].name", msg: "already captured by capture[0]"},
		{name: "http capture len", extra: httpFrontend("store", "[frontend.web.http]\ncapture = [{name = \"A\", len = 0}]\n") + storeBackend(""), key: "frontend.web.http.capture[0].len", msg: "out of range 1..1024"},
		{name: "http capture unknown key", extra: httpFrontend("store", "[frontend.web.http]\ncapture = [{name = \"A\", len = 4, length = 4}]\n") + storeBackend(""), key: "frontend.web.http.capture[0].length", msg: "unknown key"},
		{name: "http forwardfor_except", extra: httpFrontend("store", "[frontend.web.http]\nforwardfor = true\nforwardfor_except = [\"127.0.0.0/33\"]\n") + storeBackend(""), key: "frontend.web.http.forwardfor_except[0]", msg: ""},
		{name: "http except without forwardfor", extra: httpFrontend("store", "[frontend.web.http]\nforwardfor_except = [\"127.0.0.0/8\"]\n") + storeBackend(""), key: "frontend.web.http.forwardfor_except", msg: "does nothing without forwardfor"},
		{name: "http max_reasons", extra: httpFrontend("store", "[frontend.web.http]\nmax_reasons = 0\n") + storeBackend(""), key: "frontend.web.http.max_reasons", msg: "out of range 1..1000"},
		{name: "http replay_buffer", extra: httpFrontend("store", "[frontend.web.http]\nreplay_buffer = \"1GiB\"\n") + storeBackend(""), key: "frontend.web.http.replay_buffer", msg: "out of range 0..64MiB"},
		{name: "http reason_header", extra: httpFrontend("store", "[frontend.web.http]\nreason_header = \"X Reason\"\n") + storeBackend(""), key: "frontend.web.http.reason_header", msg: "not an HTTP header name"},
		{name: "http request timeout", extra: httpFrontend("store", "[frontend.web.timeouts]\nrequest = \"1h\"\n") + storeBackend(""), key: "frontend.web.timeouts.request", msg: "out of range 1s..10m"},
		{name: "http balance user", extra: httpFrontend("store", "") + storeBackend("balance = \"user\"\n"), key: "backend.store.balance", msg: "protocol http"},
		{name: "http send_proxy", extra: httpFrontend("store", "") + strings.Replace(storeBackend(""), "address = \"10.10.10.2:81\"", "address = \"10.10.10.2:81\"\nsend_proxy = \"v2\"", 1), key: "backend.store.server[1].send_proxy", msg: "get no PROXY header"},
		{name: "http expect_status order", extra: httpFrontend("store", "") + storeBackend("[backend.store.check]\nexpect_status = \"399-200\"\n"), key: "backend.store.check.expect_status", msg: "the first status is above the second"},
		{name: "http expect_status range", extra: httpFrontend("store", "") + storeBackend("[backend.store.check]\nexpect_status = \"200-999\"\n"), key: "backend.store.check.expect_status", msg: "out of range 100..599"},
		{name: "protocol missing", old: `protocol = "imap"`, new: ``, key: "frontend.imap.protocol", msg: "required"},
		{name: "balance", old: `balance = "user"`, new: `balance = "hash"`, key: "backend.dovecot.balance", msg: `use one of "user"`},
		{name: "tls mode", old: `mode = "starttls"`, new: `mode = "ssl"`, key: "frontend.imap.tls.mode", msg: "unknown value"},
		{name: "min version", old: `mode = "starttls"`, new: "mode = \"starttls\"\nmin_version = \"1.4\"", key: "frontend.imap.tls.min_version", msg: `"1.3"`},
		{name: "curve unknown", old: `mode = "starttls"`, new: "mode = \"starttls\"\ncurves = [\"X25519\", \"secp256k1\"]", key: "frontend.imap.tls.curves[1]", msg: `unknown curve "secp256k1"`},
		{name: "curve twice", old: `mode = "starttls"`, new: "mode = \"starttls\"\ncurves = [\"P-256\", \"P-256\"]", key: "frontend.imap.tls.curves[1]", msg: "listed twice"},
		{name: "check type", old: `type = "imap"`, new: `type = "ping"`, key: "backend.dovecot.check.type", msg: "unknown value"},
		{name: "check send_proxy", old: `type = "imap"`, new: "type = \"imap\"\nsend_proxy = \"yes\"", key: "backend.dovecot.check.send_proxy", msg: "unknown value"},
		{name: "server send_proxy", old: `send_proxy = "v2-ssl"`, new: `send_proxy = "v3"`, key: "backend.dovecot.server[1].send_proxy", msg: `"v2-ssl"`},
		{name: "server state", old: `state = "ready"`, new: `state = "down"`, key: "backend.dovecot.server[1].state", msg: `"drain"`},
		{name: "plaintext_login", old: `max_login_attempts = 3`, new: "max_login_attempts = 3\nplaintext_login = \"never\"", key: "frontend.imap.plaintext_login", msg: "unknown value"},
		{name: "log level", old: `log_level = "info"`, new: `log_level = "verbose"`, key: "global.log_level", msg: `"debug"`},
		{name: "threads", old: `log_level = "info"`, new: "log_level = \"info\"\nthreads = 2000", key: "global.threads", msg: "out of range 0..1024"},
		{name: "log format", old: `log_level = "info"`, new: "log_format = \"xml\"", key: "global.log_format", msg: `"json"`},
		{name: "log_file relative", old: `log_level = "info"`, new: `log_file = "maildirector.log"`, key: "global.log_file", msg: "absolute path"},
		{name: "log_file directory missing", old: `log_level = "info"`, new: `log_file = "/nonexistent/maildirector.log"`, key: "global.log_file", msg: "no such file"},
		{name: "log_file is a directory", old: `log_level = "info"`, new: `log_file = "` + t.TempDir() + `"`, key: "global.log_file", msg: "not a regular file"},
		{name: "syslog transport", old: `log_level = "info"`, new: `syslog = "tcp:127.0.0.1:514"`, key: "global.syslog", msg: `"unix:PATH" or "udp:HOST:PORT"`},
		{name: "syslog bare path", old: `log_level = "info"`, new: `syslog = "/dev/log"`, key: "global.syslog", msg: `"unix:PATH" or "udp:HOST:PORT"`},
		{name: "syslog relative socket", old: `log_level = "info"`, new: `syslog = "unix:dev/log"`, key: "global.syslog", msg: "absolute path"},
		{name: "syslog udp without port", old: `log_level = "info"`, new: `syslog = "udp:127.0.0.1"`, key: "global.syslog", msg: "udp:HOST:PORT"},
		{name: "syslog udp port", old: `log_level = "info"`, new: `syslog = "udp:127.0.0.1:0"`, key: "global.syslog", msg: "out of range 1..65535"},
		{name: "syslog facility", old: `log_level = "info"`, new: `syslog_facility = "local8"`, key: "global.syslog_facility", msg: `"local7"`},
		{name: "syslog tag space", old: `log_level = "info"`, new: `syslog_tag = "mail director"`, key: "global.syslog_tag", msg: "printable US-ASCII"},
		{name: "syslog tag long", old: `log_level = "info"`, new: `syslog_tag = "` + strings.Repeat("m", 49) + `"`, key: "global.syslog_tag", msg: "1 to 48"},
		{name: "on_marked_down", old: `retries = 2`, new: "on_marked_down = \"kill\"", key: "backend.dovecot.on_marked_down", msg: "shutdown-sessions"},
		{name: "undefined backend", old: `backend = "dovecot"`, new: `backend = "dovecto"`, key: "frontend.imap.backend", msg: `"dovecto" is not defined`},
		{name: "backend missing", old: `backend = "dovecot"`, new: ``, key: "frontend.imap.backend", msg: "required"},
		{name: "unreadable cert", old: `cert = "CERT"`, new: `cert = "/nonexistent/mail.pem"`, key: "frontend.imap.tls.cert[0].cert", msg: "no such file"},
		{name: "unparsable cert", old: `cert = "CERT"`, new: `cert = "` + garbage + `"`, key: "frontend.imap.tls.cert[0]", msg: "load"},
		{name: "cert is a directory", old: `cert = "CERT"`, new: `cert = "/"`, key: "frontend.imap.tls.cert[0].cert", msg: "not a regular file"},
		{name: "cert key missing", old: `key = "KEY"`, new: ``, key: "frontend.imap.tls.cert[0].key", msg: "required"},
		{name: "starttls without cert", old: "[[frontend.imap.tls.cert]]\ncert = \"CERT\"\nkey = \"KEY\"", new: "", key: "frontend.imap.tls.mode", msg: "needs a certificate"},
		{name: "deny with tls none", extra: "[frontend.pop]\nprotocol = \"pop3\"\nbind = [\"127.0.0.1:110\"]\nbackend = \"dovecot\"\nplaintext_login = \"deny\"\n", key: "frontend.pop.plaintext_login", msg: "nobody can log in"},
		{name: "global timeout range", old: `idle = "1h"`, new: "idle = \"1h\"\nhandshake = \"1h\"", key: "global.timeouts.handshake", msg: "out of range 1s..5m"},
		{name: "frontend timeout range", extra: "[frontend.imap.timeouts]\nconnect = \"10ms\"\n", key: "frontend.imap.timeouts.connect", msg: "out of range 100ms..2m"},
		{name: "imap idle", extra: "[frontend.imap.timeouts]\nidle = \"10m\"\n", key: "frontend.imap.timeouts.idle", msg: "too short for imap"},
		{name: "imap idle inherited", old: `idle = "1h"`, new: `idle = "20m"`, key: "frontend.imap.timeouts.idle", msg: "inherited from global.timeouts.idle"},
		{name: "shutdown grace", old: `log_level = "info"`, new: `shutdown_grace = "2h"`, key: "global.shutdown_grace", msg: "out of range 0s..1h"},
		{name: "max_login_attempts", old: `max_login_attempts = 3`, new: `max_login_attempts = 0`, key: "frontend.imap.max_login_attempts", msg: "out of range 1..20"},
		{name: "retries", old: `retries = 2`, new: `retries = 11`, key: "backend.dovecot.retries", msg: "out of range 0..10"},
		{name: "weight", old: `weight = 100`, new: `weight = 1001`, key: "backend.dovecot.server[0].weight", msg: "out of range 0..1000"},
		{name: "rise", old: `type = "imap"`, new: "type = \"imap\"\nrise = 0", key: "backend.dovecot.check.rise", msg: "out of range 1..100"},
		{name: "check inter", old: `type = "imap"`, new: "type = \"imap\"\ninter = \"10ms\"", key: "backend.dovecot.check.inter", msg: "out of range"},
		{name: "check address with port", old: `type = "imap"`, new: "type = \"imap\"\naddress = \"10.0.0.1:143\"", key: "backend.dovecot.check.address", msg: "check.port"},
		{name: "check user without password", old: `type = "imap"`, new: "type = \"imap\"\nuser = \"probe\"", key: "backend.dovecot.check.user", msg: "password"},
		// What run refuses, check refuses too (the checker's own rules).
		{name: "login on a pop3 check", old: `type = "imap"`, new: "type = \"pop3\"\nuser = \"probe\"\npassword = \"x\"", key: "backend.dovecot.check.user", msg: "only imap checks log in"},
		{name: "check password without user", old: `type = "imap"`, new: "type = \"imap\"\npassword = \"x\"", key: "backend.dovecot.check.password", msg: "without user"},
		{name: "select_inbox without user", old: `type = "imap"`, new: "type = \"imap\"\nselect_inbox = true", key: "backend.dovecot.check.select_inbox", msg: "probe login"},
		// Keys a protocol does not use are errors, not silent no-ops.
		{name: "greeting on submission", extra: "[frontend.sub]\nprotocol = \"submission\"\nbind = [\"127.0.0.1:1587\"]\nbackend = \"dovecot\"\ngreeting = \"hi\"\n", key: "frontend.sub.greeting", msg: "does nothing for protocol submission"},
		{name: "greeting on lmtp", extra: "[frontend.lm]\nprotocol = \"lmtp\"\nbind = [\"127.0.0.1:1024\"]\nbackend = \"dovecot\"\ngreeting = \"hi\"\n", key: "frontend.lm.greeting", msg: "does nothing for protocol lmtp"},
		{name: "hostname on imap", old: `max_login_attempts = 3`, new: "max_login_attempts = 3\nhostname = \"mx.example.com\"", key: "frontend.imap.hostname", msg: "does nothing for protocol imap"},
		{name: "data timeout on imap", old: `[frontend.imap.tls]`, new: "[frontend.imap.timeouts]\ndata = \"5m\"\n[frontend.imap.tls]", key: "frontend.imap.timeouts.data", msg: "does nothing for protocol imap"},
		{name: "plaintext_login on lmtp", extra: "[frontend.lm]\nprotocol = \"lmtp\"\nbind = [\"127.0.0.1:1024\"]\nbackend = \"dovecot\"\nplaintext_login = \"allow\"\n", key: "frontend.lm.plaintext_login", msg: "it has no login"},
		{name: "max_login_attempts on tcp", extra: "[frontend.t]\nprotocol = \"tcp\"\nbind = [\"127.0.0.1:1081\"]\nbackend = \"objects\"\nmax_login_attempts = 2\n[backend.objects]\nbalance = \"leastconn\"\n[backend.objects.check]\ntype = \"none\"\n[[backend.objects.server]]\nname = \"o\"\naddress = \"10.0.0.9:81\"\n", key: "frontend.t.max_login_attempts", msg: "it has no login"},
		// One way to name the client per server.
		// forward = "id": never a PROXY header as well; imap and pop3 only.
		{name: "forward id with a PROXY header", old: `max_login_attempts = 3`, new: "max_login_attempts = 3\nforward = \"id\"", key: "backend.dovecot.server[1].send_proxy", msg: `frontend.imap has forward = "id"`},
		{name: "forward unknown", old: `max_login_attempts = 3`, new: "max_login_attempts = 3\nforward = \"xclient\"", key: "frontend.imap.forward", msg: "unknown value"},
		{name: "forward on lmtp", extra: "[frontend.lm]\nprotocol = \"lmtp\"\nbind = [\"127.0.0.1:1024\"]\nbackend = \"dovecot\"\nforward = \"id\"\n", key: "frontend.lm.forward", msg: "does nothing for protocol lmtp"},
		{name: "xclient with a PROXY header", old: `send_proxy = "v2-ssl"`, new: "send_proxy = \"v2-ssl\"\nxclient = true", key: "backend.dovecot.server[1].xclient", msg: "choose one"},
		{name: "recipient_delimiter with @", old: `retries = 2`, new: "retries = 2\nrecipient_delimiter = \"+@\"", key: "backend.dovecot.recipient_delimiter", msg: "other than '@'"},
		{name: "master separator with space", old: `retries = 2`, new: "retries = 2\nmaster_user_separator = \" \"", key: "backend.dovecot.master_user_separator", msg: "other than '@'"},
		{name: "login_server_down", old: `retries = 2`, new: "retries = 2\nlogin_server_down = \"retry\"", key: "backend.dovecot.login_server_down", msg: "unknown value"},
		{name: "spool_budget below a message", extra: "[frontend.lm]\nprotocol = \"lmtp\"\nbind = [\"127.0.0.1:1024\"]\nbackend = \"dovecot\"\n[frontend.lm.lmtp]\nmax_message_size = \"10MiB\"\nspool_budget = \"1MiB\"\n", key: "frontend.lm.lmtp.spool_budget", msg: "out of range"},
		{name: "password and file", old: `type = "imap"`, new: "type = \"imap\"\nuser = \"probe\"\npassword = \"x\"\npassword_file = \"/nonexistent\"", key: "backend.dovecot.check.password_file", msg: "not both"},
		{name: "password file unreadable", old: `type = "imap"`, new: "type = \"imap\"\nuser = \"probe\"\npassword_file = \"/nonexistent/pass\"", key: "backend.dovecot.check.password_file", msg: "read password"},
		{name: "user_expire", old: `retries = 2`, new: `user_expire = "200h"`, key: "backend.dovecot.user_expire", msg: "out of range 0s..168h"},
		{name: "default_domain with at", old: `retries = 2`, new: `default_domain = "@example.com"`, key: "backend.dovecot.default_domain", msg: `"example.com" without`},
		{name: "duplicate server names", old: `name = "mail2"`, new: `name = "mail1"`, key: "backend.dovecot.server[1].name", msg: "duplicate name"},
		{name: "server name charset", old: `name = "mail2"`, new: `name = "mail 2"`, key: "backend.dovecot.server[1].name", msg: "letters"},
		{name: "backend without servers", extra: "[backend.empty]\nbalance = \"leastconn\"\n", key: "backend.empty.server", msg: "no servers"},
		{name: "bad cidr", old: `["192.0.2.0/24"]`, new: `["192.0.2.0/33"]`, key: "global.trusted_proxies[0]", msg: "CIDR"},
		{name: "bad frontend cidr", old: `max_login_attempts = 3`, new: "trusted_proxies = [\"proxy.example.com\"]", key: "frontend.imap.trusted_proxies[0]", msg: "IP address"},
		{name: "lmtp table on imap", extra: "[frontend.imap.lmtp]\nmax_recipients = 10\n", key: "frontend.imap.lmtp", msg: "only allowed for protocol"},
		{name: "greeting two lines", old: `max_login_attempts = 3`, new: `greeting = "hi\r\n* OK evil"`, key: "frontend.imap.greeting", msg: "one line"},
		{name: "tcp balance user", extra: tcpFrontend + tcpBackend("user", `"10.0.0.21:8080"`), key: "backend.plain.balance", msg: `use "leastconn", "roundrobin" or "source"`},
		{name: "tcp no port", extra: tcpFrontend + tcpBackend("leastconn", `"10.0.0.21"`), key: "backend.plain.server[0].address", msg: "no port for protocol tcp"},
		{name: "tcp starttls", extra: tcpFrontend + "[frontend.tcp.tls]\nmode = \"starttls\"\n" + tcpBackend("leastconn", `"10.0.0.21:1"`), key: "frontend.tcp.tls.mode", msg: "no STARTTLS"},
		{name: "lmtp implicit", extra: "[frontend.lmtp]\nprotocol = \"lmtp\"\nbind = [\"127.0.0.1:24\"]\nbackend = \"dovecot\"\n[frontend.lmtp.tls]\nmode = \"implicit\"\n", key: "frontend.lmtp.tls.mode", msg: "no implicit TLS"},
		{name: "lmtp spool_memory", extra: "[frontend.lmtp]\nprotocol = \"lmtp\"\nbind = [\"127.0.0.1:24\"]\nbackend = \"dovecot\"\n[frontend.lmtp.lmtp]\nmax_message_size = \"1MiB\"\nspool_memory = \"2MiB\"\n", key: "frontend.lmtp.lmtp.spool_memory", msg: "0..max_message_size"},
		{name: "lmtp max_message_size", extra: "[frontend.lmtp]\nprotocol = \"lmtp\"\nbind = [\"127.0.0.1:24\"]\nbackend = \"dovecot\"\n[frontend.lmtp.lmtp]\nmax_message_size = 100\n", key: "frontend.lmtp.lmtp.max_message_size", msg: "out of range 1KiB..2GiB"},
		{name: "lmtp server_down", extra: "[frontend.lmtp]\nprotocol = \"lmtp\"\nbind = [\"127.0.0.1:24\"]\nbackend = \"dovecot\"\n[frontend.lmtp.lmtp]\nserver_down = \"bounce\"\n", key: "frontend.lmtp.lmtp.server_down", msg: `"tempfail"`},
		{name: "lmtp spool_dir", extra: "[frontend.lmtp]\nprotocol = \"lmtp\"\nbind = [\"127.0.0.1:24\"]\nbackend = \"dovecot\"\n[frontend.lmtp.lmtp]\nspool_dir = \"/nonexistent/spool\"\n", key: "frontend.lmtp.lmtp.spool_dir", msg: "no such file"},
		{name: "server ca", old: `send_proxy = "v2-ssl"`, new: "send_proxy = \"v2-ssl\"\ntls = { enabled = true, ca = \"" + garbage + "\" }", key: "backend.dovecot.server[1].tls.ca", msg: "no PEM certificate"},
		{name: "frontend name", extra: "[frontend.\"imap 2\"]\nprotocol = \"imap\"\nbind = [\"127.0.0.1:2143\"]\nbackend = \"dovecot\"\n", key: `frontend."imap 2"`, msg: "letters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := baseConfig
			if tt.old != "" {
				if !strings.Contains(text, tt.old) {
					t.Fatalf("baseConfig has no %q", tt.old)
				}
				text = strings.Replace(text, tt.old, tt.new, 1)
			}
			text = withCert(t, text+"\n"+tt.extra)
			c, err := Parse([]byte(text))
			if tt.key == "" {
				if err != nil {
					t.Fatalf("Parse: got error %v, want none", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse: got no error, want one at %s", tt.key)
			}
			if c != nil {
				t.Errorf("Parse: got a Config with the error, want nil")
			}
			errs := keyErrors(t, err)
			msgs, ok := errs[tt.key]
			if !ok {
				t.Fatalf("got problems\n%v\nwant one at key %s", err, tt.key)
			}
			if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, tt.msg) }) {
				t.Errorf("%s: got %q, want a message containing %q", tt.key, msgs, tt.msg)
			}
			if len(errs) != 1 || len(msgs) != 1 {
				t.Errorf("got %d problems, want exactly 1:\n%v", len(Problems(err)), err)
			}
		})
	}
}

// httpFrontend is an http frontend "web" on backend, with more TOML lines.
func httpFrontend(backend, more string) string {
	return "\n[frontend.web]\nprotocol = \"http\"\nbind = [\"127.0.0.1:8081\"]\nbackend = \"" + backend + "\"\n" + more
}

// storeBackend is an object-store backend "store" of two servers, with
// more TOML lines for its table (subtables included).
func storeBackend(more string) string {
	return "\n[backend.store]\n" + more + `
[[backend.store.server]]
name = "10.10.10.1"
address = "10.10.10.1:81"
[[backend.store.server]]
name = "10.10.10.2"
address = "10.10.10.2:81"
`
}

const tcpFrontend = `
[frontend.tcp]
protocol = "tcp"
bind = ["127.0.0.1:8080"]
backend = "plain"
`

func tcpBackend(balance, address string) string {
	return "[backend.plain]\nbalance = \"" + balance + "\"\n[[backend.plain.server]]\nname = \"s1\"\naddress = " + address + "\n"
}

func TestParseValidVariants(t *testing.T) {
	tests := []struct {
		name     string
		old, new string
		extra    string
	}{
		{name: "base"},
		{name: "xclient without submission frontend", old: `weight = 100`, new: "weight = 100\nxclient = true"},
		{name: "tls none auto", old: `mode = "starttls"`, new: `mode = "none"`},
		{name: "certs ignored with tls none", old: `mode = "starttls"`, new: `mode = "none"`, extra: "[[frontend.imap.tls.cert]]\ncert = \"/nonexistent\"\nkey = \"/nonexistent\"\n"},
		{name: "inline server array", extra: "[backend.b2]\nserver = [{ name = \"a\", address = \"10.1.0.1\" }]\n"},
		{name: "unused backend without check port", extra: "[backend.b3]\nbalance = \"source\"\n[[backend.b3.server]]\nname = \"s\"\naddress = \"10.1.0.2\"\n"},
		{name: "user check without login", old: `type = "imap"`, new: "type = \"imap\"\nuser = \"\""},
		{name: "tcp leastconn with ports.tcp", extra: tcpFrontend + "[backend.plain]\nbalance = \"leastconn\"\n[[backend.plain.server]]\nname = \"s1\"\naddress = \"10.0.0.21\"\nports = { tcp = 8080 }\n"},
		{name: "frontend idle zero inherits", extra: "[frontend.imap.timeouts]\nidle = \"0s\"\n"},
		{name: "balance director", old: "balance = \"user\"\nretries = 2", new: "balance = \"director\"\nretries = 2\ndirector_username_hash = \"%Ln\"", extra: "[[backend.dovecot.server]]\nname = \"mail3\"\naddress = \"[2001:db8::13]:143\"\nvhost_count = 0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := baseConfig
			if tt.old != "" {
				text = strings.Replace(text, tt.old, tt.new, 1)
			}
			mustParse(t, withCert(t, text+"\n"+tt.extra))
		})
	}
}

func TestParseNoFrontends(t *testing.T) {
	_, err := Parse([]byte("[backend.dovecot]\n[[backend.dovecot.server]]\nname = \"a\"\naddress = \"10.0.0.1\"\n"))
	if _, ok := keyErrors(t, err)["frontend"]; !ok {
		t.Fatalf("got %v, want a problem at key frontend", err)
	}
	_, err = Parse(nil)
	if _, ok := keyErrors(t, err)["frontend"]; !ok {
		t.Fatalf("empty file: got %v, want a problem at key frontend", err)
	}
}

func TestParseAllProblemsAtOnce(t *testing.T) {
	text := strings.NewReplacer(
		`log_level = "info"`, `log_level = "loud"`,
		`"127.0.0.1:1143",`, `"127.0.0.1",`,
		`backend = "dovecot"`, `backend = "nope"`,
		`weight = 100`, "weight = -1\ncolour = \"blue\"",
		`name = "mail2"`, `name = "mail1"`,
		"[[frontend.imap.tls.cert]]\ncert = \"CERT\"\nkey = \"KEY\"", "",
	).Replace(baseConfig)
	_, err := Parse([]byte(text))
	errs := keyErrors(t, err)
	want := []string{
		"global.log_level",
		"frontend.imap.bind[0]",
		"frontend.imap.backend",
		"frontend.imap.tls.mode",
		"backend.dovecot.server[0].weight",
		"backend.dovecot.server[0].colour",
		"backend.dovecot.server[1].name",
	}
	for _, k := range want {
		if _, ok := errs[k]; !ok {
			t.Errorf("missing problem at %s", k)
		}
	}
	if len(errs) != len(want) {
		t.Errorf("got %d problem keys, want %d:\n%v", len(errs), len(want), err)
	}
	// Unknown keys come first, and the message is one line per problem.
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != len(want) || !strings.HasPrefix(lines[0], "backend.dovecot.server[0].colour: unknown key") {
		t.Errorf("got message\n%v\nwant %d lines, unknown key first", err, len(want))
	}
}

func TestParseSyntaxErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		key  string
		line int
		msg  string
	}{
		{name: "toml syntax", text: "[global]\nlog_level = info\n", line: 2, msg: "expected"},
		{name: "wrong type", text: "[global]\nmaxconn = \"many\"\n", key: "global.maxconn", line: 2, msg: "incompatible types"},
		{name: "duration without unit", text: "[global]\n\nshutdown_grace = 30\n", key: "global.shutdown_grace", line: 3, msg: `add a unit, e.g. "30s"`},
		{name: "bad duration", text: "[global.timeouts]\nidle = \"1 hour\"\n", key: "global.timeouts.idle", line: 2, msg: "invalid duration"},
		{name: "decimal size", text: "[frontend.l.lmtp]\nmax_message_size = \"10MB\"\n", key: "frontend.l.lmtp.max_message_size", line: 2, msg: "KiB, MiB or GiB"},
		{name: "duplicate key", text: "[global]\nmaxconn = 1\nmaxconn = 2\n", line: 3, msg: "already been defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.text))
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("got %T %v, want *SyntaxError", err, err)
			}
			if tt.key != "" && se.Key != tt.key {
				t.Errorf("key: got %q, want %q", se.Key, tt.key)
			}
			if se.Line != tt.line {
				t.Errorf("line: got %d, want %d (%v)", se.Line, tt.line, err)
			}
			if !strings.Contains(se.Error(), tt.msg) {
				t.Errorf("message: got %q, want it to contain %q", se.Error(), tt.msg)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, `
[frontend.imap]
protocol = "imap"
bind = ["127.0.0.1:1143"]
backend = "d"

[frontend.lmtp]
protocol = "lmtp"
bind = ["127.0.0.1:1024"]
backend = "d"

[backend.d]
[[backend.d.server]]
name = "s1"
address = "10.0.0.1"
tls = { enabled = true }
`)
	g := c.Global
	if ct := c.Control; ct.Socket != "" || ct.Mode != "0660" || ct.SocketMode() != 0o660 || ct.FreezeWait.D() != 30*time.Second || ct.StateFile != "" {
		t.Errorf("control defaults: %+v", ct)
	}
	if c.Stats.Bind != "" || c.Stats.Refresh.D() != 2*time.Second || c.Stats.Auth != nil || c.Stats.Admin {
		t.Errorf("stats defaults: %+v", c.Stats)
	}
	if g.LogLevel != LogLevelInfo || g.LogFormat != LogFormatText || g.MaxConn != 10000 || g.ShutdownGrace.D() != 30*time.Second || g.TrustedProxies != nil {
		t.Errorf("global: got %+v", g)
	}
	if g.LogFile != "" || g.Syslog != "" || g.SyslogFacility != SyslogFacilityLocal0 || g.SyslogFacility.Code() != 16 || g.SyslogTag != "maildirector" {
		t.Errorf("log sinks: got %q %q %q (code %d) %q, want stderr: \"\" \"\" local0 (16) maildirector", g.LogFile, g.Syslog, g.SyslogFacility, g.SyslogFacility.Code(), g.SyslogTag)
	}
	if g.Timeouts != DefaultTimeouts {
		t.Errorf("global timeouts: got %+v, want %+v", g.Timeouts, DefaultTimeouts)
	}
	f := c.Frontends["imap"]
	if f.Timeouts != DefaultTimeouts {
		t.Errorf("frontend timeouts: got %+v, want the global ones", f.Timeouts)
	}
	if f.PlaintextLogin != PlaintextLoginAuto || !f.PlaintextAllowed() || f.MaxLoginAttempts != 3 || f.MaxConn != 0 {
		t.Errorf("frontend: got %+v", f)
	}
	if f.TLS.Mode != TLSModeNone || f.TLS.MinVersion != "1.2" || f.LMTP != nil {
		t.Errorf("frontend tls/lmtp: got %+v %v", f.TLS, f.LMTP)
	}
	if host, _ := os.Hostname(); f.Hostname != host {
		t.Errorf("hostname: got %q, want %q", f.Hostname, host)
	}
	want := LMTP{MaxRecipients: 1000, MaxMessageSize: 50 * MiB, SpoolMemory: MiB, SpoolDir: os.TempDir(), SpoolBudget: GiB, ServerDown: ServerDownTempfail, BareLF: BareLFNormalize, MaxServerConns: 16}
	if got := c.Frontends["lmtp"].LMTP; got == nil || *got != want {
		t.Errorf("lmtp: got %+v, want %+v", got, want)
	}
	b := c.Backends["d"]
	if b.Balance != BalanceUser || b.UserExpire.D() != 15*time.Minute || b.Retries != 2 || b.ErrorLimit != 3 || b.OnMarkedDown != OnMarkedDownNone || b.AllBackups {
		t.Errorf("backend: got %+v", b)
	}
	wantCheck := Check{
		Type: CheckTypeIMAP, Inter: Duration(2 * time.Second), FastInter: Duration(2 * time.Second), DownInter: Duration(2 * time.Second),
		Rise: 2, Fall: 3, Timeout: Duration(2 * time.Second), SendProxy: CheckProxyAuto, HTTPMethod: "GET", HTTPPath: "/", ExpectStatus: StatusRange{200, 200},
	}
	if b.Check != wantCheck {
		t.Errorf("check: got %+v, want %+v", b.Check, wantCheck)
	}
	s := b.Servers[0]
	if s.Weight != 100 || s.State != ServerStateReady || s.SendProxy != SendProxyV2SSL || !s.Check || s.Backup || s.MaxConn != 0 {
		t.Errorf("server: got %+v", s)
	}
	if s.VhostCount != 100 || b.DirectorUsernameHash != "%Lu" {
		t.Errorf("director defaults: got vhost_count %d, director_username_hash %q; want Dovecot's 100 and %%Lu", s.VhostCount, b.DirectorUsernameHash)
	}
	if !s.TLS.Verify || s.TLS.ServerName != "10.0.0.1" {
		t.Errorf("server tls: got %+v, want verify and server_name 10.0.0.1", s.TLS)
	}
	// Check type imap (an imap frontend uses the backend), port 0: the server's imap port.
	if got, want := b.CheckAddress(s), "10.0.0.1:143"; got != want {
		t.Errorf("imap check address: got %s, want %s", got, want)
	}
	// send_proxy v2-ssl: checks send a LOCAL header, as Dovecot requires.
	if got, want := b.CheckSendProxy(s), CheckProxyLocal; got != want {
		t.Errorf("check send_proxy: got %s, want %s", got, want)
	}
	// No check.tls: the check follows the server's tls.enabled.
	if !b.CheckTLS(s) {
		t.Errorf("check tls: got plaintext for a TLS server, want TLS")
	}
	if b.RecipientDelimiter != "+" || b.StripLoginDetail || b.MasterUserSeparator != "" || b.LoginServerDown != ServerDownNext {
		t.Errorf("routing defaults: got %q %v %q %q, want \"+\" false \"\" next", b.RecipientDelimiter, b.StripLoginDetail, b.MasterUserSeparator, b.LoginServerDown)
	}
	if got, want := c.Frontends["lmtp"].Timeouts.Idle.D(), 5*time.Minute; got != want {
		t.Errorf("lmtp idle: got %v, want %v (RFC 5321 section 4.5.3.2.7)", got, want)
	}
}

func TestExplicitZeroKeepsZero(t *testing.T) {
	c := mustParse(t, `
[global]
maxconn = 0
[frontend.imap]
protocol = "imap"
bind = ["127.0.0.1:1143"]
backend = "d"
[backend.d]
retries = 0
error_limit = 0
user_expire = "0s"
[[backend.d.server]]
name = "s1"
address = "10.0.0.1"
weight = 0
check = false
tls = { verify = false }
`)
	b := c.Backends["d"]
	s := b.Servers[0]
	if c.Global.MaxConn != 0 || b.Retries != 0 || b.ErrorLimit != 0 || b.UserExpire != 0 || s.Weight != 0 || s.Check || s.TLS.Verify {
		t.Errorf("explicit zeros: got maxconn %d retries %d error_limit %d user_expire %v weight %d check %v verify %v, want all zero/false",
			c.Global.MaxConn, b.Retries, b.ErrorLimit, b.UserExpire, s.Weight, s.Check, s.TLS.Verify)
	}
}

func TestServerPort(t *testing.T) {
	tests := []struct {
		name    string
		address string
		ports   map[Protocol]int
		proto   Protocol
		port    int
		host    string
		dial    string
	}{
		{name: "standard imap", address: "10.0.0.1", proto: ProtocolIMAP, port: 143, host: "10.0.0.1", dial: "10.0.0.1:143"},
		{name: "standard pop3", address: "10.0.0.1", proto: ProtocolPOP3, port: 110, host: "10.0.0.1", dial: "10.0.0.1:110"},
		{name: "standard lmtp", address: "10.0.0.1", proto: ProtocolLMTP, port: 24, host: "10.0.0.1", dial: "10.0.0.1:24"},
		{name: "standard submission", address: "10.0.0.1", proto: ProtocolSubmission, port: 587, host: "10.0.0.1", dial: "10.0.0.1:587"},
		{name: "standard http", address: "10.0.0.1", proto: ProtocolHTTP, port: 80, host: "10.0.0.1", dial: "10.0.0.1:80"},
		{name: "tcp has none", address: "10.0.0.1", proto: ProtocolTCP, port: 0, host: "10.0.0.1", dial: "10.0.0.1:0"},
		{name: "address port", address: "10.0.0.1:10143", proto: ProtocolPOP3, port: 10143, host: "10.0.0.1", dial: "10.0.0.1:10143"},
		{name: "ports wins", address: "10.0.0.1:10143", ports: map[Protocol]int{ProtocolPOP3: 10110}, proto: ProtocolPOP3, port: 10110, host: "10.0.0.1", dial: "10.0.0.1:10110"},
		{name: "ports other protocol", address: "mail1.example.com", ports: map[Protocol]int{ProtocolPOP3: 10110}, proto: ProtocolIMAP, port: 143, host: "mail1.example.com", dial: "mail1.example.com:143"},
		{name: "ipv6", address: "[2001:db8::1]", proto: ProtocolIMAP, port: 143, host: "2001:db8::1", dial: "[2001:db8::1]:143"},
		{name: "ipv6 port", address: "[2001:db8::1]:1143", proto: ProtocolLMTP, port: 1143, host: "2001:db8::1", dial: "[2001:db8::1]:1143"},
		{name: "tcp from ports", address: "10.0.0.1", ports: map[Protocol]int{ProtocolTCP: 8080}, proto: ProtocolTCP, port: 8080, host: "10.0.0.1", dial: "10.0.0.1:8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Server{Address: tt.address, Ports: tt.ports}
			if got := s.Port(tt.proto); got != tt.port {
				t.Errorf("Port(%s): got %d, want %d", tt.proto, got, tt.port)
			}
			if got := s.Host(); got != tt.host {
				t.Errorf("Host: got %q, want %q", got, tt.host)
			}
			if got := s.DialAddress(tt.proto); got != tt.dial {
				t.Errorf("DialAddress(%s): got %q, want %q", tt.proto, got, tt.dial)
			}
		})
	}
}

func TestEffectiveTimeoutsAndPlaintext(t *testing.T) {
	g := Global{Timeouts: DefaultTimeouts}
	f := &Frontend{Timeouts: Timeouts{Idle: Duration(2 * time.Hour)}}
	got := f.EffectiveTimeouts(g)
	want := DefaultTimeouts
	want.Idle = Duration(2 * time.Hour)
	if got != want {
		t.Errorf("EffectiveTimeouts: got %+v, want %+v", got, want)
	}

	tests := []struct {
		login PlaintextLogin
		mode  TLSMode
		want  bool
	}{
		{PlaintextLoginAuto, TLSModeStartTLS, false},
		{PlaintextLoginAuto, TLSModeNone, true},
		{PlaintextLoginAuto, TLSModeImplicit, true},
		{PlaintextLoginAllow, TLSModeStartTLS, true},
		{PlaintextLoginDeny, TLSModeImplicit, false},
	}
	for _, tt := range tests {
		t.Run(string(tt.login)+"/"+string(tt.mode), func(t *testing.T) {
			f := &Frontend{PlaintextLogin: tt.login, TLS: FrontendTLS{Mode: tt.mode}}
			if got := f.PlaintextAllowed(); got != tt.want {
				t.Errorf("PlaintextAllowed: got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "md.toml")
	writeFile(t, name, withCert(t, baseConfig))
	c, err := Load(name)
	if err != nil {
		t.Fatalf("Load: got %v, want no error", err)
	}
	if got, want := c.Summary(), "1 frontend (imap), 1 backend (dovecot: 2 servers), 2 listeners"; got != want {
		t.Errorf("Summary: got %q, want %q", got, want)
	}
	if got, want := c.FrontendNames(), []string{"imap"}; !slices.Equal(got, want) {
		t.Errorf("FrontendNames: got %v, want %v", got, want)
	}

	writeFile(t, name, strings.Replace(withCert(t, baseConfig), `retries = 2`, "retries = 20\nerror_limit = -1", 1))
	_, err = Load(name)
	if err == nil || !strings.HasPrefix(err.Error(), "config "+name+": 2 problems:\n") {
		t.Errorf("Load: got %v, want the file name and a problem count", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load missing file: got %v, want os.ErrNotExist", err)
	}
}

func TestUnknownKeyIsErrUnknownKey(t *testing.T) {
	_, err := Parse([]byte(withCert(t, baseConfig+"\n[frontend.imap.tsl]\nmode = \"x\"\nfoo = 1\n")))
	if !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("got %v, want ErrUnknownKey", err)
	}
	// A misspelt table is reported once, not once per key inside it.
	if n := len(Problems(err)); n != 1 {
		t.Errorf("got %d problems, want 1:\n%v", n, err)
	}
}

// seedTranslation is Dovecot's documented HAProxy setup for Scality
// sproxyd, in maildirector's TOML (the README shows both side by side).
const seedTranslation = `
[global]
maxconn = 60000
syslog = "udp:127.0.0.1:514"
syslog_facility = "local2"

[global.timeouts]
connect = "10s"

[frontend.scality_in]
protocol = "http"
bind = ["0.0.0.0:81", "[::]:81"]
backend = "scality_ring"
maxconn = 5000

[frontend.scality_in.timeouts]
request = "1m"
queue = "1m"
client = "1m"
server = "1m"
keep_alive = "10m"

[frontend.scality_in.http]
forwardfor = true
forwardfor_except = ["127.0.0.0/8"]
capture = [
  { name = "X-Dovecot-Reason", len = 40 },
  { name = "X-Dovecot-Username", len = 40 },
  { name = "X-Dovecot-Session-Id", len = 70 },
]

[backend.scality_ring]
balance = "roundrobin"
retries = 3

[backend.scality_ring.check]
type = "http"
http_method = "OPTIONS"
expect_status = "200-399"
inter = "30s"
timeout = "10s"

[[backend.scality_ring.server]]
name = "10.10.10.1"
address = "10.10.10.1:81"
[[backend.scality_ring.server]]
name = "10.10.10.2"
address = "10.10.10.2:81"
`

func TestParseHTTP(t *testing.T) {
	c := mustParse(t, seedTranslation)
	f := c.Frontends["scality_in"]
	if f.HTTP == nil || !f.HTTP.ForwardFor || !slices.Equal(f.HTTP.ForwardForExcept, []string{"127.0.0.0/8"}) {
		t.Fatalf("http table: got %+v", f.HTTP)
	}
	if !slices.Equal(f.HTTP.Capture, DefaultCapture) || f.HTTP.ReasonHeader != "X-Dovecot-Reason" || f.HTTP.MaxReasons != 20 ||
		f.HTTP.MaxIdlePerServer != 64 || f.HTTP.ReplayBuffer != 128*KiB || f.HTTP.MaxRequests != 0 || f.HTTP.ServerClose {
		t.Errorf("http defaults: got %+v", f.HTTP)
	}
	if got := f.Timeouts; got.Connect != Duration(10*time.Second) || got.Request != Duration(time.Minute) || got.KeepAlive != Duration(10*time.Minute) {
		t.Errorf("timeouts: got %+v", got)
	}
	b := c.Backends["scality_ring"]
	if b.Check.Type != CheckTypeHTTP || b.Check.ExpectStatus != (StatusRange{200, 399}) || b.Check.HTTPMethod != "OPTIONS" || b.Retries != 3 {
		t.Errorf("backend: got %+v", b.Check)
	}
	for _, s := range b.Servers {
		if s.SendProxy != SendProxyNone || s.DialAddress(ProtocolHTTP) != s.Address || b.CheckAddress(s) != s.Address {
			t.Errorf("server %s: send_proxy %s, dial %s, check %s; want none and its address", s.Name, s.SendProxy, s.DialAddress(ProtocolHTTP), b.CheckAddress(s))
		}
	}
	if pfx := f.HTTP.ForwardForExceptPrefixes(); len(pfx) != 1 || pfx[0].String() != "127.0.0.0/8" {
		t.Errorf("except prefixes: got %v", pfx)
	}
}

func TestHTTPDefaults(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		check func(t *testing.T, c *Config)
	}{
		{"balance defaults to roundrobin, check to http, send_proxy to none", httpFrontend("store", "") + storeBackend(""), func(t *testing.T, c *Config) {
			b := c.Backends["store"]
			if b.Balance != BalanceRoundRobin || b.Check.Type != CheckTypeHTTP || b.Servers[0].SendProxy != SendProxyNone || b.Check.ExpectStatus != (StatusRange{200, 200}) {
				t.Errorf("got balance %s, check %s, send_proxy %s, expect %s", b.Balance, b.Check.Type, b.Servers[0].SendProxy, b.Check.ExpectStatus)
			}
			if c.Backends["dovecot"].Balance != BalanceUser {
				t.Errorf("a mail backend's balance: got %s, want user", c.Backends["dovecot"].Balance)
			}
			if got := c.Frontends["web"].HTTP.Capture; !slices.Equal(got, DefaultCapture) {
				t.Errorf("capture: got %v, want the X-Dovecot headers", got)
			}
		}},
		{"frontend http timeouts override the global ones", httpFrontend("store", "[frontend.web.timeouts]\nkeep_alive = \"2m\"\nrequest = \"5s\"\n") + storeBackend(""), func(t *testing.T, c *Config) {
			if got := c.Frontends["web"].Timeouts; got.KeepAlive != Duration(2*time.Minute) || got.Request != Duration(5*time.Second) || got.Queue != Duration(time.Minute) {
				t.Errorf("timeouts: got keep_alive %s, request %s, queue %s; want 2m, 5s, 1m", got.KeepAlive, got.Request, got.Queue)
			}
		}},
		{"capture = [] captures nothing", httpFrontend("store", "[frontend.web.http]\ncapture = []\n") + storeBackend(""), func(t *testing.T, c *Config) {
			if got := c.Frontends["web"].HTTP.Capture; got == nil || len(got) != 0 {
				t.Errorf("capture: got %#v, want empty, not nil", got)
			}
		}},
		{"expect_status as an integer", httpFrontend("store", "") + storeBackend("[backend.store.check]\nexpect_status = 204\n"), func(t *testing.T, c *Config) {
			if got := c.Backends["store"].Check.ExpectStatus; got != (StatusRange{204, 204}) {
				t.Errorf("expect_status: got %v, want 204", got)
			}
		}},
		{"per-client connection limits off for http", httpFrontend("store", "") + storeBackend(""), func(t *testing.T, c *Config) {
			if l := c.Frontends["web"].Limits; l.MaxPerClient != 0 || l.MaxRate != 0 {
				t.Errorf("http limits: got max_per_client %d, max_rate %d; want both off", l.MaxPerClient, l.MaxRate)
			}
			if l := c.Frontends["imap"].Limits; l.MaxPerClient != 500 || l.MaxRate != 200 {
				t.Errorf("imap limits: got %d, %d; want the defaults", l.MaxPerClient, l.MaxRate)
			}
		}},
		{"per-client connection limits of http when set", httpFrontend("store", "[frontend.web.limits]\nmax_per_client = 50\n") + storeBackend(""), func(t *testing.T, c *Config) {
			if l := c.Frontends["web"].Limits; l.MaxPerClient != 50 || l.MaxRate != 0 {
				t.Errorf("http limits: got max_per_client %d, max_rate %d; want 50 and off", l.MaxPerClient, l.MaxRate)
			}
		}},
		{"global http timeouts are inherited", httpFrontend("store", "") + storeBackend(""), func(t *testing.T, c *Config) {
			if got := c.Frontends["web"].Timeouts.Server; got != Duration(30*time.Second) {
				t.Errorf("server timeout: got %s, want 30s", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := strings.Replace(baseConfig, "idle = \"1h\"\n", "idle = \"1h\"\nserver = \"30s\"\n", 1)
			tt.check(t, mustParse(t, withCert(t, base+tt.extra)))
		})
	}
}

func TestStatusRangeText(t *testing.T) {
	tests := []struct {
		in   string
		want StatusRange
		err  bool
	}{
		{"200", StatusRange{200, 200}, false},
		{" 200-399 ", StatusRange{200, 399}, false},
		{"200 - 204", StatusRange{200, 204}, false},
		{"2xx", StatusRange{}, true},
		{"20", StatusRange{}, true},
		{"200-", StatusRange{}, true},
		{"-200", StatusRange{}, true},
		{"200-399-500", StatusRange{}, true},
		{"+200", StatusRange{}, true},
	}
	for _, tt := range tests {
		var r StatusRange
		err := r.UnmarshalText([]byte(tt.in))
		if (err != nil) != tt.err || err == nil && r != tt.want {
			t.Errorf("%q: got %v, %v; want %v (error %v)", tt.in, r, err, tt.want, tt.err)
		}
	}
}

// TestLimitsInheritKeyByKey: a frontend's [limits] overrides the global
// keys it sets, an explicit 0 included, and inherits the others; the
// defaults fill what neither sets.
func TestLimitsInheritKeyByKey(t *testing.T) {
	c := mustParse(t, `
[global.limits]
max_per_client = 100
exempt = ["192.0.2.0/24"]
[frontend.imap]
protocol = "imap"
bind = ["127.0.0.1:1143"]
backend = "d"
[frontend.imap.limits]
max_rate = 0
penalty_init = "1s"
[frontend.pop3]
protocol = "pop3"
bind = ["127.0.0.1:1110"]
backend = "d"
[backend.d]
[[backend.d.server]]
name = "s1"
address = "10.0.0.1"
`)
	imap, pop3 := c.Frontends["imap"].Limits, c.Frontends["pop3"].Limits
	if imap.MaxPerClient != 100 || imap.MaxRate != 0 || imap.PenaltyInit.D() != time.Second || imap.PenaltyMax.D() != 15*time.Second ||
		len(imap.ExemptPrefixes()) != 1 || imap.BlockAfter != 20 {
		t.Errorf("imap limits: %+v", imap)
	}
	if pop3.MaxPerClient != 100 || pop3.MaxRate != 200 || pop3.PenaltyInit.D() != 2*time.Second || pop3.RateWindow.D() != 10*time.Second {
		t.Errorf("pop3 limits: %+v", pop3)
	}
}

// TestForwardDefaults: forward defaults to "proxy"; with "id" the
// backend's servers (and so their checks) default to no PROXY header.
func TestForwardDefaults(t *testing.T) {
	for _, tt := range []struct {
		forward   string
		want      Forward
		wantProxy SendProxy
		wantCheck CheckProxy
	}{
		{"", ForwardProxy, SendProxyV2SSL, CheckProxyLocal},
		{`forward = "proxy"`, ForwardProxy, SendProxyV2SSL, CheckProxyLocal},
		{`forward = "id"`, ForwardID, SendProxyNone, CheckProxyNone},
	} {
		t.Run(string(tt.want)+tt.forward, func(t *testing.T) {
			c := mustParse(t, `
[frontend.pop3]
protocol = "pop3"
bind = ["127.0.0.1:1110"]
backend = "d"
`+tt.forward+`

[backend.d]
[[backend.d.server]]
name = "s1"
address = "10.0.0.1"
`)
			b := c.Backends["d"]
			if got := c.Frontends["pop3"].Forward; got != tt.want {
				t.Errorf("forward: got %q, want %q", got, tt.want)
			}
			if got := b.Servers[0].SendProxy; got != tt.wantProxy {
				t.Errorf("send_proxy: got %q, want %q", got, tt.wantProxy)
			}
			if got := b.CheckSendProxy(b.Servers[0]); got != tt.wantCheck {
				t.Errorf("check send_proxy: got %q, want %q", got, tt.wantCheck)
			}
		})
	}
}
