package checks

import (
	"bufio"
	"errors"
	"strings"

	"github.com/maildirector/maildirector/internal/mailwire"
)

// pop3 runs the POP3 conversation: +OK greeting, CAPA, QUIT. It returns the
// CAPA lines (RFC 2449 section 5).
func (s *session) pop3() ([]string, error) {
	// RFC 1939 section 4: the greeting is a positive response.
	line, err := s.readLine("reading greeting")
	if err != nil {
		return nil, err
	}
	if !mailwire.POP3OK(line) {
		return nil, s.unexpected("greeting", line, `"+OK"`)
	}

	if err := s.send(sendStep("CAPA"), "CAPA"); err != nil {
		return nil, err
	}
	line, err = s.readLine(replyStep("CAPA"))
	if err != nil {
		return nil, err
	}
	var caps []string
	switch {
	case mailwire.POP3OK(line):
		caps, err = readPOP3MultiLine(s.r)
		if err != nil {
			return nil, s.fail(replyStep("CAPA"), err)
		}
	case mailwire.POP3Err(line):
		// RFC 2449 section 5: a server without CAPA answers -ERR. It still
		// talks POP3, so the check passes, with no capabilities.
	default:
		return nil, s.pop3Quit(s.unexpected("CAPA", line, `"+OK"`))
	}
	return caps, s.pop3Quit(nil)
}

// pop3Quit ends the session politely: QUIT answered +OK (RFC 1939 section
// 5, QUIT in the AUTHORIZATION state). cause is the verdict so far.
func (s *session) pop3Quit(cause error) error {
	if cause != nil && !errors.Is(cause, ErrUnexpectedReply) {
		return cause
	}
	if err := s.send(sendStep("QUIT"), "QUIT"); err != nil {
		return firstErr(cause, err)
	}
	line, err := s.readLine(replyStep("QUIT"))
	switch {
	case err != nil:
		return firstErr(cause, err)
	case !mailwire.POP3OK(line):
		return firstErr(cause, s.unexpected("QUIT", line, `"+OK"`))
	}
	return cause
}

// readPOP3MultiLine reads the body of a multi-line response after its status
// line (RFC 1939 section 3): lines up to one holding only ".", with one
// leading "." removed from byte-stuffed lines.
func readPOP3MultiLine(r *bufio.Reader) ([]string, error) {
	var lines []string
	for range maxLines {
		line, err := readLine(r)
		if err != nil {
			return nil, err
		}
		if line == "." {
			return lines, nil
		}
		lines = append(lines, strings.TrimPrefix(line, "."))
	}
	return nil, ErrTooManyLines
}
