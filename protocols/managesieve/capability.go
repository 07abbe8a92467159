package managesieve

import (
	"strings"

	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/protocols/internal/sasl"
)

// fallbackCapabilities stand for the servers' until a health check has
// learned theirs: what Dovecot 2.3.19's Pigeonhole announces by default.
var fallbackCapabilities = []string{
	"IMPLEMENTATION maildirector",
	"SIEVE fileinto reject envelope encoded-character vacation subaddress comparator-i;ascii-numeric relational regex imap4flags copy include variables body enotify environment mailbox date index ihave duplicate mime foreverypart extracttext",
	"NOTIFY mailto",
}

// fromServers are the capabilities (RFC 5804 section 1.7) the proxy takes
// from the servers as they are: they describe the scripts the server will
// run after the relay takes over. SASL, STARTTLS and VERSION belong to the
// pre-login dialogue, which the proxy runs itself; OWNER and LANGUAGE
// describe a logged-in session or the server's own texts.
var fromServers = []string{"IMPLEMENTATION", "SIEVE", "NOTIFY", "MAXREDIRECTS", "EXTLISTS"}

// capabilities returns the capability lines of the greeting and of the
// CAPABILITY response (RFC 5804 sections 1.7 and 2.4) as they hold on this
// connection now, CRLF included, without the final OK.
func (s *session) capabilities() string {
	var learned []string
	if s.f.opts.ServerCapabilities != nil {
		learned = s.f.opts.ServerCapabilities()
	}
	if len(learned) == 0 {
		learned = fallbackCapabilities
	}
	var b strings.Builder
	for _, name := range fromServers {
		value, ok := capability(learned, name)
		if !ok && (name == "IMPLEMENTATION" || name == "SIEVE") {
			// RFC 5804 section 1.7: a server always announces these two.
			value, ok = capability(fallbackCapabilities, name)
		}
		if q, quotable := mailwire.SieveQuote(value); ok && quotable {
			b.WriteString(`"` + name + `" ` + q + "\r\n")
		}
	}
	// SASL lists the mechanisms the proxy can replay: PLAIN, when a login
	// may run now; empty before STARTTLS otherwise, as Dovecot does.
	mechs := ""
	if s.loginAllowed() {
		mechs = sasl.MechPlain
	}
	b.WriteString(`"SASL" "` + mechs + "\"\r\n")
	if s.c.CanStartTLS() {
		b.WriteString("\"STARTTLS\"\r\n") // RFC 5804 section 2.2
	}
	b.WriteString("\"VERSION\" \"1.0\"\r\n") // RFC 5804 section 1.7: this document
	return b.String()
}

// capability returns the value of the capability name in caps ("NAME" or
// "NAME value", as the health check learns them).
func capability(caps []string, name string) (string, bool) {
	for _, c := range caps {
		if n, value, _ := strings.Cut(c, " "); n == name {
			return value, true
		}
	}
	return "", false
}

// loginAllowed reports whether AUTHENTICATE PLAIN may run now.
func (s *session) loginAllowed() bool {
	return s.f.opts.PlaintextLogin || s.c.IsTLS()
}
