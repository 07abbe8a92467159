package checks

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/maildirector/maildirector/internal/mailwire"
)

// imapLogin is the optional authenticated part of an IMAP check.
type imapLogin struct {
	user, password string
	selectInbox    bool
}

// imap runs the IMAP conversation: greeting, CAPABILITY, optional LOGIN and
// SELECT INBOX, LOGOUT. It returns the pre-login CAPABILITY atoms.
func (s *session) imap(login imapLogin) ([]string, error) {
	// RFC 9051 section 7.1: the greeting is OK, PREAUTH or BYE. PREAUTH means
	// a session we did not ask for; BYE a server that refuses us.
	line, err := s.readLine("reading greeting")
	if err != nil {
		return nil, err
	}
	if tag, status, _ := parseIMAPResponse(line); tag != "*" || status != "OK" {
		return nil, s.unexpected("greeting", line, `"* OK"`)
	}

	untagged, err := s.imapCommand("a", "CAPABILITY", "CAPABILITY")
	if err != nil {
		return nil, s.imapLogout(err)
	}
	var caps []string
	for _, u := range untagged {
		if c, ok := parseIMAPCapability(u); ok {
			caps = append(caps, c...)
		}
	}

	if login.user != "" {
		if err := s.imapSendLogin(login.user, login.password, caps); err != nil {
			return nil, s.imapLogout(err)
		}
		if _, err := s.imapExpectOK("b", "LOGIN"); err != nil {
			return nil, s.imapLogout(err)
		}
		if login.selectInbox {
			if _, err := s.imapCommand("c", "SELECT INBOX", "SELECT INBOX"); err != nil {
				return nil, s.imapLogout(err)
			}
		}
	}
	return caps, s.imapLogout(nil)
}

// imapCommand sends "tag command" and reads the reply up to the tagged
// status, which must be OK. It returns the untagged lines. name is how errors
// call the command (never the LOGIN arguments).
func (s *session) imapCommand(tag, command, name string) ([]string, error) {
	if err := s.send(sendStep(name), tag+" "+command); err != nil {
		return nil, err
	}
	return s.imapExpectOK(tag, name)
}

// imapExpectOK reads the reply to the command tagged tag, which must be OK.
func (s *session) imapExpectOK(tag, name string) ([]string, error) {
	untagged, status, line, err := s.imapReadTagged(tag, name)
	if err != nil {
		return nil, err
	}
	if status != "OK" {
		return untagged, s.unexpected(name, line, "OK")
	}
	return untagged, nil
}

// imapReadTagged reads responses until the one tagged tag and returns the
// untagged ones, the tagged status and the tagged line. An untagged BYE
// followed by EOF is reported as the reply (RFC 9051 section 7.1.5).
func (s *session) imapReadTagged(tag, name string) (untagged []string, status, tagged string, err error) {
	for range maxLines {
		line, err := s.imapReadResponse(replyStep(name))
		if err != nil {
			if n := len(untagged); n > 0 && errors.Is(err, io.EOF) {
				if _, st, _ := parseIMAPResponse(untagged[n-1]); st == "BYE" {
					return untagged, "BYE", untagged[n-1], nil
				}
			}
			return untagged, "", "", err
		}
		t, st, _ := parseIMAPResponse(line)
		switch t {
		case "*":
			untagged = append(untagged, line)
		case "+":
			// A continuation request we did not ask for.
			return untagged, st, line, nil
		case tag:
			return untagged, st, line, nil
		default:
			return untagged, "", line, s.unexpected(name, line, tag+" OK")
		}
	}
	return untagged, "", "", s.fail(replyStep(name), ErrTooManyLines)
}

// imapReadResponse reads one response line and skips the literals it carries
// (RFC 9051 section 4.3: a line ending in {n} is followed by n octets and the
// rest of the response). Literal contents are replaced by "{n}".
func (s *session) imapReadResponse(step string) (string, error) {
	line, err := s.readLine(step)
	if err != nil {
		return "", err
	}
	for range maxLines {
		n, ok := imapLiteralSize(line)
		if !ok {
			return line, nil
		}
		if n > maxLiteral {
			return "", s.fail(step, fmt.Errorf("literal of %d octets exceeds %d", n, maxLiteral))
		}
		if _, err := s.r.Discard(n); err != nil {
			return "", s.fail(step, err)
		}
		more, err := s.readLine(step)
		if err != nil {
			return "", err
		}
		if len(line)+len(more) > maxLine {
			return "", s.fail(step, ErrLineTooLong)
		}
		line += more
	}
	return "", s.fail(step, ErrTooManyLines)
}

// imapLiteralSize returns n if line ends in a literal announcement "{n}" (or
// the non-synchronizing "{n+}" of RFC 7888, which a server never sends but
// costs nothing to accept).
func imapLiteralSize(line string) (int, bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false
	}
	return atoiStrict(strings.TrimSuffix(line[i+1:len(line)-1], "+"))
}

// imapLogout ends the session politely: LOGOUT, then the server's BYE and
// tagged OK, or EOF (RFC 9051 section 6.1.3). cause is the check's verdict so
// far; when it is a dead connection (timeout, EOF) nothing is sent. With a
// nil cause, a failing LOGOUT is the verdict.
func (s *session) imapLogout(cause error) error {
	if cause != nil && !errors.Is(cause, ErrUnexpectedReply) {
		return cause
	}
	if err := s.send(sendStep("LOGOUT"), "z LOGOUT"); err != nil {
		return firstErr(cause, err)
	}
	_, status, line, err := s.imapReadTagged("z", "LOGOUT")
	switch {
	case err != nil && errors.Is(err, io.EOF):
		// Closed after (or instead of) BYE: that is how LOGOUT ends too.
		return cause
	case err != nil:
		return firstErr(cause, err)
	case status != "OK" && status != "BYE":
		return firstErr(cause, s.unexpected("LOGOUT", line, "OK"))
	}
	return cause
}

// firstErr returns the first non-nil error: the original verdict wins over a
// failure while saying goodbye.
func firstErr(first, second error) error {
	if first != nil {
		return first
	}
	return second
}

// parseIMAPResponse splits a response line into its tag ("*", "+" or a
// command tag) and, for status responses, the upper-cased status (OK, NO,
// BAD, PREAUTH, BYE); rest is what follows. For other untagged data status is
// the upper-cased first atom (CAPABILITY, FLAGS, or a number for "* 3 EXISTS").
func parseIMAPResponse(line string) (tag, status, rest string) {
	tag, rest, _ = strings.Cut(line, " ")
	if tag == "+" {
		return tag, "", rest
	}
	status, rest, _ = strings.Cut(rest, " ")
	return tag, strings.ToUpper(status), rest
}

// parseIMAPCapability returns the capabilities of an untagged CAPABILITY
// response "* CAPABILITY IMAP4rev1 AUTH=PLAIN ..." (RFC 9051 section 7.2.2,
// RFC 3501 section 7.2.1). ok is false for other lines and for lines with an
// empty or malformed capability. Atoms keep their case; compare them with
// strings.EqualFold.
func parseIMAPCapability(line string) (caps []string, ok bool) {
	tag, status, rest := parseIMAPResponse(line)
	if tag != "*" || status != "CAPABILITY" {
		return nil, false
	}
	// capability-data = "CAPABILITY" *(SP capability) SP "IMAP4rev1" ...;
	// capability = ("AUTH=" auth-type) / atom: atoms separated by single spaces.
	for atom := range strings.SplitSeq(rest, " ") {
		if !isIMAPAtom(atom) {
			return nil, false
		}
		caps = append(caps, atom)
	}
	return caps, len(caps) > 0
}

// isIMAPAtom reports whether s is a non-empty run of ATOM-CHAR (RFC 9051
// section 9): any CHAR except atom-specials "(" ")" "{" SP CTL "%" "*" DQUOTE
// "\" "]".
func isIMAPAtom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b <= ' ' || b >= 0x7f || strings.IndexByte(`(){%*"\]`, b) >= 0 {
			return false
		}
	}
	return true
}

// imapSendLogin sends "b LOGIN user password" with each argument as a
// quoted string when it can be one (mailwire.IMAPQuote) and as a literal
// otherwise. Literals
// are non-synchronizing when the server advertises LITERAL+ (RFC 7888), or
// LITERAL- for short ones; otherwise the probe waits for the continuation.
func (s *session) imapSendLogin(user, password string, caps []string) error {
	nonSync := slices.ContainsFunc(caps, func(c string) bool { return strings.EqualFold(c, "LITERAL+") })
	nonSyncSmall := nonSync || slices.ContainsFunc(caps, func(c string) bool { return strings.EqualFold(c, "LITERAL-") })
	// A synchronizing literal splits the command: send up to the literal, wait
	// for "+", go on. line collects what is not sent yet.
	var line strings.Builder
	line.WriteString("b LOGIN")
	for _, arg := range []string{user, password} {
		line.WriteByte(' ')
		if q, ok := mailwire.IMAPQuote(arg); ok {
			line.WriteString(q)
			continue
		}
		if nonSync || (nonSyncSmall && len(arg) <= 4096) {
			fmt.Fprintf(&line, "{%d+}\r\n%s", len(arg), arg)
			continue
		}
		// Synchronizing literal: RFC 9051 section 4.3 / 7.5.
		fmt.Fprintf(&line, "{%d}", len(arg))
		if err := s.send(sendStep("LOGIN"), line.String()); err != nil {
			return err
		}
		l, err := s.imapReadResponse(replyStep("LOGIN"))
		if err != nil {
			return err
		}
		if !strings.HasPrefix(l, "+") {
			return s.unexpected("LOGIN", l, `"+" continuation`)
		}
		line.Reset()
		line.WriteString(arg)
	}
	return s.send(sendStep("LOGIN"), line.String())
}
