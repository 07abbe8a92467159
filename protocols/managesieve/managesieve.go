package managesieve

import (
	"context"
	"strings"

	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/proxy"
)

// Defaults and limits.
const (
	defaultGreeting         = "maildirector ready."
	defaultMaxLoginAttempts = 3
	// maxBadCommands ends a client after this many rejected commands
	// before login, as Dovecot's managesieve-login does.
	maxBadCommands = 10
	// maxCommands ends a client after this many commands before login, so
	// that a NOOP now and then cannot hold a connection slot forever.
	maxCommands = 100
	// maxCommandLen caps one client command with its literals, line ends
	// included. The longest a client needs before login is AUTHENTICATE
	// PLAIN with its initial response: 1024 octets of base64 (RFC 4616
	// section 2: three fields of at most 255 octets), in a quoted string
	// or a literal.
	maxCommandLen = 4096
	// goodbye is what the engine tells a client when it ends the session
	// (shutdown, kick): BYE, RFC 5804 section 4 response-oknobye.
	goodbye = `BYE "Server shutting down."` + "\r\n"
)

// Options configure a [Frontend]. The zero value of every field but Picker
// works.
type Options struct {
	// Picker chooses the server for a login. nil: every login is answered
	// NO (TRYLATER).
	Picker proxy.Picker
	// Greeting is the text of the OK that ends the greeting (RFC 5804
	// section 1.7). Empty: "maildirector ready.". CR and LF are removed.
	Greeting string
	// PlaintextLogin allows AUTHENTICATE PLAIN on a connection that is not
	// on TLS. false (the default, as Dovecot's disable_plaintext_auth): it
	// is refused with NO (ENCRYPT-NEEDED) until STARTTLS, and the SASL
	// capability is empty before it.
	PlaintextLogin bool
	// MaxLoginAttempts is how many logins may fail (the server said NO, no
	// server was available, the login was refused or canceled) before the
	// client is told BYE and disconnected. Zero means 3; negative means no
	// limit.
	MaxLoginAttempts int
	// ServerCapabilities, if set, returns the servers' capabilities as the
	// managesieve health check learns them from their greeting ("SIEVE
	// fileinto reject ...", "IMPLEMENTATION Dovecot Pigeonhole"). The
	// ones about the scripts (IMPLEMENTATION, SIEVE, NOTIFY, MAXREDIRECTS,
	// EXTLISTS) are advertised as they are; SASL, STARTTLS and VERSION are
	// the proxy's own. nil, or an empty answer: the IMPLEMENTATION
	// "maildirector" and the SIEVE and NOTIFY of Dovecot 2.3's Pigeonhole.
	ServerCapabilities func() []string
}

func (o Options) maxLoginAttempts() int {
	return proxy.Limit(o.MaxLoginAttempts, defaultMaxLoginAttempts)
}

// Frontend is the ManageSieve [proxy.Handler]. It is safe for concurrent
// use: each connection gets its own session.
type Frontend struct {
	opts     Options
	greeting string // the OK line that ends the greeting, CRLF included
}

// New returns a Frontend for opts.
func New(opts Options) *Frontend {
	g := opts.Greeting
	if g == "" {
		g = defaultGreeting
	}
	g = strings.NewReplacer("\r", "", "\n", "").Replace(g)
	return &Frontend{opts: opts, greeting: "OK " + mailwire.SieveString(g, false) + "\r\n"}
}

// Refusal is the greeting of a connection the engine refuses (a
// per-client limit, a full frontend): BYE with TRYLATER (RFC 5804 section
// 1.3).
func (f *Frontend) Refusal(why string) string {
	return (&Error{Code: "TRYLATER", Text: why + ".", Bye: true}).Line()
}

// ServeConn runs one client's pre-login session. The engine closes c after
// ServeConn returns, unless the login succeeded and c was handed to the
// relay. The error, if any, says why the session ended.
func (f *Frontend) ServeConn(ctx context.Context, c *proxy.Conn) error {
	c.SetGoodbye(goodbye)
	// Per-command detail goes to the engine's connection logger at Debug,
	// never a password or SASL payload; the per-session line is the
	// engine's.
	s := &session{f: f, c: c, ctx: ctx, log: c.Logger()}
	return s.serve()
}

var (
	_ proxy.Handler = (*Frontend)(nil)
	_ proxy.Refuser = (*Frontend)(nil)
)
