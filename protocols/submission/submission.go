package submission

import (
	"context"
	"strings"

	"github.com/maildirector/maildirector/proxy"
)

// Submission limits.
const (
	defaultMaxLoginAttempts = 3
	// maxErrors ends a session after this many rejected commands
	// before AUTH (Postfix's smtpd_hard_error_limit does the same).
	maxErrors = 10
	// maxCommands bounds the commands of one session before AUTH.
	maxCommands = 100
	// maxLine caps a client line, CRLF included. RFC 5321 section
	// 4.5.3.1.4 requires 512 octets for commands; RFC 4954 section 4 lets
	// an AUTH line grow to 12288, but a PLAIN message is at most 767
	// octets (RFC 4616: 255 per field), 1024 in base64.
	maxLine = 2048
	// maxServerLine caps a server reply line (RFC 5321 section
	// 4.5.3.1.5: 512 octets), with room for the lenient.
	maxServerLine = 2048
	// maxReplyLines bounds a multi-line server reply (an EHLO lists a
	// few dozen keywords at most).
	maxReplyLines = 100
)

// Options configure a [Frontend] frontend. The zero value of
// each field is usable except Picker, which is required.
type Options struct {
	// Picker chooses the server for a user.
	Picker proxy.Picker
	// Hostname is the name in the greeting and the EHLO reply; empty:
	// "localhost". (The configuration resolves the machine's name.)
	Hostname string
	// PlaintextLogin offers and allows AUTH on connections that are not on
	// TLS; false: AUTH needs STARTTLS (or implicit TLS) first.
	PlaintextLogin bool
	// MaxLoginAttempts ends the session after this many failed AUTHs;
	// zero: 3; negative: no limit.
	MaxLoginAttempts int
	// XClient names the servers (by Target.Name) that learn the client
	// from Postfix XCLIENT after EHLO rather than from a PROXY header;
	// nil: none.
	XClient map[string]bool
	// MaxMessageSize is advertised as the EHLO SIZE limit (RFC 1870); the
	// server enforces its own. Zero: SIZE without a number (no fixed
	// limit); negative: no SIZE keyword.
	MaxMessageSize int64
}

// Frontend serves SMTP submission clients (ports 587 and 465); it is a
// [proxy.Handler] and is safe for concurrent use.
type Frontend struct {
	opts     Options
	hostname string
}

// New returns a submission frontend.
func New(opts Options) *Frontend {
	h := strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' {
			return -1
		}
		return r
	}, opts.Hostname)
	if h == "" {
		h = "localhost"
	}
	return &Frontend{opts: opts, hostname: h}
}

func (f *Frontend) maxLoginAttempts() int {
	return proxy.Limit(f.opts.MaxLoginAttempts, defaultMaxLoginAttempts)
}

// goodbye is what the engine tells a client it ends before AUTH
// (shutdown, kick): RFC 5321 section 3.8.
const goodbye = "421 4.3.2 Service shutting down\r\n"

// Refusal is the greeting of a connection the engine refuses (a
// per-client limit): 421 (RFC 5321 section 3.1), 4.7.0 (RFC 3463).
func (f *Frontend) Refusal(why string) string { return "421 4.7.0 " + why + "\r\n" }

// ServeConn runs one submission session. The engine closes c after
// ServeConn returns, unless the session was handed to the relay after AUTH.
func (f *Frontend) ServeConn(ctx context.Context, c *proxy.Conn) error {
	c.SetGoodbye(goodbye)
	// At shutdown a relayed session hears 421 at the first pause after a
	// server reply: never between the end of the data and its reply, so a
	// message is accepted once or sent again, not lost (the relay does not
	// read SMTP, so a pause between the commands of a transaction counts).
	c.EndAtPause()
	s := &session{f: f, c: c, log: c.Logger()}
	return s.serve(ctx)
}
