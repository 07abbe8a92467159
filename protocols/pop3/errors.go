package pop3

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a negative reply ("-ERR") the frontend sends in place of +OK.
// Handlers return one; the session writes it in one place.
type Error struct {
	// Code is the RFC 2449 / RFC 3206 response code without brackets
	// ("AUTH", "SYS/TEMP"); empty: none.
	Code string
	Text string
	// Close ends the session after the reply.
	Close bool
}

// Line is the reply as sent, CRLF included.
func (e *Error) Line() string {
	if e.Code == "" {
		return "-ERR " + e.Text + "\r\n"
	}
	return "-ERR [" + e.Code + "] " + e.Text + "\r\n"
}

func (e *Error) Error() string {
	return fmt.Sprintf("pop3 reply %q", strings.TrimSuffix(e.Line(), "\r\n"))
}

// Replies in place of +OK. The texts follow Dovecot's where it has one, so
// that clients see the same words through the proxy as without it.
var (
	// ErrUnknownCommand answers a command unknown before login, and the
	// session ends (cross-protocol defence).
	ErrUnknownCommand = &Error{Text: "Unknown command.", Close: true}
	// ErrLineTooLong answers a line longer than the frontend reads; the
	// session ends.
	ErrLineTooLong = &Error{Text: "Line too long.", Close: true}
	// ErrTooManyErrors ends a session that keeps sending rejected commands.
	ErrTooManyErrors = &Error{Text: "Too many invalid commands.", Close: true}
	// ErrPlaintextDisallowed refuses USER, PASS and AUTH PLAIN before TLS
	// when plaintext logins are not allowed (RFC 2595 section 2.3 leaves
	// that policy to the server; the text is Dovecot's).
	ErrPlaintextDisallowed = &Error{Code: "AUTH", Text: "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."}
	// ErrAuthFailed answers credentials the frontend could not even parse
	// (the server's own rejection is relayed as it is).
	ErrAuthFailed = &Error{Code: "AUTH", Text: "Authentication failed."}
	// ErrAuthCanceled answers "*" to an AUTH continuation (RFC 5034 section 4).
	ErrAuthCanceled = &Error{Text: "Authentication canceled."}
	// ErrInvalidBase64 answers an AUTH response that is not base64.
	ErrInvalidBase64 = &Error{Text: "Invalid base64 data in continued response."}
	// ErrUnsupportedMechanism answers AUTH with a mechanism other than PLAIN.
	ErrUnsupportedMechanism = &Error{Text: "Unsupported authentication mechanism."}
	// ErrNoUsername answers PASS without a USER before it.
	ErrNoUsername = &Error{Text: "No username given."}
	// ErrSyntax answers a known command with bad arguments.
	ErrSyntax = &Error{Text: "Syntax error."}
	// ErrNotLoggedIn answers TRANSACTION state commands (RFC 1939
	// section 5) sent before login.
	ErrNotLoggedIn = &Error{Text: "Not logged in."}
	// ErrTLSActive answers STLS on a connection already on TLS
	// (RFC 2595 section 4).
	ErrTLSActive = &Error{Text: "TLS is already active."}
	// ErrTLSUnavailable answers STLS on a frontend without certificates.
	ErrTLSUnavailable = &Error{Text: "TLS support isn't enabled."}
	// ErrUnavailable says no server could take the session (RFC 3206
	// section 4: SYS/TEMP, try again later).
	ErrUnavailable = &Error{Code: "SYS/TEMP", Text: "Service temporarily unavailable."}
	// ErrInternal answers a failure of the proxy itself; the session ends.
	ErrInternal = &Error{Code: "SYS/TEMP", Text: "Internal error occurred.", Close: true}
)

// rejectedError is a server's -ERR answer to the replayed login, relayed to
// the client as it is: it carries the server's response code.
type rejectedError struct {
	server string
	reply  string // one line, CRLF included
}

func (e *rejectedError) Error() string {
	return fmt.Sprintf("server %s rejected login: %q", e.server, strings.TrimSuffix(e.reply, "\r\n"))
}

// Temporary reports a refusal for now, not of the credentials: the
// response codes SYS/TEMP, IN-USE and LOGIN-DELAY (RFC 3206 section 4,
// RFC 2449 section 8.1), for the statistics' temp_fail.
func (e *rejectedError) Temporary() bool {
	for _, code := range []string{"[SYS/TEMP]", "[IN-USE]", "[LOGIN-DELAY]"} {
		if strings.Contains(e.reply, code) {
			return true
		}
	}
	return false
}

// endSession ends the session without a reply: the client connection
// failed, or the relay could not take over.
type endSession struct{ err error }

func (e *endSession) Error() string { return e.err.Error() }
func (e *endSession) Unwrap() error { return e.err }

func end(err error) error { return &endSession{err} }

var errTooManyFailures = errors.New("too many failed logins")
