package pop3

import (
	"context"
	"strings"

	"github.com/maildirector/maildirector/proxy"
)

// Defaults and limits.
const (
	defaultGreeting         = "POP3 server ready."
	defaultMaxLoginAttempts = 3
	// maxErrors ends a session after this many rejected commands of any
	// kind before login: a client that keeps failing is not a mail client.
	maxErrors = 10
	// maxCommands bounds the commands of one session before login.
	maxCommands = 100
	// maxLine caps a client line, CRLF included. RFC 2449 section 4 allows
	// 255 octets for commands, but an RFC 5034 AUTH PLAIN response carries
	// base64 of up to 767 octets (RFC 4616 section 2: 255 per field), which
	// Dovecot and its clients send on one line.
	maxLine = 2048
	// maxServerLine caps a line read from a server during login
	// (RFC 2449 section 4: responses are at most 512 octets).
	maxServerLine = 2048
)

// Options configure a [Frontend]. The zero value of each field is usable
// except Picker, which is required.
type Options struct {
	// Picker chooses the server for a user.
	Picker proxy.Picker
	// Greeting follows "+OK " in the greeting; empty: "POP3 server ready.".
	// CR and LF are removed.
	Greeting string
	// PlaintextLogin allows USER/PASS and AUTH PLAIN on connections that
	// are not on TLS; false: those need STLS (or implicit TLS) first, as
	// Dovecot's disable_plaintext_auth.
	PlaintextLogin bool
	// MaxLoginAttempts ends the session after this many failed logins;
	// zero: 3; negative: no limit.
	MaxLoginAttempts int
	// ServerCapabilities returns the servers' CAPA lines (from health
	// checks); the harmless ones (TOP, UIDL, EXPIRE, LOGIN-DELAY, UTF8, ...)
	// are advertised before login. nil, or an empty answer: TOP and UIDL,
	// which every Dovecot has.
	ServerCapabilities func() []string
	// ForwardID tells each server the real client and the session id with
	// XCLIENT before the login (see xclientCommand), for servers reached
	// without a PROXY header from an address in Dovecot's
	// login_trusted_networks. false: the server learns the client only
	// from the PROXY header its Target asks for.
	ForwardID bool
}

// Frontend serves POP3 clients; it is a [proxy.Handler] and is safe for
// concurrent use.
type Frontend struct {
	opts     Options
	greeting string
}

// New returns a POP3 frontend.
func New(opts Options) *Frontend {
	g := opts.Greeting
	if g == "" {
		g = defaultGreeting
	}
	g = strings.NewReplacer("\r", "", "\n", "").Replace(g)
	return &Frontend{opts: opts, greeting: g}
}

func (f *Frontend) maxLoginAttempts() int {
	return proxy.Limit(f.opts.MaxLoginAttempts, defaultMaxLoginAttempts)
}

// goodbye is what the engine tells a client it ends before login
// (shutdown, kick).
const goodbye = "-ERR Server shutting down.\r\n"

// Refusal is the greeting of a connection the engine refuses (a
// per-client limit): -ERR with SYS/TEMP (RFC 3206 section 4).
func (f *Frontend) Refusal(why string) string { return "-ERR [SYS/TEMP] " + why + ".\r\n" }

// ServeConn runs one POP3 session. The engine closes c after ServeConn
// returns, unless the session was handed to the relay after a login.
func (f *Frontend) ServeConn(ctx context.Context, c *proxy.Conn) error {
	c.SetGoodbye(goodbye)
	// At shutdown a logged-in session ends once the server has answered
	// the current command: nothing is cut in the middle of a RETR.
	c.EndAtPause()
	s := &session{f: f, c: c, log: c.Logger()}
	return s.serve(ctx)
}
