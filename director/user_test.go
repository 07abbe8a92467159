package director

import (
	"testing"
)

func TestNormalizeUser(t *testing.T) {
	tests := []struct {
		name, user, domain, want string
	}{
		{"plain", "alice", "", "alice"},
		{"lower", "Alice@Example.COM", "", "alice@example.com"},
		{"trim", "  bob@example.com\t", "", "bob@example.com"},
		{"domain", "bob", "example.com", "bob@example.com"},
		{"domain lowered", "Bob", "Example.Com", "bob@example.com"},
		{"has domain", "bob@other.org", "example.com", "bob@other.org"},
		{"empty", "", "example.com", ""},
		{"spaces only", "   ", "example.com", ""},
		{"non-ASCII kept", "ÉLODIE@x.fr", "", "Élodie@x.fr"},
		{"inner space kept", "a b", "", "a b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NormalizeUser(tt.user, tt.domain); got != tt.want {
				t.Errorf("NormalizeUser(%q, %q): got %q, want %q", tt.user, tt.domain, got, tt.want)
			}
		})
	}
}
