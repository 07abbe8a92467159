package main

import (
	"testing"
	"time"

	"github.com/maildirector/maildirector/config"
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
