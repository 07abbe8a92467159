package smtp

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
)

// submissionCommand is one client command line (RFC 5321 section 4.1.1):
// a case-insensitive verb, then optionally one space and the arguments.
type submissionCommand struct {
	Verb string // upper-cased
	Args string // everything after the space following the verb, unchanged
}

// subMaxVerb bounds a verb: RFC 5321 verbs have 4 characters, extensions
// a few more (STARTTLS, XCLIENT).
const subMaxVerb = 16

var (
	errSubLineTooLong = errors.New("line too long")
	errSubBadCommand  = errors.New("malformed command line")
)

// parseSubmissionCommand parses one command line; the CRLF (or a bare LF)
// may still be attached. The verb must be ASCII letters; the arguments
// must hold no CR, LF or NUL. Anything else is errSubBadCommand, which the
// session treats as an unknown command.
func parseSubmissionCommand(line string) (submissionCommand, error) {
	line = trimSubmissionEOL(line)
	verb, args, hasArgs := strings.Cut(line, " ")
	if verb == "" || len(verb) > subMaxVerb {
		return submissionCommand{}, errSubBadCommand
	}
	for i := 0; i < len(verb); i++ {
		if c := verb[i] | 0x20; c < 'a' || c > 'z' {
			return submissionCommand{}, errSubBadCommand
		}
	}
	if strings.ContainsAny(args, "\r\n\x00") || (hasArgs && args == "") {
		return submissionCommand{}, errSubBadCommand
	}
	return submissionCommand{Verb: strings.ToUpper(verb), Args: args}, nil
}

// trimSubmissionEOL removes a trailing CRLF or LF.
func trimSubmissionEOL(line string) string {
	line = strings.TrimSuffix(line, "\n")
	return strings.TrimSuffix(line, "\r")
}

// readSubmissionLine reads one line of at most max octets, line ending
// included. A longer line is errSubLineTooLong as soon as max octets
// without a line end have arrived (the rest stays unread: the caller ends
// the session).
func readSubmissionLine(r *bufio.Reader, max int) (string, error) {
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
			return "", errSubLineTooLong
		}
		line = append(line, buf...)
		r.Discard(len(buf))
		if line[len(line)-1] == '\n' {
			return string(line), nil
		}
	}
}
