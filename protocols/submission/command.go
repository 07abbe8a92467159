package submission

import (
	"bufio"

	"github.com/maildirector/maildirector/protocols/internal/textline"
)

// submissionCommand is one client command line (RFC 5321 section 4.1.1):
// a case-insensitive verb, then optionally one space and the arguments.
type submissionCommand = textline.Command

// subMaxVerb bounds a verb: RFC 5321 verbs have 4 characters, extensions
// a few more (STARTTLS, XCLIENT).
const subMaxVerb = 16

var (
	errSubLineTooLong = textline.ErrTooLong
	errSubBadCommand  = textline.ErrMalformed
)

// parseSubmissionCommand parses one command line; anything but a verb of
// ASCII letters with clean arguments is errSubBadCommand, which the session
// treats as an unknown command.
func parseSubmissionCommand(line string) (submissionCommand, error) {
	return textline.ParseCommand(line, subMaxVerb)
}

// trimSubmissionEOL removes a trailing CRLF or LF.
func trimSubmissionEOL(line string) string { return textline.TrimEOL(line) }

// readSubmissionLine reads one line of at most max octets, line ending included.
func readSubmissionLine(r *bufio.Reader, max int) (string, error) { return textline.Read(r, max) }
