package main

import (
	"log/slog"
	"testing"
	"time"

	"github.com/maildirector/maildirector/config"
)

// TestManageSieveFrontendOptions: a managesieve frontend gets the login
// protocols' settings (the login deadline, greeting, plaintext policy,
// attempts), a picker that routes logins, not recipients, and stays on the
// user's server under login_server_down = "tempfail", and dials the
// servers' ManageSieve port.
func TestManageSieveFrontendOptions(t *testing.T) {
	cfg, err := config.Parse([]byte(`
[frontend.sieve]
protocol = "managesieve"
bind = ["127.0.0.1:4190"]
backend = "d"
greeting = "Sieve ready."
plaintext_login = "allow"
max_login_attempts = 4
[frontend.sieve.timeouts]
login = "2m"
[backend.d]
login_server_down = "tempfail"
[[backend.d.server]]
name = "s"
address = "127.0.0.1"
ports = { managesieve = 14190 }
`))
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Frontends["sieve"]
	fe, err := frontendOptions(f, cfg.Backends["d"].Retries)
	if err != nil {
		t.Fatal(err)
	}
	if fe.Timeouts.LoginDeadline != 2*time.Minute {
		t.Errorf("LoginDeadline: got %v, want 2m", fe.Timeouts.LoginDeadline)
	}
	opts := managesieveOptions(f, nil, nil)
	if opts.Greeting != "Sieve ready." || !opts.PlaintextLogin || opts.MaxLoginAttempts != 4 {
		t.Errorf("options: got %+v", opts)
	}
	bb, err := buildBackend(cfg.Backends["d"], nil, &backendEnv{log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := bb.pickerFor(config.ProtocolManageSieve)
	if err != nil {
		t.Fatal(err)
	}
	if p.recipients || !p.stay {
		t.Errorf("picker: got recipients %v stay %v, want logins that stay", p.recipients, p.stay)
	}
	if got := p.targets["s"].Address; got != "127.0.0.1:14190" {
		t.Errorf("target: got %s, want 127.0.0.1:14190", got)
	}
}
