package director

import (
	"strings"
	"testing"
)

func TestNormalizeUser(t *testing.T) {
	tests := []struct {
		name string
		// names holds the options; recipient is Request.Recipient.
		names     userNames
		user      string
		recipient bool
		want      string
	}{
		{name: "plain", user: "alice", want: "alice"},
		{name: "lower", user: "Alice@Example.COM", want: "alice@example.com"},
		{name: "trim", user: "  bob@example.com\t", want: "bob@example.com"},
		{name: "domain", names: userNames{domain: "example.com"}, user: "bob", want: "bob@example.com"},
		{name: "has domain", names: userNames{domain: "example.com"}, user: "bob@other.org", want: "bob@other.org"},
		{name: "empty", names: userNames{domain: "example.com"}, user: "", want: ""},
		{name: "spaces only", names: userNames{domain: "example.com"}, user: "   ", want: ""},
		{name: "non-ASCII kept", user: "ÉLODIE@x.fr", want: "Élodie@x.fr"},
		{name: "inner space kept", user: "a b", want: "a b"},

		// recipient_delimiter, on LMTP recipients.
		{name: "detail stripped", names: userNames{delimiters: "+"}, user: "alice+lists@example.org", recipient: true, want: "alice@example.org"},
		{name: "detail case", names: userNames{delimiters: "+"}, user: "Alice+Lists@Example.org", recipient: true, want: "alice@example.org"},
		{name: "no detail", names: userNames{delimiters: "+"}, user: "alice@example.org", recipient: true, want: "alice@example.org"},
		{name: "no delimiter configured", user: "alice+lists@example.org", recipient: true, want: "alice+lists@example.org"},
		{name: "several delimiters, first wins", names: userNames{delimiters: "+-"}, user: "alice-x+y@example.org", recipient: true, want: "alice@example.org"},
		{name: "several delimiters, second char", names: userNames{delimiters: "+-"}, user: "bob-news@example.org", recipient: true, want: "bob@example.org"},
		{name: "delimiter only in domain", names: userNames{delimiters: "-"}, user: "bob@my-example.org", recipient: true, want: "bob@my-example.org"},
		// Dovecot's smtp_address_detail_parse leaves the local part empty.
		{name: "delimiter at start", names: userNames{delimiters: "+"}, user: "+lists@example.org", recipient: true, want: "@example.org"},
		{name: "delimiter at end", names: userNames{delimiters: "+"}, user: "alice+@example.org", recipient: true, want: "alice@example.org"},
		{name: "no domain", names: userNames{delimiters: "+"}, user: "alice+lists", recipient: true, want: "alice"},
		{name: "default domain after stripping", names: userNames{delimiters: "+", domain: "example.com"}, user: "alice+lists", recipient: true, want: "alice@example.com"},
		{name: "default domain with delimiter in it", names: userNames{delimiters: "-", domain: "my-example.com"}, user: "alice-x", recipient: true, want: "alice@my-example.com"},
		{name: "delimiter at start, no domain", names: userNames{delimiters: "+", domain: "example.com"}, user: "+lists", recipient: true, want: ""},
		{name: "recipient ignores master separator", names: userNames{masterSep: "*"}, user: "alice*x@example.org", recipient: true, want: "alice*x@example.org"},

		// Login names keep the detail unless StripLoginDetail.
		{name: "login keeps detail", names: userNames{delimiters: "+"}, user: "alice+lists@example.org", want: "alice+lists@example.org"},
		{name: "login detail stripped", names: userNames{delimiters: "+", stripLogin: true}, user: "alice+lists@example.org", want: "alice@example.org"},

		// auth_master_user_separator, on login names.
		{name: "master user", names: userNames{masterSep: "*"}, user: "alice*master", want: "alice"},
		{name: "master user after domain", names: userNames{masterSep: "*"}, user: "alice@example.org*master", want: "alice@example.org"},
		{name: "master user, default domain", names: userNames{masterSep: "*", domain: "example.com"}, user: "Alice*Master", want: "alice@example.com"},
		{name: "master user, first separator", names: userNames{masterSep: "*"}, user: "alice*m*n", want: "alice"},
		{name: "master user, nothing before", names: userNames{masterSep: "*"}, user: "*master", want: "*master"},
		{name: "master user and detail", names: userNames{masterSep: "*", delimiters: "+", stripLogin: true}, user: "alice+x@example.org*master", want: "alice@example.org"},
		{name: "no master separator configured", user: "alice*master", want: "alice*master"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.names.normalize(tt.user, tt.recipient); got != tt.want {
				t.Errorf("normalize(%q, recipient=%v) with %+v: got %q, want %q", tt.user, tt.recipient, tt.names, got, tt.want)
			}
		})
	}
}

// TestPickRoutesRecipientAsUser checks that the options reach Pick: a
// recipient with a detail and a master login land where the plain user
// does, and share its sticky entry.
func TestPickRoutesRecipientAsUser(t *testing.T) {
	d := newDirector(t, Options{
		Servers:            servers(1, 1, 1, 1, 1),
		DefaultDomain:      "example.org",
		RecipientDelimiter: "+-",
		MasterSeparator:    "*",
	})
	tests := []struct {
		name string
		req  Request
		want string // the normalised user
	}{
		{"login", Request{User: "alice"}, "alice@example.org"},
		{"recipient with detail", Request{User: "Alice+Lists@example.org", Recipient: true}, "alice@example.org"},
		{"recipient with the other delimiter", Request{User: "alice-news", Recipient: true}, "alice@example.org"},
		{"master login", Request{User: "alice*admin"}, "alice@example.org"},
		{"login keeps detail", Request{User: "alice+lists"}, "alice+lists@example.org"},
	}
	home := hashServer(t, d, "alice@example.org")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := d.Pick(tt.req)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Release()
			if l.User != tt.want {
				t.Errorf("user: got %q, want %q", l.User, tt.want)
			}
			if tt.want == "alice@example.org" && l.Server != home {
				t.Errorf("server: got %s, want %s (alice's)", l.Server, home)
			}
		})
	}
}

func TestNewRejectsUserNameOptions(t *testing.T) {
	tests := []struct {
		name          string
		sep, domain   string
		delimiters    string
		wantErrSubstr string
	}{
		{name: "a recipient delimiter", sep: "+", delimiters: "-+", wantErrSubstr: "also a recipient delimiter"},
		{name: "two characters", sep: "**", wantErrSubstr: "want one character"},
		{name: "in default domain", sep: ".", domain: "example.org", wantErrSubstr: "contains the master user separator"},
		{name: "default domain with @", domain: "x@example.org", wantErrSubstr: "contains '@'"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{Servers: servers(1), MasterSeparator: tt.sep, DefaultDomain: tt.domain, RecipientDelimiter: tt.delimiters})
			if err == nil || !strings.Contains(err.Error(), tt.wantErrSubstr) {
				t.Errorf("got %v, want an error containing %q", err, tt.wantErrSubstr)
			}
		})
	}
}
