package haproxycfg

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/tlsutil"
)

func translate(t *testing.T, text string) *Result {
	t.Helper()
	f, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return Translate(f)
}

// mustCheck parses the translation as maildirector check does.
func mustCheck(t *testing.T, res *Result) *config.Config {
	t.Helper()
	c, err := config.Parse(res.TOML)
	if err != nil {
		t.Fatalf("the translation does not pass maildirector's configuration checks:\n%v\n--- translation:\n%s", err, res.TOML)
	}
	return c
}

func warnedLines(res *Result) []int {
	var lines []int
	for _, w := range res.Warnings {
		if !slices.Contains(lines, w.Line) {
			lines = append(lines, w.Line)
		}
	}
	return lines
}

// warning returns the warnings of line n, joined.
func warning(res *Result, n int) string {
	var out []string
	for _, w := range res.Warnings {
		if w.Line == n {
			out = append(out, w.Why)
		}
	}
	return strings.Join(out, " | ")
}

func TestParseWords(t *testing.T) {
	text := "global\n" +
		"  log \"/dev/log\" local0 # a comment\n" +
		"  description 'it''s' \"a \\\"b\\\"\" c\\ d\n" +
		"backend b\n" +
		"  server s1 10.0.0.1:143 \\\n" +
		"      check inter 2s\n" +
		"\n" +
		"  # only a comment\n"
	f, err := Parse(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Sections) != 2 || f.Sections[1].Kind != "backend" || f.Sections[1].Name != "b" || f.Sections[1].Line != 4 {
		t.Fatalf("sections: got %+v", f.Sections)
	}
	g := f.Sections[0].Stmts
	if got := g[0].Words; !slices.Equal(got, []string{"log", "/dev/log", "local0"}) {
		t.Errorf("quoted word and comment: got %q", got)
	}
	if got := g[1].Words; !slices.Equal(got, []string{"description", "its", `a "b"`, "c d"}) {
		t.Errorf("quotes and escapes: got %q", got)
	}
	srv := f.Sections[1].Stmts
	if len(srv) != 1 || srv[0].Line != 5 || !slices.Equal(srv[0].Words, []string{"server", "s1", "10.0.0.1:143", "check", "inter", "2s"}) {
		t.Errorf("continued line: got %+v", srv)
	}
	if _, err := Parse(strings.NewReader("global\n  log \"unterminated\n")); err == nil {
		t.Error("unterminated quote: got no error")
	}
	if _, err := Parse(strings.NewReader(strings.Repeat("x", MaxLine+1))); err == nil {
		t.Error("a line over MaxLine: got no error")
	}
}

// TestTranslateSeedSample: the sample configuration of the seed's Dovecot
// HAProxy page (HAProxy between Dovecot and Scality sproxyd, all mode http)
// translates into a configuration maildirector accepts, with every line it
// cannot carry named: the translator does not write the HTTP path yet, so the frontend relays TCP.
func TestTranslateSeedSample(t *testing.T) {
	data, err := os.ReadFile("testdata/seed-sample.cfg")
	if err != nil {
		t.Fatal(err)
	}
	res := translate(t, string(data))
	c := mustCheck(t, res)
	if c.Global.MaxConn != 60000 || c.Global.Syslog != "udp:127.0.0.1:514" || c.Global.SyslogFacility != "local2" {
		t.Errorf("global: got maxconn %d, syslog %q %q; want 60000, udp:127.0.0.1:514, local2", c.Global.MaxConn, c.Global.Syslog, c.Global.SyslogFacility)
	}
	if c.Control.Socket != "/var/lib/haproxy/stats" {
		t.Errorf("stats socket: got control.socket %q", c.Control.Socket)
	}
	fe := c.Frontends["scality_in"]
	if fe == nil || fe.Protocol != config.ProtocolHTTP || !slices.Equal(fe.Bind, []string{"0.0.0.0:81", "[::]:81"}) || fe.Backend != "scality_ring" || fe.MaxConn != 5000 {
		t.Fatalf("frontend: got %+v", fe)
	}
	// Every timeout of the sample's defaults, on the HTTP path.
	wantT := config.Timeouts{Request: cdur(time.Minute), Queue: cdur(time.Minute), Connect: cdur(10 * time.Second),
		Client: cdur(time.Minute), Server: cdur(time.Minute), KeepAlive: cdur(10 * time.Minute)}
	gotT := fe.Timeouts
	if gotT.Request != wantT.Request || gotT.Queue != wantT.Queue || gotT.Connect != wantT.Connect || gotT.Client != wantT.Client ||
		gotT.Server != wantT.Server || gotT.KeepAlive != wantT.KeepAlive {
		t.Errorf("timeouts: got %+v, want request/queue/client/server 1m, connect 10s, keep_alive 10m", gotT)
	}
	h := fe.HTTP
	wantCap := []config.Capture{{Name: "X-Dovecot-Reason", Len: 40}, {Name: "X-Dovecot-Username", Len: 40}, {Name: "X-Dovecot-Session-Id", Len: 70}}
	// HAProxy (2.6.12, measured) sets the except network anew with every
	// option forwardfor: the frontend's and the backend's own lines drop
	// the defaults' "except 127.0.0.0/8".
	if h == nil || !h.ForwardFor || len(h.ForwardForExcept) != 0 || !h.ServerClose || !slices.Equal(h.Capture, wantCap) {
		t.Errorf("http: got %+v, want forwardfor without except, server_close, the three captures", h)
	}
	be := c.Backends["scality_ring"]
	if be.Balance != config.BalanceRoundRobin || be.Retries != 3 || be.Check.Type != config.CheckTypeHTTP || be.Check.HTTPMethod != "OPTIONS" ||
		be.Check.HTTPPath != "/" || be.Check.ExpectStatus != (config.StatusRange{Lo: 200, Hi: 399}) || be.Check.Inter.D() != 30*time.Second ||
		be.Check.Timeout.D() != 10*time.Second || len(be.Servers) != 6 {
		t.Fatalf("backend: got balance %s, retries %d, check %+v, %d servers", be.Balance, be.Retries, be.Check, len(be.Servers))
	}
	if s := be.Servers[5]; s.Address != "10.10.10.6:81" || s.SendProxy != config.SendProxyNone || !s.Check {
		t.Errorf("server 6: got %+v", s)
	}
	// Every HAProxy line without an equivalent, by number: the process
	// settings systemd takes over (chroot, pidfile, user, group, daemon)
	// and dontlognull.
	want := []int{5, 6, 8, 9, 10, 17}
	if got := warnedLines(res); !slices.Equal(got, want) {
		t.Errorf("warned lines: got %v, want %v\n%v", got, want, res.Warnings)
	}
	if !strings.Contains(string(res.TOML), "line 19, option forwardfor except 127.0.0.0/8, is replaced by line 33") {
		t.Errorf("the translation does not say the defaults' except is replaced:\n%s", res.TOML)
	}
}

func cdur(d time.Duration) config.Duration { return config.Duration(d) }

// TestTranslateHTTP: the HTTP path's pieces one by one, and HTTP settings
// on a mode tcp proxy named as untranslated.
func TestTranslateHTTP(t *testing.T) {
	text := `defaults
    mode http
    option forwardfor except 10.0.0.0/8
    timeout http-request 5s
frontend web
    bind 127.0.0.1:8080
    capture request header X-Dovecot-Reason len 2000
    capture response header Server len 20
    capture cookie SID len 10
    option http-keep-alive
    http-request deny if { src 192.0.2.1 }
    default_backend store
backend store
    balance leastconn
    option forwardfor except 192.168.0.0/16 header X-Real-IP
    option httpchk HEAD /health
    http-check expect status 204
    timeout queue 30s
    server a 10.1.0.1:81 check inter 2s send-proxy
frontend mail
    mode tcp
    bind :::143 v6only
    option forwardfor
    timeout queue 5s
    default_backend imapb
backend imapb
    mode tcp
    server m 10.0.0.11:143
`
	res := translate(t, text)
	c := mustCheck(t, res)
	fe := c.Frontends["web"]
	if fe.Protocol != config.ProtocolHTTP || fe.Timeouts.Request.D() != 5*time.Second || fe.Timeouts.Queue.D() != 30*time.Second {
		t.Errorf("web: got protocol %s, request %s, queue %s; want http, 5s, 30s", fe.Protocol, fe.Timeouts.Request, fe.Timeouts.Queue)
	}
	h := fe.HTTP
	if !h.ForwardFor || !slices.Equal(h.ForwardForExcept, []string{"10.0.0.0/8", "192.168.0.0/16"}) || h.ServerClose ||
		!slices.Equal(h.Capture, []config.Capture{{Name: "X-Dovecot-Reason", Len: 1024}}) {
		t.Errorf("web http: got %+v; want forwardfor with both except networks (the frontend's inherited, the backend's own), keep-alive, one capture of 1024", h)
	}
	be := c.Backends["store"]
	if be.Balance != config.BalanceLeastConn || be.Check.HTTPMethod != "HEAD" || be.Check.HTTPPath != "/health" ||
		be.Check.ExpectStatus != (config.StatusRange{Lo: 204, Hi: 204}) || be.Servers[0].SendProxy != config.SendProxyNone {
		t.Errorf("store: got %+v %+v", be.Check, be.Servers[0])
	}
	if m := c.Frontends["mail"]; m.Protocol != config.ProtocolIMAP || m.HTTP != nil || !slices.Equal(m.Bind, []string{"[::]:143"}) {
		t.Errorf("mail: got protocol %s, http %+v, bind %v; want imap, none, only [::]:143 (v6only)", m.Protocol, m.HTTP, m.Bind)
	}
	for line, want := range map[int]string{
		7:  "written as 1024",
		8:  "request headers only",
		9:  "request headers only",
		11: "no HTTP rules",
		15: "header X-Real-IP",
		19: "send-proxy on an HTTP backend",
		23: "only mode http frontends become maildirector's HTTP path",
		24: "queues no mail sessions",
		3:  "only mode http frontends become", // inherited by the mode tcp frontend
		4:  "only mode http frontends become",
	} {
		if w := warning(res, line); !strings.Contains(w, want) {
			t.Errorf("line %d: got %q, want %q", line, w, want)
		}
	}
}

// TestTranslateSeedMail: the seed page's POP3 frontend and POP3 and LMTP
// backends: pop3 from the frontend's name on a non-standard port,
// leastconn, allbackups, check inter, no PROXY header (HAProxy sent none).
func TestTranslateSeedMail(t *testing.T) {
	data, err := os.ReadFile("testdata/seed-mail.cfg")
	if err != nil {
		t.Fatal(err)
	}
	res := translate(t, string(data))
	c := mustCheck(t, res)
	fe := c.Frontends["front_dc_pop3"]
	if fe == nil || fe.Protocol != config.ProtocolPOP3 || !slices.Equal(fe.Bind, []string{"0.0.0.0:1110"}) || fe.Backend != "back_dc_pop3" {
		t.Fatalf("frontend: got %+v", fe)
	}
	for _, name := range []string{"back_dc_pop3", "back_dc_lmtp"} {
		be := c.Backends[name]
		if be.Balance != config.BalanceLeastConn || !be.AllBackups || be.Check.Type != config.CheckTypeTCP || be.Check.Inter.D().String() != "5s" || be.ErrorLimit != 0 || be.Retries != 3 {
			t.Errorf("%s: got %+v", name, be)
		}
		for _, s := range be.Servers {
			if s.SendProxy != config.SendProxyNone {
				t.Errorf("%s server %s: got send_proxy %s, want none (HAProxy sent no header)", name, s.Name, s.SendProxy)
			}
		}
	}
	if got := c.Backends["back_dc_lmtp"].Servers[1].DialAddress(config.ProtocolLMTP); got != "10.41.1.116:24" {
		t.Errorf("lmtp server: got %s", got)
	}
	if got, want := warnedLines(res), []int{4, 8, 15}; !slices.Equal(got, want) {
		t.Errorf("warned lines: got %v, want %v\n%v", got, want, res.Warnings)
	}
	if w := warning(res, 4); !strings.Contains(w, "STARTTLS") {
		t.Errorf("bind :1110: got %q, want the STARTTLS note", w)
	}
	if w := warning(res, 8); !strings.Contains(w, "redispatch") {
		t.Errorf("backend without redispatch: got %q", w)
	}
}

// TestTranslateServers: every server option maildirector has, and the
// ones it has not, by line.
func TestTranslateServers(t *testing.T) {
	text := `defaults
    mode tcp
    timeout connect 4s
    timeout client 2h
    timeout server 2h
    option redispatch
    retries 20
    default-server inter 3s fall 4
frontend imap
    bind 10.0.0.5:143
    default_backend mail
backend mail
    balance source
    timeout check 1500ms
    server m1 10.0.0.11:10143 check rise 3 port 10143 addr 10.0.1.11 weight 50 maxconn 500 send-proxy-v2-ssl observe layer4 error-limit 5 on-marked-down shutdown-sessions
    server m2 10.0.0.12:10143 check rise 3 port 10143 addr 10.0.1.11 send-proxy-v2 disabled ssl verify none
    server m3 [2001:db8::13]:10143 check inter 9s send-proxy backup cookie m3 slowstart 30s
    server m4 10.0.0.14 send-proxy-v2-ssl-cn
    server m:5 10.0.0.15:10143 bogus-flag
`
	res := translate(t, text)
	c := mustCheck(t, res)
	be := c.Backends["mail"]
	ck := be.Check
	if be.Balance != config.BalanceSource || be.Retries != 10 || be.ErrorLimit != 5 || be.OnMarkedDown != config.OnMarkedDownShutdownSessions {
		t.Errorf("backend: got %+v", be)
	}
	if ck.Type != config.CheckTypeTCP || ck.Inter.D().String() != "3s" || ck.Fall != 4 || ck.Rise != 3 || ck.Port != 10143 || ck.Address != "10.0.1.11" || ck.Timeout.D().String() != "1.5s" {
		t.Errorf("check: got %+v", ck)
	}
	type srv struct {
		name, addr, proxy, state string
		weight, maxconn          int
		backup, check, tls, ver  bool
	}
	var got []srv
	for _, s := range be.Servers {
		got = append(got, srv{s.Name, s.Address, string(s.SendProxy), string(s.State), s.Weight, s.MaxConn, s.Backup, s.Check, s.TLS.Enabled, s.TLS.Verify})
	}
	want := []srv{
		{"m1", "10.0.0.11:10143", "v2-ssl", "ready", 50, 500, false, true, false, true},
		{"m2", "10.0.0.12:10143", "v2", "maint", 1, 0, false, true, true, false},
		{"m3", "[2001:db8::13]:10143", "v1", "ready", 1, 0, true, true, false, true},
		{"m4", "10.0.0.14:143", "v2-ssl", "ready", 1, 0, false, false, false, true},
		{"m_5", "10.0.0.15:10143", "none", "ready", 1, 0, false, false, false, true},
	}
	if !slices.Equal(got, want) {
		t.Errorf("servers:\ngot  %+v\nwant %+v", got, want)
	}
	if fe := c.Frontends["imap"]; fe.Protocol != config.ProtocolIMAP || fe.Timeouts.Idle.D().String() != "2h0m0s" || fe.Timeouts.Connect.D().String() != "4s" || fe.Timeouts.ServerLogin.D().String() != "5m0s" {
		t.Errorf("frontend: got %+v timeouts %+v", fe, fe.Timeouts)
	}
	for line, want := range map[int]string{
		5:  "at most 5m",                     // timeout server 2h → server_login 5m
		7:  "at most 10 other servers",       // retries 20
		10: "STARTTLS",                       // bind 143 without ssl
		17: "check settings differ",          // m3's inter
		18: "without the client certificate", // -cn
		19: "bogus-flag",
	} {
		if w := warning(res, line); !strings.Contains(w, want) {
			t.Errorf("line %d: got %q, want %q", line, w, want)
		}
	}
	if w := warning(res, 17); !strings.Contains(w, "cookie m3") || !strings.Contains(w, "slowstart 30s") {
		t.Errorf("line 17: got %q, want cookie and slowstart named", w)
	}
	if w := warning(res, 19); !strings.Contains(w, `named "m_5"`) {
		t.Errorf("line 19: got %q, want the renaming said", w)
	}
}

// TestTranslateFrontends: TLS termination, passthrough, accept-proxy,
// use_backend and ACLs, an IMAP idle timeout raised to 30m, listen
// sections, the statistics page and sections with no equivalent.
func TestTranslateFrontends(t *testing.T) {
	dir := t.TempDir()
	cert, key, err := tlsutil.WriteSelfSigned(dir, "localhost")
	if err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := os.ReadFile(key)
	combined := dir + "/combined.pem"
	if err := os.WriteFile(combined, append(pem, keyPEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	text := `global
    stats socket /run/haproxy/admin.sock mode 660 level admin
    ssl-default-bind-ciphers ECDHE
userlist admins
    user admin insecure-password x
defaults
    timeout client 1m
frontend imaps
    bind :::993 ssl crt ` + combined + ` ssl-min-ver TLSv1.2 accept-proxy
    acl internal src 10.0.0.0/8
    use_backend mail if internal
    default_backend mail
frontend pop3s_passthrough
    bind *:995
    default_backend mail
frontend lmtp_in
    bind 127.0.0.1:2424
    use_backend mail
listen submission
    bind 0.0.0.0:587
    server s1 10.0.0.11:587 check
listen stats
    bind 127.0.0.1:8404
    mode http
    stats enable
    stats uri /
    stats refresh 10s
    stats auth admin:secret
    stats admin if TRUE
frontend orphan
    bind :1234
    default_backend nowhere
backend mail
    server m1 10.0.0.11 check
`
	res := translate(t, text)
	c := mustCheck(t, res)
	imaps := c.Frontends["imaps"]
	if imaps.Protocol != config.ProtocolIMAP || imaps.TLS.Mode != config.TLSModeImplicit || len(imaps.TLS.Certs) != 1 ||
		imaps.TLS.Certs[0].Cert != combined || imaps.TLS.Certs[0].Key != combined || !slices.Equal(imaps.Bind, []string{"0.0.0.0:993", "[::]:993"}) ||
		imaps.TLS.MinVersion != "1.2" || !slices.Equal(imaps.TrustedProxies, []string{"0.0.0.0/0", "::/0"}) {
		t.Errorf("imaps: got %+v", imaps)
	}
	if got := imaps.Timeouts.Idle.D().String(); got != "30m0s" {
		t.Errorf("imaps idle from timeout client 1m: got %s, want 30m (IMAP IDLE)", got)
	}
	if p := c.Frontends["pop3s_passthrough"]; p.Protocol != config.ProtocolTCP {
		t.Errorf("995 without ssl: got protocol %s, want tcp (TLS passes through)", p.Protocol)
	}
	if l := c.Frontends["lmtp_in"]; l.Protocol != config.ProtocolLMTP || l.Backend != "mail" {
		t.Errorf("lmtp_in: got %+v", l)
	}
	if s := c.Frontends["submission"]; s.Protocol != config.ProtocolSubmission || s.Backend != "submission" || len(c.Backends["submission"].Servers) != 1 {
		t.Errorf("listen submission: got %+v", s)
	}
	if _, ok := c.Frontends["orphan"]; ok {
		t.Error("a frontend whose backend is undefined was translated")
	}
	if c.Stats.Bind != "127.0.0.1:8404" || !slices.Equal(c.Stats.Auth, []string{"admin:secret"}) || !c.Stats.Admin || c.Stats.Refresh.D().String() != "10s" {
		t.Errorf("stats: got %+v", c.Stats)
	}
	if c.Control.Socket != "/run/haproxy/admin.sock" || c.Control.Mode != "0660" {
		t.Errorf("control: got %+v", c.Control)
	}
	if got := c.Backends["mail"].Servers[0].Address; got != "10.0.0.11:993" {
		t.Errorf("server without port: got %s, want the port of the first frontend using it (993), as HAProxy connects", got)
	}
	for line, want := range map[int]string{
		3:  "ssl-default-bind-ciphers",
		4:  "userlist",
		5:  "in section userlist",
		7:  "IDLE",
		9:  "accept-proxy",
		10: "ACLs",
		11: "frontend.NAME.route",
		14: "", // pop3s: a comment in the TOML, no warning
		18: "frontend.NAME.route",
		30: "not defined",
	} {
		w := warning(res, line)
		if want == "" {
			if w != "" {
				t.Errorf("line %d: got warning %q, want none", line, w)
			}
			continue
		}
		if !strings.Contains(w, want) {
			t.Errorf("line %d: got %q, want %q", line, w, want)
		}
	}
}

// TestTOMLQuoting: names and values that TOML must quote or escape.
func TestTOMLQuoting(t *testing.T) {
	if got := quote("a\"b\\c\x01d\u00e9"); got != `"a\"b\\c\u0001dé"` {
		t.Errorf("quote: got %s", got)
	}
	res := translate(t, "frontend \"f e\"\n bind 127.0.0.1:143\n default_backend b\nbackend b\n server \"s\\\"1\" 10.0.0.1:143\n")
	var m map[string]any
	if _, err := toml.Decode(string(res.TOML), &m); err != nil {
		t.Fatalf("not TOML: %v\n%s", err, res.TOML)
	}
	mustCheck(t, res)
}

func FuzzTranslate(f *testing.F) {
	for _, name := range []string{"testdata/seed-sample.cfg", "testdata/seed-mail.cfg"} {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(string(data))
		}
	}
	f.Add("frontend a\n bind :143 ssl crt x\n use_backend b\nbackend b\n server s 1.2.3.4 check weight 3 send-proxy\nlisten stats\n bind :1\n stats enable\n")
	f.Add("global\n log /dev/log local0 info\n stats socket /s mode 600\ndefaults\n timeout client 1d\n option httpchk GET /x\n")
	f.Add("defaults\n mode http\n option forwardfor except 10.0.0.0/8 header X\nfrontend w\n bind :::80 v6only\n capture request header A\"b len 9\n option forwardfor\n timeout http-keep-alive 1s\n default_backend s\nbackend s\n option http-server-close\n timeout queue 5s\n server a 1.2.3.4:81 check\n")
	f.Fuzz(func(t *testing.T, text string) {
		pf, err := Parse(strings.NewReader(text))
		if err != nil {
			return
		}
		res := Translate(pf)
		var m map[string]any
		if _, err := toml.Decode(string(res.TOML), &m); err != nil {
			t.Fatalf("the translation is not TOML: %v\n%s", err, res.TOML)
		}
		for _, w := range res.Warnings {
			if w.Line < 1 || w.Why == "" {
				t.Fatalf("warning without a line or a reason: %+v", w)
			}
		}
	})
}
