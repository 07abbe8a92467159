package submission

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// submissionError is a reply the submission frontend sends in place of a
// 2xx/3xx one. Handlers return one; the session writes it in one place
// (submissionSession.fail).
type submissionError struct {
	Code     int    // RFC 5321 section 4.2 reply code
	Enhanced string // RFC 3463 enhanced status code (RFC 2034 ENHANCEDSTATUSCODES)
	Text     string
	Close    bool // the session ends after the reply
}

// Line is the reply as sent, CRLF included.
func (e *submissionError) Line() string {
	return fmt.Sprintf("%d %s %s\r\n", e.Code, e.Enhanced, e.Text)
}

func (e *submissionError) Error() string {
	return fmt.Sprintf("submission reply %q", strings.TrimSuffix(e.Line(), "\r\n"))
}

// Replies in place of a positive one. Proxy-side failures are 4xx: the
// client tries again later instead of bouncing the message.
var (
	// errSubUnknownCommand answers a command unknown before AUTH, and the
	// session ends (cross-protocol defence).
	errSubUnknownCommand = &submissionError{500, "5.5.1", "Unknown command", true}
	// errSubLineTooLongReply answers an overlong line (RFC 5321 section
	// 4.5.3.1.10); the session ends.
	errSubLineTooLongReply = &submissionError{500, "5.5.2", "Line too long", true}
	// errSubTooManyErrors ends a session that keeps failing.
	errSubTooManyErrors = &submissionError{421, "4.7.0", "Too many errors", true}
	// errSubTooManyLogins ends a session after too many failed AUTHs.
	errSubTooManyLogins = &submissionError{421, "4.7.0", "Too many failed authentication attempts", true}
	// errSubAuthRequired answers mail commands before AUTH (RFC 4954
	// section 6; RFC 6409 section 4.3 requires authentication).
	errSubAuthRequired = &submissionError{530, "5.7.0", "Authentication required", false}
	// errSubTLSRequired answers AUTH before STARTTLS when plaintext
	// logins are not allowed (RFC 3207 section 4).
	errSubTLSRequired = &submissionError{530, "5.7.0", "Must issue a STARTTLS command first", false}
	// errSubAuthFailed answers credentials that cannot even be parsed
	// (RFC 4954 section 6); the server's own 535 is relayed as it is.
	errSubAuthFailed = &submissionError{535, "5.7.8", "Authentication credentials invalid", false}
	// errSubAuthCanceled answers "*" (RFC 4954 section 4).
	errSubAuthCanceled = &submissionError{501, "5.0.0", "Authentication canceled", false}
	// errSubInvalidBase64 answers a response that is not base64 (RFC 4954
	// section 4).
	errSubInvalidBase64 = &submissionError{501, "5.5.2", "Cannot decode base64 response", false}
	// errSubMechanism answers AUTH with a mechanism not offered (RFC 4954
	// section 4).
	errSubMechanism = &submissionError{504, "5.5.4", "Unrecognized authentication type", false}
	// errSubEhloFirst answers AUTH without EHLO (RFC 4954 section 4: AUTH
	// is an ESMTP extension).
	errSubEhloFirst = &submissionError{503, "5.5.1", "Send EHLO first", false}
	// errSubSyntax answers a known command with bad arguments.
	errSubSyntax = &submissionError{501, "5.5.4", "Syntax error in parameters", false}
	// errSubNotImplemented answers commands the proxy does not offer.
	errSubNotImplemented = &submissionError{502, "5.5.1", "Command not implemented", false}
	// errSubTLSActive answers STARTTLS on a TLS connection.
	errSubTLSActive = &submissionError{503, "5.5.1", "TLS already active", false}
	// errSubTLSUnavailable answers STARTTLS on a frontend without
	// certificates: the extension is not offered at all (RFC 5321 section
	// 4.2.4: 502 for a command not implemented).
	errSubTLSUnavailable = &submissionError{502, "5.5.1", "STARTTLS not available", false}
	// errSubUnavailable says no server could take the session; the
	// session ends (RFC 5321 section 3.8).
	errSubUnavailable = &submissionError{421, "4.3.0", "Service temporarily unavailable", true}
	// errSubTempAuth answers a failure of the proxy itself during AUTH.
	errSubTempAuth = &submissionError{454, "4.7.0", "Temporary authentication failure", false}
)

// submissionRejected is a server's 5xx answer to the replayed AUTH,
// relayed to the client as it is.
type submissionRejected struct {
	server string
	reply  submissionServerReply
}

func (e *submissionRejected) Error() string {
	return fmt.Sprintf("server %s rejected login: %d", e.server, e.reply.Code)
}

// submissionEnd ends the session without a reply: the client connection
// failed, or the relay could not take over.
type submissionEnd struct{ err error }

func (e *submissionEnd) Error() string { return e.err.Error() }
func (e *submissionEnd) Unwrap() error { return e.err }

// submissionServerReply is one SMTP reply read from a server (RFC 5321
// section 4.2): its code and all its lines as received (CRLF each).
type submissionServerReply struct {
	Code  int
	Lines []string // without the line ending
}

// Raw is the reply as sent to the client, CRLF after each line.
func (r submissionServerReply) Raw() string {
	var b strings.Builder
	for _, l := range r.Lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	return b.String()
}

// Text is the reply's lines without code, for error messages.
func (r submissionServerReply) Text() string {
	var parts []string
	for _, l := range r.Lines {
		if len(l) > 4 {
			parts = append(parts, l[4:])
		}
	}
	return strings.Join(parts, " / ")
}

var errSubBadReply = errors.New("malformed reply")

// readSubmissionReply reads one reply, multi-line or not (RFC 5321
// section 4.2.1): "250-first", ..., "250 last". All lines must carry the
// same three-digit code.
func readSubmissionReply(br *bufio.Reader) (submissionServerReply, error) {
	var r submissionServerReply
	for range subMaxReplyLines {
		line, err := readSubmissionLine(br, subMaxServerLine)
		if err != nil {
			return r, err
		}
		line = trimSubmissionEOL(line)
		code, last, err := parseSubmissionReplyLine(line)
		if err != nil {
			return r, err
		}
		if r.Code != 0 && code != r.Code {
			return r, fmt.Errorf("%w: code %d after %d", errSubBadReply, code, r.Code)
		}
		r.Code = code
		r.Lines = append(r.Lines, line)
		if last {
			return r, nil
		}
	}
	return r, fmt.Errorf("%w: more than %d lines", errSubBadReply, subMaxReplyLines)
}

// parseSubmissionReplyLine parses "ddd", "ddd text" or "ddd-text".
func parseSubmissionReplyLine(line string) (code int, last bool, err error) {
	if len(line) < 3 || line[0] < '2' || line[0] > '5' || !isSubmissionDigit(line[1]) || !isSubmissionDigit(line[2]) {
		return 0, false, errSubBadReply
	}
	code, _ = strconv.Atoi(line[:3])
	switch {
	case len(line) == 3, line[3] == ' ':
		return code, true, nil
	case line[3] == '-':
		return code, false, nil
	}
	return 0, false, errSubBadReply
}

func isSubmissionDigit(c byte) bool { return c >= '0' && c <= '9' }
