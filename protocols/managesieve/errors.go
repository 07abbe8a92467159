package managesieve

import (
	"errors"
	"fmt"

	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/proxy"
)

// Error is a reply the frontend sends in place of OK: NO, or BYE and the
// session ends (RFC 5804 section 4 response-oknobye), with a response code
// of section 1.3 where one says more than the text. Handlers return one;
// [session.respond] is the one place that writes it.
type Error struct {
	// Code is the response code without parentheses ("TRYLATER",
	// "ENCRYPT-NEEDED"); empty: none.
	Code string
	Text string
	// Bye ends the session after the reply.
	Bye bool
	// Login counts the reply as a failed login (Options.MaxLoginAttempts)
	// rather than a rejected command.
	Login bool
}

// Line is the reply as sent, CRLF included.
func (e *Error) Line() string {
	status := "NO"
	if e.Bye {
		status = "BYE"
	}
	return response(status, e.Code, e.Text)
}

func (e *Error) Error() string { return fmt.Sprintf("managesieve reply %q", e.Line()) }

// response builds one status response (RFC 5804 section 4): status, the
// response code in parentheses if any, the text as a string.
func response(status, code, text string) string {
	s := status
	if code != "" {
		s += " (" + code + ")"
	}
	return s + " " + mailwire.SieveString(text, false) + "\r\n"
}

// Replies in place of OK. The texts follow Dovecot's managesieve-login
// where it has one, so that clients see the same words through the proxy
// as without it.
var (
	// ErrUnknownCommand answers a line that is not a ManageSieve command,
	// and the session ends: an HTTP request, a TLS ClientHello or noise sent
	// to the port (cross-protocol defence).
	ErrUnknownCommand = &Error{Text: "Unknown command.", Bye: true}
	// ErrLineTooLong answers a command, with its literals, longer than the
	// frontend reads; the session ends, since a literal's data may follow.
	ErrLineTooLong = &Error{Text: "Command line too long.", Bye: true}
	// ErrInactive ends a client that sent nothing before the pre-login
	// deadline.
	ErrInactive = &Error{Text: "Disconnected for inactivity.", Bye: true}
	// ErrTooManyCommands ends a client that keeps sending rejected
	// commands, or never logs in.
	ErrTooManyCommands = &Error{Text: "Too many invalid MANAGESIEVE commands.", Bye: true}
	// ErrTooManyLogins ends a client after Options.MaxLoginAttempts
	// failed logins.
	ErrTooManyLogins = &Error{Text: "Too many invalid authentication attempts.", Bye: true}
	// ErrSyntax answers a known command with arguments it does not take.
	ErrSyntax = &Error{Text: "Error in MANAGESIEVE command received by server."}
	// ErrNotLoggedIn answers the commands of the authenticated state
	// (RFC 5804 sections 2.5 to 2.12 and 2.14) sent before login.
	ErrNotLoggedIn = &Error{Text: "Not logged in."}
	// ErrEncryptNeeded refuses AUTHENTICATE PLAIN before TLS when
	// plaintext logins are not allowed: ENCRYPT-NEEDED, RFC 5804 section
	// 1.3 (site policy requires an encrypted connection for this
	// mechanism). The text is Dovecot's.
	ErrEncryptNeeded = &Error{Code: "ENCRYPT-NEEDED", Text: "Plaintext authentication disallowed on non-secure (SSL/TLS) connections.", Login: true}
	// ErrAuthFailed answers credentials the frontend cannot even parse
	// (the server's own rejection is relayed as it is).
	ErrAuthFailed = &Error{Text: "Authentication failed.", Login: true}
	// ErrAuthCanceled answers "*" to the SASL challenge (RFC 5804 section
	// 2.1: the server MUST reject the AUTHENTICATE command with NO).
	ErrAuthCanceled = &Error{Text: "Authentication aborted by client.", Login: true}
	// ErrInvalidBase64 answers a SASL response that is not base64.
	ErrInvalidBase64 = &Error{Text: "Invalid base64 data in continued response.", Login: true}
	// ErrMechanism answers AUTHENTICATE with a mechanism other than PLAIN,
	// the one the proxy can replay.
	ErrMechanism = &Error{Text: "Unsupported authentication mechanism.", Login: true}
	// ErrTLSActive answers STARTTLS on a connection already on TLS.
	ErrTLSActive = &Error{Text: "TLS is already active."}
	// ErrTLSUnavailable answers STARTTLS on a frontend without
	// certificates.
	ErrTLSUnavailable = &Error{Text: "TLS support isn't enabled."}
	// ErrUnavailable says no server could take the session: TRYLATER, RFC
	// 5804 section 1.3 (a temporary failure; the client may try later).
	ErrUnavailable = &Error{Code: "TRYLATER", Text: "Service temporarily unavailable.", Login: true}
	// ErrInternal answers a failure of the proxy itself, TRYLATER too; the
	// details stay in the log.
	ErrInternal = &Error{Code: "TRYLATER", Text: "Internal error occurred. Refer to server log for more information.", Login: true}
)

// rejectedError is a server's NO to the replayed login, relayed to the
// client as it is (its text and response code are the server's).
type rejectedError struct {
	server string
	reply  string // the server's response, CRLF included
}

func (e *rejectedError) Error() string {
	return fmt.Sprintf("server %s rejected the login: %q", e.server, e.reply)
}

// connError is a failure of the client connection itself: nothing more can
// be said to the client, the session just ends.
type connError struct{ err error }

func (e *connError) Error() string { return "client connection: " + e.err.Error() }
func (e *connError) Unwrap() error { return e.err }

// render maps err to the reply the client sees and what it is. It is the
// only place where protocol errors meet the wire. unexpected is non-nil for
// errors that are not the client's doing and should be logged.
func render(err error) (reply string, e *Error, unexpected error) {
	var rej *rejectedError
	switch {
	case errors.As(err, &e):
		return e.Line(), e, nil
	case errors.As(err, &rej):
		return rej.reply, &Error{Login: true}, nil
	case errors.Is(err, proxy.ErrUnavailable):
		return ErrUnavailable.Line(), ErrUnavailable, nil
	}
	return ErrInternal.Line(), ErrInternal, err
}
