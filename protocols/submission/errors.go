package submission

import (
	"fmt"
	"strings"

	"github.com/maildirector/maildirector/internal/mailwire"
)

// replyError is a reply the submission frontend sends in place of a
// 2xx/3xx one. Handlers return one; the session writes it in one place
// (session.fail).
type replyError struct {
	Code     int    // RFC 5321 section 4.2 reply code
	Enhanced string // RFC 3463 enhanced status code (RFC 2034 ENHANCEDSTATUSCODES)
	Text     string
	Close    bool // the session ends after the reply
}

// Line is the reply as sent, CRLF included.
func (e *replyError) Line() string {
	return fmt.Sprintf("%d %s %s\r\n", e.Code, e.Enhanced, e.Text)
}

func (e *replyError) Error() string {
	return fmt.Sprintf("submission reply %q", strings.TrimSuffix(e.Line(), "\r\n"))
}

// Replies in place of a positive one. Proxy-side failures are 4xx: the
// client tries again later instead of bouncing the message.
var (
	// errUnknownCommand answers a command unknown before AUTH, and the
	// session ends (cross-protocol defence).
	errUnknownCommand = &replyError{500, "5.5.1", "Unknown command", true}
	// errLineTooLongReply answers an overlong line (RFC 5321 section
	// 4.5.3.1.10); the session ends.
	errLineTooLongReply = &replyError{500, "5.5.2", "Line too long", true}
	// errTooManyErrors ends a session that keeps failing.
	errTooManyErrors = &replyError{421, "4.7.0", "Too many errors", true}
	// errTooManyLogins ends a session after too many failed AUTHs.
	errTooManyLogins = &replyError{421, "4.7.0", "Too many failed authentication attempts", true}
	// errAuthRequired answers mail commands before AUTH (RFC 4954
	// section 6; RFC 6409 section 4.3 requires authentication).
	errAuthRequired = &replyError{530, "5.7.0", "Authentication required", false}
	// errTLSRequired answers AUTH before STARTTLS when plaintext
	// logins are not allowed (RFC 3207 section 4).
	errTLSRequired = &replyError{530, "5.7.0", "Must issue a STARTTLS command first", false}
	// errAuthFailed answers credentials that cannot even be parsed
	// (RFC 4954 section 6); the server's own 535 is relayed as it is.
	errAuthFailed = &replyError{535, "5.7.8", "Authentication credentials invalid", false}
	// errAuthCanceled answers "*" (RFC 4954 section 4).
	errAuthCanceled = &replyError{501, "5.0.0", "Authentication canceled", false}
	// errInvalidBase64 answers a response that is not base64 (RFC 4954
	// section 4).
	errInvalidBase64 = &replyError{501, "5.5.2", "Cannot decode base64 response", false}
	// errMechanism answers AUTH with a mechanism not offered (RFC 4954
	// section 4).
	errMechanism = &replyError{504, "5.5.4", "Unrecognized authentication type", false}
	// errEhloFirst answers AUTH without EHLO (RFC 4954 section 4: AUTH
	// is an ESMTP extension).
	errEhloFirst = &replyError{503, "5.5.1", "Send EHLO first", false}
	// errSyntax answers a known command with bad arguments.
	errSyntax = &replyError{501, "5.5.4", "Syntax error in parameters", false}
	// errNotImplemented answers commands the proxy does not offer.
	errNotImplemented = &replyError{502, "5.5.1", "Command not implemented", false}
	// errTLSActive answers STARTTLS on a TLS connection.
	errTLSActive = &replyError{503, "5.5.1", "TLS already active", false}
	// errTLSUnavailable answers STARTTLS on a frontend without
	// certificates: the extension is not offered at all (RFC 5321 section
	// 4.2.4: 502 for a command not implemented).
	errTLSUnavailable = &replyError{502, "5.5.1", "STARTTLS not available", false}
	// errUnavailable says no server could take the login: RFC 4954
	// section 6's answer to AUTH for a temporary server failure. The
	// session goes on, so the client may retry or QUIT.
	errUnavailable = &replyError{454, "4.7.0", "Temporary authentication failure: service temporarily unavailable", false}
	// errTempAuth answers a failure of the proxy itself during AUTH.
	errTempAuth = &replyError{454, "4.7.0", "Temporary authentication failure", false}
)

// rejectedError is a server's 5xx answer to the replayed AUTH,
// relayed to the client as it is.
type rejectedError struct {
	server string
	reply  mailwire.Reply
}

func (e *rejectedError) Error() string {
	return fmt.Sprintf("server %s rejected login: %d", e.server, e.reply.Code)
}

// endSession ends the session without a reply: the client connection
// failed, or the relay could not take over.
type endSession struct{ err error }

func (e *endSession) Error() string { return e.err.Error() }
func (e *endSession) Unwrap() error { return e.err }
