package submission

// # Submission
//
// [Submission] is the SMTP submission frontend (RFC 6409): it answers the
// part of the session before AUTH itself — greeting, EHLO/HELO, STARTTLS
// (RFC 3207), AUTH PLAIN and LOGIN (RFC 4954), RSET, NOOP, QUIT — learns
// the user name, lets the picker choose a server, replays the client's EHLO
// and login there (after a Postfix XCLIENT when the server wants one), and
// hands the session to the engine's relay once the server answered 235.
// From then on the client talks to the server: MAIL, RCPT, DATA and a
// re-EHLO (which then shows the server's own capabilities) go through
// untouched.
//
// It is written by hand, like the IMAP frontend, rather than on go-smtp's
// server: that server is built to consume mail (its Backend gets MAIL, RCPT
// and the message), and has no way to hand the raw connection to a relay
// after AUTH, which is all a proxy wants from it.
//
// Failures on the proxy's side are always 4xx (421 4.3.0, 454 4.7.0): the
// client retries later and never bounces a message because a server was
// down. A 535 from the server is relayed and the client may try again.
//
//	sub := smtp.NewSubmission(smtp.SubmissionOptions{Picker: picker, Hostname: "mx.example.org"})
//	fe := proxy.Frontend{Name: "submission", Protocol: "submission", Addrs: []string{":587"}, TLS: tlsConfig, Handler: sub}

import (
	"context"
	"log/slog"
	"os"
	"strings"

	"github.com/maildirector/maildirector/proxy"
)

// Submission limits.
const (
	subDefaultMaxLoginAttempts = 3
	// subMaxErrors ends a session after this many rejected commands
	// before AUTH (Postfix's smtpd_hard_error_limit does the same).
	subMaxErrors = 10
	// subMaxCommands bounds the commands of one session before AUTH.
	subMaxCommands = 100
	// subMaxLine caps a client line, CRLF included. RFC 5321 section
	// 4.5.3.1.4 requires 512 octets for commands; RFC 4954 section 4 lets
	// an AUTH line grow to 12288, but a PLAIN message is at most 767
	// octets (RFC 4616: 255 per field), 1024 in base64.
	subMaxLine = 2048
	// subMaxServerLine caps a server reply line (RFC 5321 section
	// 4.5.3.1.5: 512 octets), with room for the lenient.
	subMaxServerLine = 2048
	// subMaxReplyLines bounds a multi-line server reply (an EHLO lists a
	// few dozen keywords at most).
	subMaxReplyLines = 100
)

// SubmissionOptions configure a [Submission] frontend. The zero value of
// each field is usable except Picker, which is required.
type SubmissionOptions struct {
	// Picker chooses the server for a user.
	Picker proxy.Picker
	// Retries is how many other servers are tried when the chosen one
	// fails before answering the login; 0 or negative: none.
	Retries int
	// Hostname is the name in the greeting and the EHLO reply; empty: the
	// machine's host name.
	Hostname string
	// PlaintextLogin offers and allows AUTH on connections that are not on
	// TLS; false: AUTH needs STARTTLS (or implicit TLS) first.
	PlaintextLogin bool
	// MaxLoginAttempts ends the session after this many failed AUTHs;
	// zero or negative: 3.
	MaxLoginAttempts int
	// MaxMessageSize is advertised as the EHLO SIZE limit (RFC 1870); the
	// server enforces its own. Zero: SIZE without a number (no fixed
	// limit); negative: no SIZE keyword.
	MaxMessageSize int64
	// Logger receives per-command debug lines and warnings; nil: the
	// engine's per-connection logger ([proxy.Conn.Logger]).
	Logger *slog.Logger
}

// Submission serves SMTP submission clients (ports 587 and 465); it is a
// [proxy.Handler] and is safe for concurrent use.
type Submission struct {
	opts     SubmissionOptions
	hostname string
}

// NewSubmission returns a submission frontend.
func NewSubmission(opts SubmissionOptions) *Submission {
	h := opts.Hostname
	if h == "" {
		h, _ = os.Hostname()
	}
	h = strings.Map(func(r rune) rune {
		if r <= ' ' || r > '~' {
			return -1
		}
		return r
	}, h)
	if h == "" {
		h = "localhost"
	}
	return &Submission{opts: opts, hostname: h}
}

func (f *Submission) retries() int { return max(f.opts.Retries, 0) }

func (f *Submission) maxLoginAttempts() int {
	if f.opts.MaxLoginAttempts > 0 {
		return f.opts.MaxLoginAttempts
	}
	return subDefaultMaxLoginAttempts
}

// subGoodbye is what the engine tells a client it ends before AUTH
// (shutdown, kick): RFC 5321 section 3.8.
const subGoodbye = "421 4.3.2 Service shutting down\r\n"

// ServeConn runs one submission session. The engine closes c after
// ServeConn returns, unless the session was handed to the relay after AUTH.
func (f *Submission) ServeConn(ctx context.Context, c *proxy.Conn) error {
	c.SetGoodbye(subGoodbye)
	log := c.Logger()
	if f.opts.Logger != nil {
		log = f.opts.Logger.With("conn", c.ID(), "remote", c.RemoteAddr().String())
	}
	s := &submissionSession{f: f, c: c, log: log}
	return s.serve(ctx)
}
