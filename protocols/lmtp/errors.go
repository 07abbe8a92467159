package lmtp

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/proxy"
)

// reply is one reply to the client (RFC 5321 section 4.2) with its
// enhanced status code (RFC 2034, RFC 3463). It is also an error, so that
// a handler can return the reply it refuses with; [session.fail] writes it.
type reply struct {
	code  int
	enh   string // "2.0.0"; "" only for the greeting
	text  string
	close bool // the session ends after the reply
}

// line is the reply as sent, CRLF included.
func (r reply) line() string { return string(r.appendLine(nil)) }

// appendLine appends the reply as sent, CRLF included, to b.
func (r reply) appendLine(b []byte) []byte {
	b = strconv.AppendInt(b, int64(r.code), 10)
	b = append(b, ' ')
	if r.enh != "" {
		b = append(b, r.enh...)
		b = append(b, ' ')
	}
	b = append(b, r.text...)
	return append(b, "\r\n"...)
}

func (r reply) Error() string {
	return fmt.Sprintf("lmtp reply %q", strings.TrimSuffix(r.line(), "\r\n"))
}

// naming returns r for recipient rcpt after the data: RFC 2033 section
// 4.2 replies come one per recipient, and each names its recipient first.
func (r reply) naming(rcpt string) reply {
	r.text = "<" + rcpt + "> " + trimRcpt(r.text, rcpt)
	return r
}

// Typed errors of the LMTP frontend. [replyFor] renders each as the one
// reply a recipient gets; nothing else decides a reply code.
var (
	// ErrServerUnavailable: no server could take the recipient, or its
	// server failed (down, refused, timed out, dropped the connection,
	// broke the protocol). Rendered 451 4.4.1 (RFC 3463 section 3.5: "No
	// answer from host"): the MTA keeps the message and retries.
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

	// errSpoolBudget: the body would take the frontend's spools past
	// Options.SpoolBudget. Rendered 452 4.3.1 like errSpool: the MTA
	// keeps the message and retries.
	errSpoolBudget = errors.New("lmtp: spool budget exhausted")

	// errClientRead: the client's message data could not be read
	// (timeout, connection lost). Rendered 451 4.4.2 (RFC 3463 section 3.5
	// "Bad connection"); nothing was delivered.
	errClientRead = errors.New("lmtp: read message data")

	// errDataTooLarge: the message is larger than MaxMessageSize.
	errDataTooLarge = errors.New("lmtp: message too large")

	// errDataLineTooLong: a line of the message is longer than MaxLineLength.
	errDataLineTooLong = errors.New("lmtp: message line too long")
)

// Replies the frontend gives of its own. Proxy-side failures are 4xx: the
// MTA tries again later instead of bouncing the message.
var (
	replyOK = reply{code: 250, enh: "2.0.0", text: "OK"}
	// replyUnavailable: RFC 3463 section 3.5, X.4.1 "No answer from host".
	replyUnavailable = reply{code: 451, enh: "4.4.1", text: "Server unavailable, try again later"}
	replyInternal    = reply{code: 451, enh: "4.3.0", text: "Internal error, try again later"}
	// replyHeld: an operator froze the recipient while the mailbox moves
	// (RFC 3463 section 3.3, X.2.0 "Other or undefined mailbox status").
	replyHeld        = reply{code: 451, enh: "4.2.0", text: "Mailbox temporarily unavailable, try again later"}
	replyBareNewline = reply{code: 554, enh: "5.6.0", text: "Message contains a bare CR or LF (RFC 5321 section 2.3.8)"}
	// replyDataLineTooLong: RFC 5321 section 4.5.3.1.6, a text line is at most 1000 octets.
	replyDataLineTooLong = reply{code: 554, enh: "5.6.0", text: "Message line too long"}
	// replyStorage: RFC 5321 section 4.2.3, RFC 3463 section 3.4 X.3.1 "Mail system full".
	replyStorage    = reply{code: 452, enh: "4.3.1", text: "Insufficient system storage, try again later"}
	replyClientRead = reply{code: 451, enh: "4.4.2", text: "Connection error while reading message data"}
	// errTooLarge: RFC 1870 section 6.2, RFC 3463 X.3.4.
	errTooLarge = reply{code: 552, enh: "5.3.4", text: "Message size exceeds fixed maximum message size"}

	// errUnknownCommand answers a command the frontend does not know; the
	// session goes on, but too many end it (errTooManyErrors).
	errUnknownCommand = reply{code: 500, enh: "5.5.1", text: "Unknown command"}
	// errUseLHLO: RFC 2033 section 4.1, LMTP has LHLO and neither HELO nor EHLO.
	errUseLHLO = reply{code: 500, enh: "5.5.1", text: "This is an LMTP server, use LHLO"}
	// errLineTooLong answers an overlong command line (RFC 5321 section
	// 4.5.3.1.4); the rest of the line cannot be told from a command, so
	// the session ends.
	errLineTooLong = reply{code: 500, enh: "5.4.0", text: "Line too long", close: true}
	// errTooManyErrors ends a session that keeps sending bad commands
	// (Postfix's smtpd_hard_error_limit does the same).
	errTooManyErrors  = reply{code: 421, enh: "4.7.0", text: "Too many errors", close: true}
	errSyntax         = reply{code: 501, enh: "5.5.4", text: "Syntax error in parameters"}
	errNotImplemented = reply{code: 502, enh: "5.5.1", text: "Command not implemented"}
	// Out of sequence (RFC 5321 section 4.1.4): 503.
	errLhloFirst  = reply{code: 503, enh: "5.5.1", text: "Send LHLO first"}
	errNestedMail = reply{code: 503, enh: "5.5.1", text: "Nested MAIL command"}
	errMailFirst  = reply{code: 503, enh: "5.5.1", text: "Send MAIL first"}
	// errNoRecipients: RFC 2033 section 4.2, DATA with no successful RCPT
	// MUST fail with 503.
	errNoRecipients = reply{code: 503, enh: "5.5.1", text: "No valid recipients"}
	// errTooManyRecipients: RFC 5321 section 4.5.3.1.10.
	errTooManyRecipients = reply{code: 452, enh: "4.5.3", text: "Too many recipients"}
	errTLSActive         = reply{code: 503, enh: "5.5.1", text: "TLS already active"}
	errTLSInTransaction  = reply{code: 503, enh: "5.5.1", text: "STARTTLS not allowed in a transaction"}
	// errTLSUnavailable: no certificates, the extension is not offered
	// (RFC 5321 section 4.2.4: 502 for a command not implemented).
	errTLSUnavailable = reply{code: 502, enh: "5.5.1", text: "STARTTLS not available"}
	errBDATSequence   = reply{code: 503, enh: "5.5.1", text: "BDAT and DATA cannot be mixed"}
	// errParam: RFC 5321 section 4.1.1.11, an unknown MAIL or RCPT parameter is 555.
	errParam = reply{code: 555, enh: "5.5.4", text: "Unsupported parameter"}
)

// replyFor maps err to the reply a recipient (or a command) gets. A reply
// stays itself; a proxy-side failure is always 4xx, never 5xx (the MTA
// must retry, not bounce). ok is false for errors that were not expected
// here (they are logged and get a generic 451 4.3.0).
func replyFor(err error) (r reply, ok bool) {
	switch {
	case err == nil:
		return replyOK, true
	case errors.As(err, &r):
		return r, true
	case errors.Is(err, proxy.ErrHeld):
		return replyHeld, true
	case errors.Is(err, proxy.ErrServerFailed), errors.Is(err, proxy.ErrUnavailable),
		errors.Is(err, ErrServerUnavailable):
		return replyUnavailable, true
	case errors.Is(err, ErrBareNewline):
		return replyBareNewline, true
	case errors.Is(err, errDataLineTooLong):
		return replyDataLineTooLong, true
	case errors.Is(err, errDataTooLarge):
		return errTooLarge, true
	case errors.Is(err, errSpool), errors.Is(err, errSpoolBudget):
		return replyStorage, true
	case errors.Is(err, errClientRead), errors.Is(err, net.ErrClosed):
		return replyClientRead, true
	}
	return replyInternal, false
}

// serverReply turns a server's reply into one to relay: its code, its
// enhanced code (X.0.0 when it sent none, RFC 2034 section 3) and its
// text, the lines of a multi-line reply joined into one.
func serverReply(rep mailwire.Reply) reply {
	r := reply{code: rep.Code, enh: fmt.Sprintf("%d.0.0", rep.Code/100)}
	var texts []string
	for i, l := range rep.Lines {
		text := ""
		if len(l) > 4 {
			text = l[4:]
		}
		first, rest, _ := strings.Cut(text, " ")
		if ec, ok := parseEnhanced(first); ok && ec[0] == rep.Code/100 {
			if i == 0 {
				r.enh = first
			}
			text = rest
		}
		if text != "" {
			texts = append(texts, text)
		}
	}
	// A control character (a stray CR, say) never reaches the client.
	r.text = strings.Map(func(c rune) rune {
		if c < ' ' || c == 0x7f {
			return ' '
		}
		return c
	}, strings.Join(texts, " "))
	if strings.TrimSpace(r.text) == "" {
		r.text = "OK"
		if r.code/100 != 2 {
			r.text = "Failed"
		}
	}
	return r
}

// trimRcpt drops a "<rcpt> " the server put first; [reply.naming] puts
// its own.
func trimRcpt(msg, rcpt string) string {
	if tok, rest, _ := strings.Cut(msg, " "); strings.EqualFold(tok, "<"+rcpt+">") {
		return rest
	}
	return msg
}

// parseEnhanced parses an RFC 3463 enhanced status code "c.s.d".
func parseEnhanced(s string) ([3]int, bool) {
	var ec [3]int
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

// endSession ends the session without a reply: the client connection
// failed or went away.
type endSession struct{ err error }

func (e *endSession) Error() string { return e.err.Error() }
func (e *endSession) Unwrap() error { return e.err }

// reply queues r for the client; [session.flush] writes the queue. This
// and fail are the only places replies meet the wire.
func (s *session) reply(r reply) {
	s.w.Write(r.appendLine(s.w.AvailableBuffer()))
}

// replyLines queues a multi-line positive reply (LHLO).
func (s *session) replyLines(code int, lines []string) {
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		fmt.Fprintf(s.w, "%d%s%s\r\n", code, sep, l)
	}
}

// flush writes the queued replies, within ClientTimeout.
func (s *session) flush() error {
	if s.w.Buffered() == 0 {
		return nil
	}
	s.nc.SetWriteDeadline(deadline(s.l.opts.clientTimeout()))
	if err := s.w.Flush(); err != nil {
		return &endSession{fmt.Errorf("write reply: %w", err)}
	}
	return nil
}

// fail queues the reply for a handler's error. It returns nil when the
// session goes on, else the error that ends it.
func (s *session) fail(err error) error {
	var end *endSession
	if errors.As(err, &end) {
		return err
	}
	r, ok := replyFor(err)
	if !ok {
		s.log.Warn("lmtp: command failed", "err", err)
	}
	s.reply(r)
	if r.close {
		return err
	}
	if r.code >= 500 {
		s.errors++
		if s.errors >= maxErrors {
			s.reply(errTooManyErrors)
			return errTooManyErrors
		}
	}
	return nil
}
