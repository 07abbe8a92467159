package mailwire

import (
	"bufio"
	"bytes"
	"strings"
)

// ReadLine reads one line of at most max octets, its line end (CRLF or a
// bare LF) included and counted, as RFC 5321 section 4.5.3.1.4 and RFC 2449
// section 4 count their limits. A longer line is ErrLineTooLong as soon as
// more than max octets without a line end have arrived, so a peer cannot
// make the reader buffer without bound or wait for a full buffer.
//
// A line cut off by the end of input is dropped and the error is io.EOF:
// the peer closed, which is not news (a read deadline gives its own error).
func ReadLine(r *bufio.Reader, max int) (string, error) {
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
			return "", ErrLineTooLong
		}
		line = append(line, buf...)
		r.Discard(len(buf))
		if line[len(line)-1] == '\n' {
			return string(line), nil
		}
	}
}

// TrimEOL removes a trailing CRLF or LF.
func TrimEOL(line string) string {
	line = strings.TrimSuffix(line, "\n")
	return strings.TrimSuffix(line, "\r")
}

// Command is one POP3 (RFC 1939 section 3) or SMTP (RFC 5321 section
// 4.1.1) command line, "VERB [SP arguments] CRLF": the keyword in upper
// case and the rest.
type Command struct {
	Verb string
	// Args is everything after the first space, as sent (a POP3 PASS
	// argument may hold spaces, RFC 1939 section 7).
	Args string
}

// ParseCommand parses one command line; its line end may still be
// attached. The keyword must be 1..maxVerb ASCII letters (keywords are
// case-insensitive); the arguments must hold no CR, LF or NUL, and a space
// must be followed by some. Anything else is ErrMalformedCommand.
func ParseCommand(line string, maxVerb int) (Command, error) {
	line = TrimEOL(line)
	verb, args, hasArgs := strings.Cut(line, " ")
	if verb == "" || len(verb) > maxVerb {
		return Command{}, ErrMalformedCommand
	}
	for i := 0; i < len(verb); i++ {
		if c := verb[i] | 0x20; c < 'a' || c > 'z' {
			return Command{}, ErrMalformedCommand
		}
	}
	if strings.ContainsAny(args, "\r\n\x00") || (hasArgs && args == "") {
		return Command{}, ErrMalformedCommand
	}
	return Command{Verb: strings.ToUpper(verb), Args: args}, nil
}
