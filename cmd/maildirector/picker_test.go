package main

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/tlsutil"
)

// routedConfig: an imap frontend on two ports whose rules send b.example
// users, SNI imap.b.example, its second port and 10.0.0.0/8 to mail-b
// (one retry less than mail-a), everyone else to mail-a; both backends
// name their server s1.
const routedConfig = `
[frontend.imap]
protocol = "imap"
bind = ["127.0.0.1:143", "127.0.0.1:10143"]
backend = "mail-a"
[frontend.imap.tls]
mode = "starttls"
[[frontend.imap.tls.cert]]
cert = "CERT"
key = "KEY"
[[frontend.imap.route]]
backend = "mail-b"
domain = ["b.example"]
[[frontend.imap.route]]
backend = "mail-b"
sni = ["imap.b.example"]
[[frontend.imap.route]]
backend = "mail-b"
local = [":10143"]
[[frontend.imap.route]]
backend = "mail-b"
client = ["10.0.0.0/8"]

[backend.mail-a]
retries = 2
[[backend.mail-a.server]]
name = "s1"
address = "127.0.0.1:1143"
[[backend.mail-a.server]]
name = "s2"
address = "127.0.0.1:1144"

[backend.mail-b]
retries = 0
[[backend.mail-b.server]]
name = "s1"
address = "127.0.0.1:2143"
[[backend.mail-b.server]]
name = "s2"
address = "127.0.0.1:2144"
`

func routedRouter(t *testing.T) (*router, int) {
	t.Helper()
	cert, key, err := tlsutil.WriteSelfSigned(t.TempDir(), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(strings.NewReplacer(`"CERT"`, strconv.Quote(cert), `"KEY"`, strconv.Quote(key)).Replace(routedConfig)))
	if err != nil {
		t.Fatal(err)
	}
	backends := map[string]*backendBuild{}
	for name, bc := range cfg.Backends {
		bb, err := buildBackend(bc, nil, &backendEnv{log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		backends[name] = bb
	}
	r, retries, err := newRouter(cfg.Frontends["imap"], backends)
	if err != nil {
		t.Fatal(err)
	}
	return r, retries
}

// TestRouterPicks: each pick goes to the backend the first matching rule
// names, else the frontend's; the lease's target names its backend.
func TestRouterPicks(t *testing.T) {
	r, retries := routedRouter(t)
	if retries != 2 {
		t.Errorf("engine retries: got %d, want 2 (the most of mail-a and mail-b)", retries)
	}
	ap := netip.MustParseAddrPort
	lo, lo2 := ap("127.0.0.1:143"), ap("127.0.0.1:10143")
	for _, tc := range []struct {
		name string
		req  proxy.PickRequest
		want string
	}{
		{"default", proxy.PickRequest{User: "ann@a.example", Local: lo, Client: ap("192.0.2.1:1")}, "mail-a"},
		{"domain", proxy.PickRequest{User: "bob@b.example", Local: lo, Client: ap("192.0.2.1:1")}, "mail-b"},
		{"sni", proxy.PickRequest{User: "ann@a.example", SNI: "imap.b.example", Local: lo}, "mail-b"},
		{"local port", proxy.PickRequest{User: "ann@a.example", Local: lo2}, "mail-b"},
		{"client", proxy.PickRequest{User: "ann@a.example", Local: lo, Client: ap("10.1.1.1:1")}, "mail-b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := r.Pick(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Release()
			if got := l.Target(); got.Backend != tc.want {
				t.Errorf("got %s (%s), want backend %s", got.Name(), got.Address, tc.want)
			}
		})
	}
}

// TestRouterRetriesPerBackend: a login that failed on one server tries
// another of the same backend only as often as that backend's retries say.
func TestRouterRetriesPerBackend(t *testing.T) {
	r, _ := routedRouter(t)
	ctx := context.Background()
	l, err := r.Pick(ctx, proxy.PickRequest{User: "ann@a.example", Exclude: []string{"s1"}})
	if err != nil {
		t.Fatalf("mail-a (retries 2), one server tried: %v", err)
	}
	if got := l.Target(); got.Backend != "mail-a" || got.Server != "s2" {
		t.Errorf("got %s, want mail-a/s2", got.Name())
	}
	l.Release()
	_, err = r.Pick(ctx, proxy.PickRequest{User: "bob@b.example", Exclude: []string{"s1"}})
	if !errors.Is(err, proxy.ErrUnavailable) {
		t.Errorf("mail-b (retries 0), one server tried: got %v, want ErrUnavailable", err)
	}
}
