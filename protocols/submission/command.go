package submission

import (
	"bufio"

	"github.com/maildirector/maildirector/protocols/internal/textline"
)

// command is one client command line (RFC 5321 section 4.1.1):
// a case-insensitive verb, then optionally one space and the arguments.
type command = textline.Command

// maxVerb bounds a verb: RFC 5321 verbs have 4 characters, extensions
// a few more (STARTTLS, XCLIENT).
const maxVerb = 16

var (
	errLineTooLong = textline.ErrTooLong
	errBadCommand  = textline.ErrMalformed
)

// parseCommand parses one command line; anything but a verb of
// ASCII letters with clean arguments is errBadCommand, which the session
// treats as an unknown command.
func parseCommand(line string) (command, error) {
	return textline.ParseCommand(line, maxVerb)
}

// trimEOL removes a trailing CRLF or LF.
func trimEOL(line string) string { return textline.TrimEOL(line) }

// readLine reads one line of at most max octets, line ending included.
func readLine(r *bufio.Reader, max int) (string, error) { return textline.Read(r, max) }
