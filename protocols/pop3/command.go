package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
)

// command is one client command line (RFC 1939 section 3): a
// case-insensitive keyword, then optionally one space and the arguments.
type command struct {
	Verb string // the keyword, upper-cased
	// Args is everything after the space following the keyword, unchanged
	// (a PASS argument may hold spaces, RFC 1939 section 7).
	Args string
}

// maxVerb bounds a keyword; RFC 1939 keywords have 3 or 4 characters and
// extensions (RFC 2449 section 3) are short too.
const maxVerb = 16

var (
	errLineTooLong = errors.New("line too long")
	errBadCommand  = errors.New("malformed command line")
)

// parseCommand parses one command line; the CRLF (or a bare LF) may still
// be attached. The keyword must be ASCII letters; the arguments must hold no
// CR, LF or NUL. Anything else is errBadCommand, which the session treats as
// an unknown command.
func parseCommand(line string) (command, error) {
	line = trimEOL(line)
	verb, args, hasArgs := strings.Cut(line, " ")
	if verb == "" || len(verb) > maxVerb {
		return command{}, errBadCommand
	}
	for i := 0; i < len(verb); i++ {
		if c := verb[i] | 0x20; c < 'a' || c > 'z' {
			return command{}, errBadCommand
		}
	}
	if strings.ContainsAny(args, "\r\n\x00") || (hasArgs && args == "") {
		return command{}, errBadCommand
	}
	return command{Verb: strings.ToUpper(verb), Args: args}, nil
}

// trimEOL removes a trailing CRLF or LF.
func trimEOL(line string) string {
	line = strings.TrimSuffix(line, "\n")
	return strings.TrimSuffix(line, "\r")
}

// readLine reads one line of at most max octets, line ending included. A
// longer line is errLineTooLong as soon as max octets without a line end
// have arrived (the rest stays unread: the caller ends the session).
func readLine(r *bufio.Reader, max int) (string, error) {
	var line []byte
	for {
		if _, err := r.Peek(1); err != nil { // wait for input
			return "", err
		}
		buf, _ := r.Peek(r.Buffered())
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[:i+1]
		}
		if len(line)+len(buf) > max {
			return "", errLineTooLong
		}
		line = append(line, buf...)
		r.Discard(len(buf))
		if line[len(line)-1] == '\n' {
			return string(line), nil
		}
	}
}
