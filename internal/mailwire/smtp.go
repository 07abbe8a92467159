package mailwire

import (
	"bufio"
	"fmt"
	"strings"
)

// Reply is one SMTP or LMTP reply (RFC 5321 section 4.2).
type Reply struct {
	// Code is the three-digit reply code, 200 to 599.
	Code int
	// Lines are the reply's lines as received, code included, line end
	// removed: "250-mx.example", "250 8BITMIME".
	Lines []string
}

// Raw is the reply as it goes on the wire, CRLF after each line.
func (r Reply) Raw() string {
	var b strings.Builder
	for _, l := range r.Lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	return b.String()
}

// Text is the reply's text without the codes, its lines joined by " / ",
// for error messages.
func (r Reply) Text() string {
	var parts []string
	for _, l := range r.Lines {
		if len(l) > 4 {
			parts = append(parts, l[4:])
		}
	}
	return strings.Join(parts, " / ")
}

// ReadSMTPReply reads one reply, single or multi-line (RFC 5321 section
// 4.2.1): "250-first", ..., "250 last" or "250" alone. Every line must carry
// the same code. At most maxLines lines of at most maxLine octets each
// (line end included, as for ReadLine) are read.
//
// A malformed line is ErrMalformedReply, and the Reply returned then holds
// the lines read so far with the offending one last, so the caller can quote
// it. Too many lines are ErrTooManyLines; an overlong line ErrLineTooLong.
func ReadSMTPReply(r *bufio.Reader, maxLines, maxLine int) (Reply, error) {
	var reply Reply
	for range maxLines {
		line, err := ReadLine(r, maxLine)
		if err != nil {
			return reply, err
		}
		line = TrimEOL(line)
		reply.Lines = append(reply.Lines, line)
		code, last, ok := parseSMTPLine(line)
		if !ok {
			return reply, fmt.Errorf("%w %q", ErrMalformedReply, line)
		}
		if reply.Code != 0 && code != reply.Code {
			return reply, fmt.Errorf("%w: code %d after %d", ErrMalformedReply, code, reply.Code)
		}
		reply.Code = code
		if last {
			return reply, nil
		}
	}
	return reply, fmt.Errorf("%w: more than %d", ErrTooManyLines, maxLines)
}

// parseSMTPLine parses one reply line: a three-digit code whose first digit
// is 2 to 5 (RFC 5321 section 4.2.1), then "-" (more lines follow), " " and
// text, or nothing.
func parseSMTPLine(line string) (code int, last, ok bool) {
	if len(line) < 3 || line[0] < '2' || line[0] > '5' || !isDigit(line[1]) || !isDigit(line[2]) {
		return 0, false, false
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	switch {
	case len(line) == 3, line[3] == ' ':
		return code, true, true
	case line[3] == '-':
		return code, false, true
	}
	return 0, false, false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
