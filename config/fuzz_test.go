package config

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics and that a nil error always
// comes with a Config (and an error never does).
func FuzzParse(f *testing.F) {
	f.Add([]byte(baseConfig))
	f.Add([]byte(fullConfig))
	if data, err := os.ReadFile("../etc/maildirector.toml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("[frontend.a]\nprotocol = \"tcp\"\nbind = [\"[::]:1\"]\nbackend = \"b\"\n[backend.b]\nbalance = \"source\"\nserver = [{name = \"x\", address = \"[::1]:2\", ports = {tcp = 3}}]\n"))
	f.Add([]byte("[global.timeouts]\nidle = \"1h\"\n[frontend.\"\"]\n"))
	f.Add([]byte("frontend = 1\nbackend = []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if (c == nil) == (err == nil) {
			t.Fatalf("got Config %v and error %v, want exactly one", c != nil, err)
		}
		if c != nil {
			_ = c.Summary()
			for _, b := range c.Backends {
				for _, s := range b.Servers {
					_ = b.CheckAddress(s)
					_ = s.DialAddress(ProtocolIMAP)
				}
			}
		}
	})
}

// FuzzStatusRange checks that a status range that parses prints back as
// text that parses to the same range, of three-digit statuses.
func FuzzStatusRange(f *testing.F) {
	for _, s := range []string{"200", "200-399", " 204 ", "2xx", "399-200", "", "-", "999-000", "007"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var r StatusRange
		if err := r.UnmarshalText([]byte(s)); err != nil {
			return
		}
		if r.Lo < 0 || r.Lo > 999 || r.Hi < 0 || r.Hi > 999 {
			t.Fatalf("%q: got %v, want three-digit statuses", s, r)
		}
		var again StatusRange
		if err := again.UnmarshalText([]byte(r.String())); err != nil || again != r {
			t.Fatalf("%q: %v printed %q, which parses to %v, %v", s, r, r.String(), again, err)
		}
	})
}

// FuzzHTTPCapture checks the capture list of an http frontend: Parse
// never panics, and a configuration it accepts captures only header
// names that are HTTP tokens, each once, with a length in range.
func FuzzHTTPCapture(f *testing.F) {
	f.Add("X-Dovecot-Reason", int64(40), "X-Dovecot-Username", int64(40))
	f.Add("A", int64(1), "a", int64(1024))
	f.Add("", int64(0), "X Y", int64(-1))
	f.Add("X\"", int64(5000), "é", int64(40))
	f.Add("X Y", int64(40), "A", int64(1))
	f.Fuzz(func(t *testing.T, n1 string, l1 int64, n2 string, l2 int64) {
		text := fmt.Sprintf("[frontend.web]\nprotocol = \"http\"\nbind = [\"127.0.0.1:81\"]\nbackend = \"store\"\n[frontend.web.http]\ncapture = [{name = %q, len = %d}, {name = %q, len = %d}]\n[backend.store]\n[[backend.store.server]]\nname = \"s\"\naddress = \"127.0.0.1:80\"\n", n1, l1, n2, l2)
		c, err := Parse([]byte(text))
		if (c == nil) == (err == nil) {
			t.Fatalf("got Config %v and error %v, want exactly one", c != nil, err)
		}
		if c == nil {
			return
		}
		seen := map[string]bool{}
		for _, cp := range c.Frontends["web"].HTTP.Capture {
			if !isToken(cp.Name) || cp.Len < 1 || cp.Len > maxCaptureLen || seen[strings.ToLower(cp.Name)] {
				t.Fatalf("accepted capture %+v of %q", cp, text)
			}
			seen[strings.ToLower(cp.Name)] = true
		}
	})
}

// FuzzRouteValues checks that a route's domain, sni and local values never
// panic the parsers, and that a value that parses prints back (as
// route.Name and route.Local do) as text that parses to the same value.
func FuzzRouteValues(f *testing.F) {
	for _, s := range []string{"example.org", "*.Example.org.", "*.", ".x", "a*b", "ann@x", ":993", "192.0.2.1", "[::1]:143", "[::ffff:1.2.3.4]:1", "fe80::1%lo", ":0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseNamePattern(s); err == nil {
			text := n.Name
			if n.Suffix {
				text = "*" + n.Name
			}
			if back, err := ParseNamePattern(text); err != nil || back != n {
				t.Fatalf("%q parsed as %+v, printed as %q, parsed back as %+v, %v", s, n, text, back, err)
			}
		}
		if l, err := ParseLocalAddr(s); err == nil {
			var text string
			switch {
			case !l.Addr.IsValid():
				text = fmt.Sprintf(":%d", l.Port)
			case l.Port == 0:
				text = l.Addr.String()
			default:
				text = netip.AddrPortFrom(l.Addr, l.Port).String()
			}
			if back, err := ParseLocalAddr(text); err != nil || back != l {
				t.Fatalf("%q parsed as %+v, printed as %q, parsed back as %+v, %v", s, l, text, back, err)
			}
		}
	})
}
