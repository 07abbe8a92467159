package submission

import "github.com/maildirector/maildirector/internal/mailwire"

// command is one client command line (RFC 5321 section 4.1.1):
// a case-insensitive verb, then optionally one space and the arguments.
type command = mailwire.Command

// maxVerb bounds a verb: RFC 5321 verbs have 4 characters, extensions
// a few more (STARTTLS, XCLIENT).
const maxVerb = 16

var (
	errLineTooLong = mailwire.ErrLineTooLong
	errBadCommand  = mailwire.ErrMalformedCommand
)

// parseCommand parses one command line; anything but a verb of
// ASCII letters with clean arguments is errBadCommand, which the session
// treats as an unknown command.
func parseCommand(line string) (command, error) {
	return mailwire.ParseCommand(line, maxVerb)
}
