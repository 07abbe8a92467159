// Package mailwire owns the mail wire that both sides of the proxy speak:
// the capped line reader, the command line split of POP3 and SMTP, IMAP
// quoting, the SMTP reply reader, the POP3 status test and ManageSieve's
// lines with their strings and literals. The frontends' server legs
// (replaying a login on a backend), their client sessions and the health
// checks all use this one copy, so they cannot drift apart. It uses nothing
// but the standard library and imports nothing of the module.
//
//	line, err := mailwire.ReadLine(br, 512)       // capped, line end included
//	if !mailwire.POP3OK(line) { ... }             // "+OK", RFC 1939 section 3
//	reply, err := mailwire.ReadSMTPReply(br, 100, 512)
//	if reply.Code != 250 { ... }                  // RFC 5321 section 4.2
//	q, ok := mailwire.IMAPQuote(password)         // else send a literal
//	line, err := mailwire.ReadSieveLine(br, 8192) // literals included, RFC 5804 section 4
//	toks, err := mailwire.ParseSieveLine(line)    // atoms, strings, response codes
package mailwire

import "errors"

var (
	// ErrLineTooLong: a line exceeds the caller's cap. The rest of it stays
	// unread; the caller should end the session.
	ErrLineTooLong = errors.New("line too long")
	// ErrTooManyLines: a multi-line reply exceeds the caller's cap.
	ErrTooManyLines = errors.New("too many reply lines")
	// ErrMalformedCommand: not a keyword command line; frontends treat it
	// as an unknown command (cross-protocol defence).
	ErrMalformedCommand = errors.New("malformed command line")
	// ErrMalformedReply: a line that is not an SMTP reply line, or a
	// continuation line whose code differs from the first line's.
	ErrMalformedReply = errors.New("malformed reply line")
)
