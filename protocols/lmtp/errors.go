package lmtp

import (
	"errors"
	"net"
	"strings"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/maildirector/maildirector/proxy"
)

// Typed errors of the LMTP frontend. [replyFor] renders each as the one
// reply a recipient gets; nothing else decides a reply code.
var (
	// ErrServerUnavailable: no server could take the recipient, or its
	// server failed (down, refused, timed out, dropped the connection).
	// Rendered 451 4.4.1 (RFC 3463 section 3.5: "No answer from host"):
	// the MTA keeps the message and retries.
	ErrServerUnavailable = errors.New("lmtp: server unavailable")

	// ErrBareNewline: the message holds a bare CR or LF and BareLF is
	// reject. Rendered 554 5.6.0: RFC 5321 section 2.3.8 allows CR and LF
	// only together as CRLF, section 4.3.2 lists 554 among DATA's
	// permanent failures, and RFC 3463 section 3.7 makes X.6.0 the
	// undefined media (content) error.
	ErrBareNewline = errors.New("lmtp: bare CR or LF in message data")

	// errSpool: the body could not be spooled (disk full, say).
	// Rendered 452 4.3.1 (RFC 5321 section 4.2.3 "insufficient system
	// storage", RFC 3463 section 3.4 "Mail system full").
	errSpool = errors.New("lmtp: spool message")

	// errClientRead: the client's message data could not be read
	// (timeout, connection lost). Rendered 451 4.4.2 (RFC 3463 section 3.5
	// "Bad connection"); nothing was delivered.
	errClientRead = errors.New("lmtp: read message data")
)

// replyFor maps err to the reply a recipient gets. A server's own reply
// (*smtp.SMTPError) is relayed as is; a proxy-side failure is always 4xx,
// never 5xx (the MTA must retry, not bounce). ok is false for errors that
// were not expected here (they are logged and get a generic 451 4.3.0).
func replyFor(err error) (reply *gosmtp.SMTPError, ok bool) {
	var se *gosmtp.SMTPError
	switch {
	case err == nil:
		return &gosmtp.SMTPError{Code: 250, EnhancedCode: gosmtp.EnhancedCode{2, 0, 0}, Message: "OK"}, true
	case errors.Is(err, proxy.ErrServerFailed), errors.Is(err, proxy.ErrUnavailable),
		errors.Is(err, ErrServerUnavailable):
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 4, 1}, Message: "Server unavailable, try again later"}, true
	case errors.Is(err, ErrBareNewline):
		return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 6, 0}, Message: "Message contains a bare CR or LF (RFC 5321 section 2.3.8)"}, true
	case errors.Is(err, gosmtp.ErrTooLongLine):
		// RFC 5321 section 4.5.3.1.6: a text line is at most 1000 octets.
		return &gosmtp.SMTPError{Code: 554, EnhancedCode: gosmtp.EnhancedCode{5, 6, 0}, Message: "Message line too long"}, true
	case errors.Is(err, errSpool):
		return &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 3, 1}, Message: "Insufficient system storage, try again later"}, true
	case errors.Is(err, errClientRead), errors.Is(err, net.ErrClosed):
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 4, 2}, Message: "Connection error while reading message data"}, true
	case errors.As(err, &se):
		// A server's reply, or go-smtp's own (552 5.3.4 too large).
		return se, true
	}
	return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "Internal error, try again later"}, false
}

// serverOK turns the text of a server's 250 reply ("2.0.0 <u@x> Saved")
// into a reply to relay, keeping its enhanced code and message.
func serverOK(text, rcpt string) *gosmtp.SMTPError {
	r := &gosmtp.SMTPError{Code: 250, EnhancedCode: gosmtp.EnhancedCode{2, 0, 0}, Message: "OK"}
	first, rest, _ := strings.Cut(text, " ")
	if ec, ok := parseEnhanced(first); ok && ec[0] == 2 {
		r.EnhancedCode = ec
		text = rest
	}
	if msg := trimRcpt(text, rcpt); msg != "" {
		r.Message = msg
	}
	return r
}

// relayed returns the server's error reply as the recipient's reply,
// without the "<rcpt> " prefix the server may have put first: go-smtp adds
// its own when it writes the reply (RFC 2033 section 4.2 replies name the
// recipient).
func relayed(se *gosmtp.SMTPError, rcpt string) *gosmtp.SMTPError {
	r := *se
	if r.EnhancedCode == gosmtp.EnhancedCodeNotSet || r.EnhancedCode == gosmtp.NoEnhancedCode {
		// RFC 2034 section 3: replies carry enhanced codes; X.0.0 is generic.
		r.EnhancedCode = gosmtp.EnhancedCode{r.Code / 100, 0, 0}
	}
	r.Message = trimRcpt(r.Message, rcpt)
	if r.Message == "" {
		r.Message = "Failed"
	}
	return &r
}

func trimRcpt(msg, rcpt string) string {
	if tok, rest, _ := strings.Cut(msg, " "); strings.EqualFold(tok, "<"+rcpt+">") {
		return rest
	}
	return msg
}

// parseEnhanced parses an RFC 3463 enhanced status code "c.s.d".
func parseEnhanced(s string) (gosmtp.EnhancedCode, bool) {
	var ec gosmtp.EnhancedCode
	for i := range 3 {
		var part string
		if i < 2 {
			var ok bool
			part, s, ok = strings.Cut(s, ".")
			if !ok {
				return ec, false
			}
		} else {
			part = s
		}
		if len(part) == 0 || len(part) > 3 {
			return ec, false
		}
		n := 0
		for _, ch := range []byte(part) {
			if ch < '0' || ch > '9' {
				return ec, false
			}
			n = n*10 + int(ch-'0')
		}
		ec[i] = n
	}
	if ec[0] < 2 || ec[0] > 5 {
		return ec, false
	}
	return ec, true
}

// sequenceReplies are go-smtp v0.25 replies to commands out of order,
// which it sends as 502 (command not implemented). RFC 5321 section 4.1.4
// and the reply table of section 4.3.2 make them 503 (bad sequence of
// commands); [clientConn] rewrites them on the way out.
var sequenceReplies = map[string]bool{
	"Missing MAIL FROM command.":               true,
	"Missing RCPT TO command.":                 true,
	"Please introduce yourself first.":         true,
	"MAIL not allowed during message transfer": true,
	"RCPT not allowed during message transfer": true,
	"DATA not allowed during message transfer": true,
}

// fixSequenceReply returns line with 502 turned into 503 when it is one
// of [sequenceReplies], else line itself.
func fixSequenceReply(line []byte) []byte {
	const prefix = "502 5.5.1 "
	if len(line) < len(prefix)+2 || string(line[:len(prefix)]) != prefix {
		return line
	}
	text := strings.TrimSuffix(string(line[len(prefix):]), "\r\n")
	if !sequenceReplies[text] {
		return line
	}
	out := append([]byte("503"), line[3:]...)
	return out
}
