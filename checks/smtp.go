package checks

import (
	"errors"

	"github.com/maildirector/maildirector/internal/mailwire"
)

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

// readSMTPReply reads one reply to cmd ("greeting" for the greeting)
// and returns its code and lines (mailwire.ReadSMTPReply). A malformed line
// is an unexpected reply quoting it.
func (s *session) readSMTPReply(cmd string) (int, []string, error) {
	step := replyStep(cmd)
	if cmd == "greeting" {
		step = "reading greeting"
	}
	r, err := mailwire.ReadSMTPReply(s.r, maxLines, maxLine)
	switch {
	case errors.Is(err, mailwire.ErrMalformedReply):
		want := "a reply line"
		if cmd == "greeting" {
			want = "220"
		}
		return 0, nil, s.unexpected(cmd, r.Lines[len(r.Lines)-1], want)
	case err != nil:
		return 0, nil, s.fail(step, err)
	}
	return r.Code, r.Lines, nil
}
