package director

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzNormalizeUser(f *testing.F) {
	for _, s := range []string{"alice", " Bob@Example.COM ", "", "ÉLODIE", "a@", "\t\n",
		"alice+lists@example.org", "+x@y", "a-b+c", "alice*master", "*m", "a b*c@d+e"} {
		f.Add(s, "example.com", "+-", "*", false, true)
		f.Add(s, "", "", "", true, false)
	}
	f.Fuzz(func(t *testing.T, user, domain, delimiters, sep string, recipient, stripLogin bool) {
		if len(sep) > 1 || (sep != "" && (strings.Contains(asciiLower(domain), asciiLower(sep)) || strings.Contains(asciiLower(delimiters), asciiLower(sep)))) || strings.Contains(domain, "@") {
			return // New rejects these options
		}
		d, err := New(Options{Servers: servers(1), DefaultDomain: domain, RecipientDelimiter: delimiters,
			MasterSeparator: sep, StripLoginDetail: stripLogin})
		if err != nil {
			t.Fatal(err)
		}
		n := d.names
		got := n.normalize(user, recipient)
		if again := n.normalize(got, recipient); again != got {
			t.Fatalf("not idempotent: %q → %q → %q", user, got, again)
		}
		for i := 0; i < len(got); i++ {
			if 'A' <= got[i] && got[i] <= 'Z' {
				t.Fatalf("normalize(%q) = %q has upper-case ASCII", user, got)
			}
		}
		if utf8.ValidString(user) && utf8.ValidString(domain) && got != strings.TrimSpace(got) {
			t.Fatalf("normalize(%q) = %q has surrounding space", user, got)
		}
		if recipient || stripLogin {
			local := got
			if at := strings.LastIndexByte(got, '@'); at >= 0 {
				local = got[:at]
			}
			for i := 0; i < len(local); i++ {
				if strings.IndexByte(n.delimiters, local[i]) >= 0 {
					t.Fatalf("normalize(%q) = %q: delimiter %q left in the local part", user, got, local[i])
				}
			}
		}
	})
}

func FuzzParseBalance(f *testing.F) {
	for _, s := range []string{"user", "LEASTCONN", "roundrobin", "source", "", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBalance(s)
		if err != nil {
			return
		}
		if back, err := ParseBalance(b.String()); err != nil || back != b {
			t.Fatalf("round trip of %q: got %v, %v, want %v", s, back, err, b)
		}
	})
}

func FuzzParseAdminState(f *testing.F) {
	for _, s := range []string{"ready", "Drain", "maint", "", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAdminState(s)
		if err != nil {
			return
		}
		if back, err := ParseAdminState(a.String()); err != nil || back != a {
			t.Fatalf("round trip of %q: got %v, %v, want %v", s, back, err, a)
		}
	})
}
