package pop3

import (
	"bufio"

	"github.com/maildirector/maildirector/protocols/internal/textline"
)

// command is one client command line (RFC 1939 section 3): a
// case-insensitive keyword, then optionally one space and the arguments.
type command = textline.Command

// maxVerb bounds a keyword; RFC 1939 keywords have 3 or 4 characters and
// extensions (RFC 2449 section 3) are short too.
const maxVerb = 16

var (
	errLineTooLong = textline.ErrTooLong
	errBadCommand  = textline.ErrMalformed
)

// parseCommand parses one command line; anything but a keyword of ASCII
// letters with clean arguments is errBadCommand, which the session treats
// as an unknown command.
func parseCommand(line string) (command, error) { return textline.ParseCommand(line, maxVerb) }

// trimEOL removes a trailing CRLF or LF.
func trimEOL(line string) string { return textline.TrimEOL(line) }

// readLine reads one line of at most max octets, line ending included.
func readLine(r *bufio.Reader, max int) (string, error) { return textline.Read(r, max) }
