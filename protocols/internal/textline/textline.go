// Package textline reads and splits the command lines of the line-based
// mail protocols before login: POP3 (RFC 1939 section 3) and SMTP
// submission (RFC 5321 section 4.1.1) both send "VERB [SP arguments] CRLF".
// It uses nothing but the standard library.
//
//	line, err := textline.Read(br, 512)   // capped, line ending included
//	cmd, err := textline.ParseCommand(line, 16)
//	switch cmd.Verb { case "USER": ... }
package textline

import (
	"bufio"
	"bytes"
	"errors"
	"strings"
)

var (
	// ErrTooLong: the line exceeds the cap; the rest stays unread and the
	// caller should end the session.
	ErrTooLong = errors.New("line too long")
	// ErrMalformed: not a keyword command line; frontends treat it as an
	// unknown command (cross-protocol defence).
	ErrMalformed = errors.New("malformed command line")
)

// Command is one command line: the keyword in upper case and the rest.
type Command struct {
	Verb string
	// Args is everything after the first space, as sent (a POP3 PASS
	// argument may hold spaces, RFC 1939 section 7).
	Args string
}

// ParseCommand parses one command line; the CRLF (or a bare LF) may still
// be attached. The keyword must be 1..maxVerb ASCII letters; the arguments
// must hold no CR, LF or NUL, and a space must be followed by some.
func ParseCommand(line string, maxVerb int) (Command, error) {
	line = TrimEOL(line)
	verb, args, hasArgs := strings.Cut(line, " ")
	if verb == "" || len(verb) > maxVerb {
		return Command{}, ErrMalformed
	}
	for i := 0; i < len(verb); i++ {
		if c := verb[i] | 0x20; c < 'a' || c > 'z' {
			return Command{}, ErrMalformed
		}
	}
	if strings.ContainsAny(args, "\r\n\x00") || (hasArgs && args == "") {
		return Command{}, ErrMalformed
	}
	return Command{Verb: strings.ToUpper(verb), Args: args}, nil
}

// TrimEOL removes a trailing CRLF or LF.
func TrimEOL(line string) string {
	line = strings.TrimSuffix(line, "\n")
	return strings.TrimSuffix(line, "\r")
}

// Read reads one line of at most max octets, line ending included. A longer
// line is ErrTooLong as soon as max octets without a line end have arrived,
// so a client cannot make the reader buffer without bound.
func Read(r *bufio.Reader, max int) (string, error) {
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
			return "", ErrTooLong
		}
		line = append(line, buf...)
		r.Discard(len(buf))
		if line[len(line)-1] == '\n' {
			return string(line), nil
		}
	}
}
