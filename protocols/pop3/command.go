package pop3

import "github.com/maildirector/maildirector/internal/mailwire"

// command is one client command line (RFC 1939 section 3): a
// case-insensitive keyword, then optionally one space and the arguments.
type command = mailwire.Command

// maxVerb bounds a keyword; RFC 1939 keywords have 3 or 4 characters and
// extensions (RFC 2449 section 3) are short too.
const maxVerb = 16

var (
	errLineTooLong = mailwire.ErrLineTooLong
	errBadCommand  = mailwire.ErrMalformedCommand
)

// parseCommand parses one command line; anything but a keyword of ASCII
// letters with clean arguments is errBadCommand, which the session treats
// as an unknown command.
func parseCommand(line string) (command, error) { return mailwire.ParseCommand(line, maxVerb) }
