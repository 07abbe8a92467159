package checks

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
)

// errMalformedReply marks a line that is not an SMTP reply line.
var errMalformedReply = errors.New("malformed reply line")

// smtp runs the SMTP or LMTP conversation: greeting 220, hello (EHLO or
// LHLO) answered 250, QUIT answered 221. It returns the hello keywords (the
// reply lines after the first, RFC 5321 section 4.1.1.1, RFC 2033 section 4.1).
func (s *session) smtp(hello, name string) ([]string, error) {
	// RFC 5321 section 4.3.1: the greeting may be multi-line; 554 (or 421)
	// means the server will not talk to us.
	code, lines, err := s.readSMTPReply("greeting")
	if err != nil {
		return nil, err
	}
	if code != 220 {
		// RFC 5321 section 3.1: after a 554 greeting the client sends QUIT
		// and waits for the reply; after 421 the server is closing anyway.
		return nil, s.smtpQuit(s.unexpected("greeting", lines[len(lines)-1], "220"))
	}

	if err := s.send(sendStep(hello), hello+" "+name); err != nil {
		return nil, err
	}
	code, lines, err = s.readSMTPReply(hello)
	if err != nil {
		return nil, err
	}
	if code != 250 {
		return nil, s.smtpQuit(s.unexpected(hello, lines[len(lines)-1], "250"))
	}
	var caps []string
	for _, l := range lines[1:] {
		if len(l) > 4 {
			caps = append(caps, l[4:])
		}
	}
	return caps, s.smtpQuit(nil)
}

// smtpQuit ends the session politely: QUIT answered 221 (RFC 5321 section
// 4.1.1.10). cause is the verdict so far; a dead connection (anything but an
// unexpected reply) gets no QUIT. With a nil cause a failing QUIT is the
// verdict.
func (s *session) smtpQuit(cause error) error {
	if cause != nil && !errors.Is(cause, ErrUnexpectedReply) {
		return cause
	}
	if err := s.send(sendStep("QUIT"), "QUIT"); err != nil {
		return firstErr(cause, err)
	}
	code, lines, err := s.readSMTPReply("QUIT")
	switch {
	case err != nil:
		return firstErr(cause, err)
	case code != 221:
		return firstErr(cause, s.unexpected("QUIT", lines[len(lines)-1], "221"))
	}
	return cause
}

// readSMTPReply reads one reply to cmd ("greeting" for the greeting).
// A malformed line is an unexpected reply quoting it.
func (s *session) readSMTPReply(cmd string) (int, []string, error) {
	step := replyStep(cmd)
	if cmd == "greeting" {
		step = "reading greeting"
	}
	code, lines, err := readSMTPReply(s.r)
	switch {
	case errors.Is(err, errMalformedReply):
		bad := ""
		if len(lines) > 0 {
			bad = lines[len(lines)-1]
		}
		want := "a reply line"
		if cmd == "greeting" {
			want = "220"
		}
		return 0, nil, s.unexpected(cmd, bad, want)
	case err != nil:
		return 0, nil, s.fail(step, err)
	}
	return code, lines, nil
}

// readSMTPReply reads one possibly multi-line reply (RFC 5321 section 4.2):
// lines "code-text" continue it, "code text" or "code" alone ends it, and
// every line carries the same code. It returns the code and the raw lines.
// On errMalformedReply the last line returned is the offending one.
func readSMTPReply(r *bufio.Reader) (int, []string, error) {
	var lines []string
	code := 0
	for range maxLines {
		line, err := readLine(r)
		if err != nil {
			return 0, lines, err
		}
		lines = append(lines, line)
		c, more, ok := parseSMTPLine(line)
		if !ok || (code != 0 && c != code) {
			return 0, lines, fmt.Errorf("%w %q", errMalformedReply, line)
		}
		code = c
		if !more {
			return code, lines, nil
		}
	}
	return 0, lines, ErrTooManyLines
}

// parseSMTPLine parses one reply line: a three-digit code (first digit 2-5,
// RFC 5321 section 4.2.1), then "-" (more lines follow), " " or the end.
func parseSMTPLine(line string) (code int, more, ok bool) {
	if len(line) < 3 || line[0] < '2' || line[0] > '5' ||
		line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' {
		return 0, false, false
	}
	code, _ = strconv.Atoi(line[:3])
	if len(line) == 3 {
		return code, false, true
	}
	switch line[3] {
	case '-':
		return code, true, true
	case ' ':
		return code, false, true
	}
	return 0, false, false
}
