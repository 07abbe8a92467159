package imap

import (
	"bytes"
	"errors"
	"net"

	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
)

// Protocol outcomes are errors of these types; [session.respond] is the one
// place that turns them into IMAP responses.
var (
	// errAuthFailed: the login cannot be right (malformed credentials).
	// Rendered NO [AUTHENTICATIONFAILED] (RFC 5530 section 3).
	errAuthFailed = errors.New("authentication failed")
	// errPrivacyRequired: a plaintext login on an unprotected connection
	// while Options.PlaintextLogin is false. NO [PRIVACYREQUIRED]
	// (RFC 5530 section 3; RFC 9051 section 6.2.3 LOGINDISABLED).
	errPrivacyRequired = errors.New("plaintext login refused without tls")
	// errMechanism: AUTHENTICATE with a mechanism the proxy does not offer
	// (RFC 9051 section 6.2.2: tagged NO).
	errMechanism = errors.New("unsupported authentication mechanism")
	// errNotPermitted: a known IMAP command that needs a login first.
	errNotPermitted = errors.New("command not permitted before login")
	// errTLSActive: STARTTLS on a connection that is already TLS.
	errTLSActive = errors.New("tls already active")
	// errNoTLS: STARTTLS where the frontend has no certificate.
	errNoTLS = errors.New("starttls not available")
	// errEmptyLine: a line with no command at all.
	errEmptyLine = errors.New("empty command line")
	// errServerRefused: the server answered the replayed login with an
	// untagged BAD or a BYE, as Dovecot does with input it cannot take.
	// It is the client's input, not the server's failure: tagged BAD.
	errServerRefused = errors.New("server refused the login command")

	// The errors below end the session after an untagged BYE.

	// errUnknownCommand: the client does not speak IMAP (cross-protocol
	// defence): "* BYE Unknown command" and close.
	errUnknownCommand = errors.New("unknown command")
	// errLineTooLong: a command line over maxCommandLen.
	errLineTooLong = errors.New("command line too long")
	// errLiteralTooBig: a literal over maxLiteralLen (RFC 7888 section 4:
	// a server that rejects a non-synchronising literal must close).
	errLiteralTooBig = errors.New("literal too big")
	// errLiteralInvalid: a non-synchronising literal whose length cannot
	// be parsed. Its data follows unasked (RFC 7888 section 4), so the
	// stream is out of sync: tagged BAD, then BYE.
	errLiteralInvalid = errors.New("invalid non-synchronising literal")
	// errInactive: the pre-login deadline passed while reading.
	errInactive = errors.New("client inactive before login")
	// errTooManyBad and errTooManyLogins end a client that keeps failing.
	errTooManyBad = errors.New("too many bad commands")
	// errTooManyCommands ends a client that never logs in (maxCommands).
	errTooManyCommands = errors.New("too many commands before login")
	errTooManyLogins   = errors.New("too many failed logins")
)

// rejectedError is the server's answer to a replayed login when it is not
// OK (a wrong password: NO [AUTHENTICATIONFAILED]). reply holds the
// server's lines, untagged ones and the tagged one, already under the
// client's tag; they go to the client as they are.
type rejectedError struct {
	reply []byte
}

func (e *rejectedError) Error() string { return "server rejected the login" }

// Temporary reports a refusal for now, not of the credentials: the
// response codes UNAVAILABLE and INUSE (RFC 5530 section 3), for the
// statistics' temp_fail.
func (e *rejectedError) Temporary() bool {
	return bytes.Contains(e.reply, []byte("[UNAVAILABLE]")) || bytes.Contains(e.reply, []byte("[INUSE]"))
}

// connError is a failure of the client connection itself: nothing more can
// be said to the client, the session just ends.
type connError struct{ err error }

func (e *connError) Error() string { return "client connection: " + e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// outcome classifies a rendered error for the session's counters.
type outcome int

const (
	outcomeBadCommand  outcome = iota // counts toward maxBadCommands
	outcomeFailedLogin                // counts toward Options.MaxLoginAttempts
	outcomeClose                      // the session ends after the reply
)

// render maps err to the bytes the client sees and what it means for the
// session. It is the only place where protocol errors meet the wire. The
// second result is non-nil for errors that are not the client's fault and
// should be logged.
func render(tag string, err error) (reply string, oc outcome, unexpected error) {
	var rej *rejectedError
	var syn *syntaxError
	switch {
	case errors.As(err, &rej):
		return string(rej.reply), outcomeFailedLogin, nil
	case errors.Is(err, errAuthFailed):
		return tag + " NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", outcomeFailedLogin, nil
	case errors.Is(err, errPrivacyRequired):
		// RFC 9051 section 6.2.3; Dovecot's wording.
		return tag + " NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure (SSL/TLS) connections.\r\n", outcomeFailedLogin, nil
	case errors.Is(err, proxy.ErrUnavailable):
		// RFC 5530 section 3: UNAVAILABLE, the login may work later.
		return tag + " NO [UNAVAILABLE] Service temporarily unavailable\r\n", outcomeFailedLogin, nil
	case errors.Is(err, errMechanism):
		return tag + " NO Unsupported authentication mechanism.\r\n", outcomeFailedLogin, nil
	case errors.Is(err, sasl.ErrCanceled):
		// RFC 9051 section 6.2.2: a "*" response cancels with a tagged BAD.
		return tag + " BAD Authentication canceled.\r\n", outcomeFailedLogin, nil
	case errors.As(err, &syn):
		return tag + " BAD Error in IMAP command: " + syn.msg + "\r\n", outcomeBadCommand, nil
	case errors.Is(err, errServerRefused):
		return tag + " BAD Error in IMAP command received by server.\r\n", outcomeBadCommand, nil
	case errors.Is(err, errNotPermitted):
		return tag + " BAD Command not permitted before login\r\n", outcomeBadCommand, nil
	case errors.Is(err, errTLSActive):
		return tag + " BAD TLS is already active.\r\n", outcomeBadCommand, nil
	case errors.Is(err, errNoTLS):
		return tag + " BAD STARTTLS not available.\r\n", outcomeBadCommand, nil
	case errors.Is(err, errEmptyLine):
		return "* BAD Empty command line\r\n", outcomeBadCommand, nil
	case errors.Is(err, errUnknownCommand):
		return "* BYE Unknown command\r\n", outcomeClose, nil
	case errors.Is(err, errLineTooLong):
		return "* BYE Line too long\r\n", outcomeClose, nil
	case errors.Is(err, errLiteralTooBig):
		return "* BYE [TOOBIG] Literal too big\r\n", outcomeClose, nil
	case errors.Is(err, errLiteralInvalid):
		return tag + " BAD Invalid literal length\r\n* BYE Literal out of sync\r\n", outcomeClose, nil
	case errors.Is(err, errInactive):
		return "* BYE Disconnected for inactivity.\r\n", outcomeClose, nil
	}
	// RFC 5530 section 3: SERVERBUG, the details stay in our log.
	return tag + " NO [SERVERBUG] Internal error occurred. Refer to server log for more information.\r\n", outcomeFailedLogin, err
}

// isTimeout reports whether err is a deadline that passed.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
