package config

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// routeConfig has an imap frontend (STARTTLS, on two ports) whose rules
// send sessions to backends a and b; RULES is replaced by more rules, TCP
// by a tcp frontend's.
const routeConfig = `
[frontend.imap]
protocol = "imap"
bind = ["127.0.0.1:143", "0.0.0.0:10143"]
backend = "a"
[frontend.imap.tls]
mode = "starttls"
[[frontend.imap.tls.cert]]
cert = "CERT"
key = "KEY"
[[frontend.imap.route]]
backend = "b"
domain = ["b.example", "*.b.example"]
[[frontend.imap.route]]
backend = "b"
sni = ["IMAP.B.example"]
local = [":10143", "127.0.0.1:143", "127.0.0.1"]
client = ["10.0.0.0/8", "192.0.2.1"]
RULES

[frontend.relay]
protocol = "tcp"
bind = ["127.0.0.1:8080"]
backend = "web"
TCP

[backend.a]
[[backend.a.server]]
name = "s1"
address = "127.0.0.1:1143"

[backend.b]
master_user_separator = "*"
[[backend.b.server]]
name = "s1"
address = "127.0.0.1:2143"

[backend.web]
balance = "roundrobin"
[[backend.web.server]]
name = "w1"
address = "127.0.0.1:8081"
`

func routeText(t *testing.T, rules, tcp string) string {
	t.Helper()
	return withCert(t, strings.NewReplacer("RULES", rules, "TCP", tcp).Replace(routeConfig))
}

func TestRoutes(t *testing.T) {
	c := mustParse(t, routeText(t, "", ""))
	f := c.Frontends["imap"]
	if got, want := f.Backends(), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("Backends: got %q, want %q", got, want)
	}
	r := f.Route[1]
	if got, want := f.Route[0].DomainPatterns(), []NamePattern{{Name: "b.example"}, {Name: ".b.example", Suffix: true}}; !slices.Equal(got, want) {
		t.Errorf("domain: got %v, want %v", got, want)
	}
	if got, want := r.SNIPatterns(), []NamePattern{{Name: "imap.b.example"}}; !slices.Equal(got, want) {
		t.Errorf("sni: got %v, want %v", got, want)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	if got, want := r.LocalAddrs(), []LocalAddr{{Port: 10143}, {Addr: lo, Port: 143}, {Addr: lo}}; !slices.Equal(got, want) {
		t.Errorf("local: got %v, want %v", got, want)
	}
	if got, want := r.ClientPrefixes(), []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.1/32")}; !slices.Equal(got, want) {
		t.Errorf("client: got %v, want %v", got, want)
	}
	// A backend only a rule names serves the frontend's protocol: its
	// check follows it.
	if got := c.Backends["b"].Protocols; !slices.Equal(got, []Protocol{ProtocolIMAP}) {
		t.Errorf("backend b protocols: got %v, want [imap]", got)
	}
	if got := c.Backends["b"].Check.Type; got != CheckTypeIMAP {
		t.Errorf("backend b check: got %q, want imap", got)
	}
}

func TestRoutesInvalid(t *testing.T) {
	tests := []struct {
		name, rules, tcp, key, msg string
	}{
		{"unknown backend", "[[frontend.imap.route]]\nbackend = \"c\"\nclient = [\"10.0.0.0/8\"]", "", "frontend.imap.route[2].backend", `backend "c" is not defined`},
		{"no backend", "[[frontend.imap.route]]\nclient = [\"10.0.0.0/8\"]", "", "frontend.imap.route[2].backend", "required"},
		{"empty rule", "[[frontend.imap.route]]\nbackend = \"b\"", "", "frontend.imap.route[2]", "matches every session"},
		{"bad cidr", "[[frontend.imap.route]]\nbackend = \"b\"\nclient = [\"10.0.0.0/33\"]", "", "frontend.imap.route[2].client[0]", "not a CIDR"},
		{"bad domain", "[[frontend.imap.route]]\nbackend = \"b\"\ndomain = [\"a..example\"]", "", "frontend.imap.route[2].domain[0]", "not a domain"},
		{"dot suffix", "[[frontend.imap.route]]\nbackend = \"b\"\ndomain = [\".example.org\"]", "", "frontend.imap.route[2].domain[0]", `write "*.example.org"`},
		{"star inside", "[[frontend.imap.route]]\nbackend = \"b\"\nsni = [\"mail.*.example\"]", "", "frontend.imap.route[2].sni[0]", "'*' only as the first label"},
		{"user in domain", "[[frontend.imap.route]]\nbackend = \"b\"\ndomain = [\"ann@example.org\"]", "", "frontend.imap.route[2].domain[0]", "without the user"},
		{"bad local", "[[frontend.imap.route]]\nbackend = \"b\"\nlocal = [\"localhost:143\"]", "", "frontend.imap.route[2].local[0]", `write "IP:port"`},
		{"local port range", "[[frontend.imap.route]]\nbackend = \"b\"\nlocal = [\":0\"]", "", "frontend.imap.route[2].local[0]", "port out of range"},
		{"local not bound", "[[frontend.imap.route]]\nbackend = \"b\"\nlocal = [\"127.0.0.2:143\"]", "", "frontend.imap.route[2].local[0]", "none of the frontend's bind addresses"},
		{"local port not bound", "[[frontend.imap.route]]\nbackend = \"b\"\nlocal = [\":993\"]", "", "frontend.imap.route[2].local[0]", "none of the frontend's bind addresses"},
		{"unknown key", "[[frontend.imap.route]]\nbackend = \"b\"\nuser = [\"x\"]", "", "frontend.imap.route[2].user", "unknown"},
		{"domain on tcp", "", "[[frontend.relay.route]]\nbackend = \"web\"\ndomain = [\"example.org\"]", "frontend.relay.route[0].domain", "no user name"},
		{"sni without tls", "", "[[frontend.relay.route]]\nbackend = \"web\"\nsni = [\"example.org\"]", "frontend.relay.route[0].sni", "never matches"},
		{"tcp to a user backend", "", "[[frontend.relay.route]]\nbackend = \"a\"\nclient = [\"10.0.0.0/8\"]", "backend.a.balance", "needs a protocol with a login"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(routeText(t, tt.rules, tt.tcp)))
			msgs := keyErrors(t, err)[tt.key]
			if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, tt.msg) }) {
				t.Errorf("got problems\n%v\nwant %q at %s", err, tt.msg, tt.key)
			}
		})
	}
}

func TestParseNamePattern(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want NamePattern
		err  bool
	}{
		{"Example.ORG", NamePattern{Name: "example.org"}, false},
		{"example.org.", NamePattern{Name: "example.org"}, false},
		{"*.example.org", NamePattern{Name: ".example.org", Suffix: true}, false},
		{"*", NamePattern{}, true},
		{"*.", NamePattern{}, true},
		{"", NamePattern{}, true},
		{"**.example.org", NamePattern{}, true},
		{"exa mple.org", NamePattern{}, true},
		{"192.0.2.1", NamePattern{}, true},
		{"fe80::1%.", NamePattern{}, true},
	} {
		got, err := ParseNamePattern(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParseNamePattern(%q): got %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestParseLocalAddr(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want LocalAddr
		err  bool
	}{
		{":993", LocalAddr{Port: 993}, false},
		{"192.0.2.1", LocalAddr{Addr: netip.MustParseAddr("192.0.2.1")}, false},
		{"192.0.2.1:143", LocalAddr{Addr: netip.MustParseAddr("192.0.2.1"), Port: 143}, false},
		{"[2001:db8::1]:143", LocalAddr{Addr: netip.MustParseAddr("2001:db8::1"), Port: 143}, false},
		{"2001:db8::1", LocalAddr{Addr: netip.MustParseAddr("2001:db8::1")}, false},
		{"::1", LocalAddr{Addr: netip.MustParseAddr("::1")}, false},
		{"::", LocalAddr{Addr: netip.MustParseAddr("::")}, false},
		{"[::ffff:192.0.2.1]:143", LocalAddr{Addr: netip.MustParseAddr("192.0.2.1"), Port: 143}, false},
		{"192.0.2.1:0", LocalAddr{}, true},
		{":99999", LocalAddr{}, true},
		{"fe80::1%eth0", LocalAddr{}, true},
		{"mail.example.org:143", LocalAddr{}, true},
	} {
		got, err := ParseLocalAddr(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParseLocalAddr(%q): got %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}
