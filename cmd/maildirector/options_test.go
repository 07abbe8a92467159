package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/maildirector/maildirector/config"
	httpfe "github.com/maildirector/maildirector/protocols/http"
	"github.com/maildirector/maildirector/tlsutil"
)

// TestLMTPWaitsIdleNotPreauth: an MTA's LMTP connection waits for its next
// command as long as timeouts.idle says (5m unless set, RFC 5321 section
// 4.5.3.2.7), not the pre-login preauth timeout of the login protocols.
func TestLMTPWaitsIdleNotPreauth(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		want  time.Duration
	}{
		{name: "default", want: 5 * time.Minute},
		{name: "frontend idle", extra: "[frontend.lmtp.timeouts]\nidle = \"2m\"\npreauth = \"3s\"\n", want: 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(`
[global.timeouts]
preauth = "10s"
[frontend.lmtp]
protocol = "lmtp"
bind = ["127.0.0.1:1024"]
backend = "d"
hostname = "mx.example.org"
` + tt.extra + `
[backend.d]
[[backend.d.server]]
name = "s"
address = "127.0.0.1"
`))
			if err != nil {
				t.Fatal(err)
			}
			if got := lmtpOptions(cfg.Frontends["lmtp"], nil).ClientTimeout; got != tt.want {
				t.Errorf("ClientTimeout: got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestHTTPOptions: the http table and the HAProxy-style timeouts reach the
// frontend, with config's zeros that mean none spelled as the runtime's
// none, and an empty capture list kept empty (not the default).
func TestHTTPOptions(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		check func(t *testing.T, o httpfe.Options)
	}{
		{"defaults", "", func(t *testing.T, o httpfe.Options) {
			if len(o.Capture) != 3 || o.Capture[2] != (httpfe.Capture{Name: "X-Dovecot-Session-Id", Len: 70}) || o.ReasonHeader != "X-Dovecot-Reason" {
				t.Errorf("capture: got %v, reason header %q", o.Capture, o.ReasonHeader)
			}
			if o.ReplayBuffer != 128<<10 || o.MaxIdlePerServer != 64 || o.ForwardFor || o.Backend != "store" {
				t.Errorf("got %+v", o)
			}
			want := httpfe.Timeouts{Request: time.Minute, Queue: time.Minute, Connect: 10 * time.Second, Client: time.Minute, Server: time.Minute, KeepAlive: 10 * time.Minute}
			if o.Timeouts != want {
				t.Errorf("timeouts: got %+v, want %+v", o.Timeouts, want)
			}
		}},
		{"set", "[frontend.web.http]\nforwardfor = true\nforwardfor_except = [\"127.0.0.0/8\", \"::1\"]\ncapture = []\nreplay_buffer = 0\nmax_idle_per_server = 0\nmax_requests = 100\nserver_close = true\n", func(t *testing.T, o httpfe.Options) {
			if o.Capture == nil || len(o.Capture) != 0 {
				t.Errorf("capture = []: got %#v, want empty and not nil (nil is the default)", o.Capture)
			}
			if o.ReplayBuffer >= 0 || o.MaxIdlePerServer >= 0 {
				t.Errorf("0 = none: got replay %d, idle %d, want negative", o.ReplayBuffer, o.MaxIdlePerServer)
			}
			if !o.ForwardFor || len(o.ForwardForExcept) != 2 || o.ForwardForExcept[1].String() != "::1/128" || o.MaxRequests != 100 || !o.ServerClose {
				t.Errorf("got %+v", o)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(`
[global.timeouts]
connect = "10s"
[frontend.web]
protocol = "http"
bind = ["127.0.0.1:1081"]
backend = "store"
` + tt.extra + `
[backend.store]
[[backend.store.server]]
name = "s"
address = "127.0.0.1:81"
`))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, httpOptions(cfg.Frontends["web"], nil, nil))
		})
	}
}

// TestTLSCurvesOptions: frontend.NAME.tls.curves reaches the listener's
// tls.Config; without it Go's defaults stay (no list).
func TestTLSCurvesOptions(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM, err := tlsutil.SelfSigned("mail.test")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := os.WriteFile(certFile, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		curves string
		want   []tls.CurveID
	}{
		{"", nil},
		{`curves = ["P-256", "X25519"]`, []tls.CurveID{tls.CurveP256, tls.X25519}},
	} {
		cfg, err := config.Parse([]byte(fmt.Sprintf(`
[frontend.imaps]
protocol = "imap"
bind = ["127.0.0.1:1993"]
backend = "d"
[frontend.imaps.tls]
mode = "implicit"
%s
[[frontend.imaps.tls.cert]]
cert = %q
key = %q
[backend.d]
[[backend.d.server]]
name = "s"
address = "127.0.0.1"
`, tt.curves, certFile, keyFile)))
		if err != nil {
			t.Fatal(err)
		}
		fe, err := frontendOptions(cfg.Frontends["imaps"], 0)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(fe.TLS.CurvePreferences, tt.want) {
			t.Errorf("%q: CurvePreferences %v, want %v", tt.curves, fe.TLS.CurvePreferences, tt.want)
		}
	}
}
