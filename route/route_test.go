package route

import (
	"net/netip"
	"slices"
	"testing"
)

func table() *Table {
	return &Table{
		Default:         "main",
		MasterSeparator: "*",
		Rules: []Rule{
			{Backend: "b", Domains: []Name{{Name: "b.example"}, {Name: ".b.example", Suffix: true}}},
			{Backend: "tls", SNI: []Name{{Name: "imap.tls.example"}}},
			{Backend: "port", Local: []Local{{Port: 10993}, {Addr: netip.MustParseAddr("127.0.0.9")}}},
			{Backend: "both", Domains: []Name{{Name: "both.example"}}, Client: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			{Backend: "v6", Client: []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")}},
		},
	}
}

func TestRoute(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name    string
		req     Request
		backend string
		rule    int
		matched []string
	}{
		{"no rule matches", Request{User: "ann@a.example", Local: ap("127.0.0.1:143"), Client: ap("127.0.0.2:5000")}, "main", -1, nil},
		{"exact domain", Request{User: "ann@b.example"}, "b", 0, []string{"domain b.example"}},
		{"domain case and trailing dot", Request{User: "Ann@B.Example."}, "b", 0, []string{"domain b.example"}},
		{"suffix domain", Request{User: "ann@x.y.b.example"}, "b", 0, []string{"domain *.b.example"}},
		{"suffix needs a label", Request{User: "ann@xb.example"}, "main", -1, nil},
		{"recipient detail", Request{User: "ann+box@b.example"}, "b", 0, []string{"domain b.example"}},
		{"master login", Request{User: "ann@b.example*admin"}, "b", 0, []string{"domain b.example"}},
		{"master login hides no domain", Request{User: "ann*admin@b.example"}, "main", -1, nil},
		{"no domain", Request{User: "ann"}, "main", -1, nil},
		{"sni", Request{User: "ann@a.example", SNI: "imap.tls.example"}, "tls", 1, []string{"sni imap.tls.example"}},
		{"no sni", Request{User: "ann@a.example"}, "main", -1, nil},
		{"first match wins", Request{User: "ann@b.example", SNI: "imap.tls.example"}, "b", 0, []string{"domain b.example"}},
		{"local port", Request{Local: ap("127.0.0.1:10993")}, "port", 2, []string{"local :10993"}},
		{"local address", Request{Local: ap("127.0.0.9:143")}, "port", 2, []string{"local 127.0.0.9"}},
		{"local mapped v4", Request{Local: ap("[::ffff:127.0.0.9]:143")}, "port", 2, []string{"local 127.0.0.9"}},
		{"all keys must match", Request{User: "ann@both.example", Client: ap("192.0.2.1:1")}, "main", -1, nil},
		{"all keys match", Request{User: "ann@both.example", Client: ap("10.1.2.3:1")}, "both", 3, []string{"domain both.example", "client 10.0.0.0/8"}},
		{"client v6", Request{Client: ap("[2001:db8::1]:1")}, "v6", 4, []string{"client 2001:db8::/32"}},
		{"no client", Request{}, "main", -1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := table().Route(tc.req)
			if d.Backend != tc.backend || d.Rule != tc.rule || !slices.Equal(d.Matched, tc.matched) {
				t.Errorf("got %s rule %d %q, want %s rule %d %q", d.Backend, d.Rule, d.Matched, tc.backend, tc.rule, tc.matched)
			}
		})
	}
}

func TestDecisionString(t *testing.T) {
	if got := (Decision{Backend: "x", Rule: -1}).String(); got != "default" {
		t.Errorf("got %q, want default", got)
	}
	d := Decision{Backend: "x", Rule: 2, Matched: []string{"sni a.example", "local :993"}}
	if got, want := d.String(), "route[2] (sni a.example, local :993)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestBackends(t *testing.T) {
	tb := table()
	tb.Rules = append(tb.Rules, Rule{Backend: "b"}, Rule{Backend: "main"})
	if got, want := tb.Backends(), []string{"main", "b", "tls", "port", "both", "v6"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDomain(t *testing.T) {
	for _, tc := range []struct{ user, sep, want string }{
		{"ann@Example.ORG", "", "example.org"},
		{"a@b@example.org", "", "example.org"},
		{"ann", "", ""},
		{"ann@", "", ""},
		{"ann@example.org*master", "*", "example.org"},
		{"ann@example.org*master", "", "example.org*master"},
	} {
		if got := Domain(tc.user, tc.sep); got != tc.want {
			t.Errorf("Domain(%q, %q): got %q, want %q", tc.user, tc.sep, got, tc.want)
		}
	}
}

func TestExplain(t *testing.T) {
	tb := table()
	for _, tc := range []struct {
		name    string
		req     Request
		u       Unknown
		backend string
		rule    int
		maybe   []int
	}{
		{"all unknown, domain decides", Request{User: "ann@b.example"}, Unknown{true, true, true}, "b", 0, nil},
		{"all unknown, default with maybes", Request{User: "ann@a.example"}, Unknown{true, true, true}, "main", -1, []int{1, 2, 4}},
		{"domain of a rule with client unknown", Request{User: "ann@both.example"}, Unknown{Client: true}, "main", -1, []int{3, 4}},
		{"sni given", Request{User: "ann@a.example", SNI: "imap.tls.example"}, Unknown{Local: true, Client: true}, "tls", 1, nil},
		{"sni given, not matching", Request{User: "ann@a.example", SNI: "other.example"}, Unknown{Local: true, Client: true}, "main", -1, []int{2, 4}},
		{"nothing unknown is Route", Request{User: "ann@a.example", Local: netip.MustParseAddrPort("127.0.0.1:10993")}, Unknown{}, "port", 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, maybe := tb.Explain(tc.req, tc.u)
			if d.Backend != tc.backend || d.Rule != tc.rule || !slices.Equal(maybe, tc.maybe) {
				t.Errorf("got %s rule %d maybe %v, want %s rule %d maybe %v", d.Backend, d.Rule, maybe, tc.backend, tc.rule, tc.maybe)
			}
		})
	}
}

func TestRuleString(t *testing.T) {
	r := table().Rules[0]
	r.Local = []Local{{Addr: netip.MustParseAddr("::1"), Port: 993}, {Port: 143}}
	r.Client = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	if got, want := r.String(), "domain b.example,*.b.example local [::1]:993,:143 client 10.0.0.0/8"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
