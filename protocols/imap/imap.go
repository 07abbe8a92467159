package imap

import (
	"context"

	"github.com/maildirector/maildirector/proxy"
)

const (
	defaultGreeting         = "maildirector ready."
	defaultMaxLoginAttempts = 3
	// maxBadCommands ends a client after this many BAD replies before
	// login, as Dovecot's imap-login does.
	maxBadCommands = 10
	// maxCommands ends a client after this many commands before login, so
	// that a NOOP every minute cannot hold a connection slot forever.
	maxCommands = 100
	// goodbye is what the engine tells a client when it ends the session
	// (shutdown, kick): RFC 9051 section 7.1.5.
	goodbye = "* BYE Server shutting down.\r\n"
)

// Options configure a Frontend. The zero value of every field but Picker
// works.
type Options struct {
	// Picker chooses the server for a login. nil: every login is answered
	// NO [UNAVAILABLE].
	Picker proxy.Picker
	// Greeting is the text of the "* OK [CAPABILITY ...]" greeting.
	// Empty means "maildirector ready.".
	Greeting string
	// PlaintextLogin allows LOGIN and AUTHENTICATE on a connection that is
	// not TLS. false (the default, RFC 9051 section 6.2.3 and RFC 8314):
	// they are refused with NO [PRIVACYREQUIRED] until STARTTLS, the
	// capabilities say LOGINDISABLED and no AUTH= mechanism.
	PlaintextLogin bool
	// MaxLoginAttempts is how many logins may fail (the server said NO, no
	// server was available, the login was refused or canceled) before the
	// client is told BYE and disconnected. Zero means 3; negative means no
	// limit.
	MaxLoginAttempts int
	// ServerCapabilities, if set, returns what the servers advertise before
	// login (learned by health checks). The harmless ones are merged into
	// the proxy's own CAPABILITY, so that clients see IDLE, ENABLE and the
	// like before logging in; STARTTLS, LOGINDISABLED, SASL-IR, LITERAL+/-,
	// IMAP4rev1 and AUTH= are the proxy's own business and are skipped,
	// except that AUTH=XOAUTH2 and AUTH=OAUTHBEARER, when the servers offer
	// them, make the proxy offer them too. nil: only the proxy's own.
	ServerCapabilities func() []string
	// ForwardID tells each server the real client and the session id in
	// an ID command before the replayed login (see idCommand), for servers
	// reached without a PROXY header from an address in Dovecot's
	// login_trusted_networks. false: the server learns the client only from
	// the PROXY header its Target asks for.
	ForwardID bool
}

func (o Options) greeting() string {
	if o.Greeting == "" {
		return defaultGreeting
	}
	return o.Greeting
}

func (o Options) maxLoginAttempts() int {
	return proxy.Limit(o.MaxLoginAttempts, defaultMaxLoginAttempts)
}

// Frontend is the IMAP [proxy.Handler]. It is safe for concurrent use: each
// connection gets its own session.
type Frontend struct {
	opts Options
}

// New returns a Frontend for opts.
func New(opts Options) *Frontend {
	return &Frontend{opts: opts}
}

// Refusal is the greeting of a connection the engine refuses (a
// per-client limit): a BYE instead of the greeting (RFC 9051 section
// 7.1.5), with the UNAVAILABLE code (RFC 5530 section 3).
func (f *Frontend) Refusal(why string) string { return "* BYE [UNAVAILABLE] " + why + ".\r\n" }

// ServeConn runs one client's pre-login session. The engine closes c after
// ServeConn returns, unless the login succeeded and c was handed to the
// relay. The error, if any, says why the session ended.
func (f *Frontend) ServeConn(ctx context.Context, c *proxy.Conn) error {
	c.SetGoodbye(goodbye)
	// At shutdown a logged-in session hears "* BYE" at the first pause
	// after a server reply (RFC 9051 section 7.1.5: the server may close
	// with an untagged BYE at any time), so IDLE clients reconnect at once.
	c.EndAtPause()
	// Per-command detail goes to the engine's connection logger (conn,
	// frontend, proto, remote) at Debug, never a password or SASL payload;
	// the per-session line is the engine's.
	s := &session{f: f, c: c, ctx: ctx, log: c.Logger()}
	return s.serve()
}

var _ proxy.Handler = (*Frontend)(nil)
