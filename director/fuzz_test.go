package director

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzNormalizeUser(f *testing.F) {
	for _, s := range []string{"alice", " Bob@Example.COM ", "", "ÉLODIE", "a@", "\t\n"} {
		f.Add(s, "example.com")
		f.Add(s, "")
	}
	f.Fuzz(func(t *testing.T, user, domain string) {
		got := NormalizeUser(user, domain)
		if again := NormalizeUser(got, domain); again != got {
			t.Fatalf("not idempotent: %q → %q → %q", user, got, again)
		}
		for i := 0; i < len(got); i++ {
			if 'A' <= got[i] && got[i] <= 'Z' {
				t.Fatalf("NormalizeUser(%q) = %q has upper-case ASCII", user, got)
			}
		}
		if utf8.ValidString(user) && utf8.ValidString(domain) && got != strings.TrimSpace(got) {
			t.Fatalf("NormalizeUser(%q) = %q has surrounding space", user, got)
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
