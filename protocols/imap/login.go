package imap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
)

// The server leg: read the server's greeting, replay the client's login
// under the client's tag, read up to the tagged answer.

const (
	// maxServerLine caps one line from the server before login, line end
	// included; a CAPABILITY line is a few hundred bytes.
	maxServerLine = 64 << 10
	// maxServerLines bounds the untagged lines before the tagged answer.
	maxServerLines = 1000
	// maxServerContinuations bounds "+" requests during the login: one per
	// literal or SASL step, and one for a SASL error challenge.
	maxServerContinuations = 4
)

// loginRequest is one client login, to be replayed on a server.
type loginRequest struct {
	creds sasl.Credentials
	// response is the client's base64 initial response, replayed as is for
	// the OAuth mechanisms.
	response string
}

// replayLogin is the session's proxy.LoginFunc. On the server's tagged OK
// it returns everything the server sent from the first line after its
// greeting on (untagged lines, the OK with its CAPABILITY code, anything
// pipelined behind it): the client sees the server's own answer. A tagged NO
// or BAD is a *rejectedError holding the same lines. A greeting that is not
// "* OK", a BYE, garbage, EOF or a deadline before the answer is a server
// failure: the engine tries the next server.
func replayLogin(ctx context.Context, conn net.Conn, tag string, req loginRequest) ([]byte, error) {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	br := bufio.NewReaderSize(conn, 4096)
	greeting, err := mailwire.ReadLine(br, maxServerLine)
	if err != nil {
		return nil, proxy.ServerFailure(fmt.Errorf("read greeting: %w", err))
	}
	caps, err := parseGreeting(greeting)
	if err != nil {
		return nil, proxy.ServerFailure(err)
	}
	parts, isAuth := loginCommand(tag, req, caps)
	if _, err := conn.Write(parts[0]); err != nil {
		return nil, proxy.ServerFailure(fmt.Errorf("send login: %w", err))
	}
	parts = parts[1:]

	var out []byte
	conts := 0
	tagged := tag + " "
	for range maxServerLines {
		line, err := mailwire.ReadLine(br, maxServerLine)
		if err != nil {
			return nil, proxy.ServerFailure(fmt.Errorf("read login reply: %w", err))
		}
		switch {
		case line[0] == '+':
			// RFC 9051 section 7.5: the server wants the next literal or
			// SASL response.
			conts++
			var next []byte
			switch {
			case conts > maxServerContinuations:
				return nil, proxy.ServerFailure(errors.New("too many continuation requests during login"))
			case len(parts) > 0:
				next, parts = parts[0], parts[1:]
			case isAuth:
				next = saslAbort(req.creds.Mechanism)
			default:
				return nil, proxy.ServerFailure(errors.New("unexpected continuation request during login"))
			}
			if _, err := conn.Write(next); err != nil {
				return nil, proxy.ServerFailure(fmt.Errorf("send login: %w", err))
			}
		case strings.HasPrefix(line, "* "):
			if word(line[2:]) == "BYE" {
				return nil, proxy.ServerFailure(errors.New("server said BYE before answering the login"))
			}
			out = append(out, line...)
		case strings.HasPrefix(line, tagged):
			out = append(out, line...)
			switch word(line[len(tagged):]) {
			case "OK":
				if n := br.Buffered(); n > 0 {
					b, _ := br.Peek(n)
					out = append(out, b...)
				}
				return out, nil
			case "NO", "BAD":
				return nil, &rejectedError{reply: out}
			}
			return nil, proxy.ServerFailure(errors.New("malformed tagged reply to login"))
		default:
			return nil, proxy.ServerFailure(errors.New("malformed reply to login"))
		}
	}
	return nil, proxy.ServerFailure(errors.New("too many lines before the login reply"))
}

// parseGreeting checks a server greeting (RFC 9051 section 7.1.1: "* OK";
// BYE and PREAUTH are no use to a proxy) and returns the capabilities of
// its CAPABILITY response code, upper-cased, if it has one.
func parseGreeting(line string) (map[string]bool, error) {
	s := strings.TrimRight(line, "\r\n")
	rest, ok := strings.CutPrefix(s, "* ")
	if !ok || word(rest) != "OK" {
		if word(rest) == "BYE" {
			return nil, errors.New("server greeted with BYE")
		}
		return nil, errors.New("malformed server greeting")
	}
	caps := make(map[string]bool)
	rest = strings.TrimLeft(rest[2:], " ")
	code, ok := strings.CutPrefix(rest, "[")
	if !ok {
		return caps, nil
	}
	code, _, ok = strings.Cut(code, "]")
	if !ok {
		return caps, nil
	}
	fields := strings.Fields(code)
	if len(fields) == 0 || !strings.EqualFold(fields[0], "CAPABILITY") {
		return caps, nil
	}
	for _, f := range fields[1:] {
		caps[strings.ToUpper(f)] = true
	}
	return caps, nil
}

// loginCommand builds the replayed login in the parts the server takes one
// at a time: the first is sent at once, each next one after a continuation
// request. isAuth says the replay is an AUTHENTICATE.
//
// A PLAIN login without an authorization identity (LOGIN, or AUTHENTICATE
// PLAIN) becomes AUTHENTICATE PLAIN with an initial response when the
// server offers SASL-IR and AUTH=PLAIN (one round trip, no quoting), else
// LOGIN unless the server says LOGINDISABLED. Everything else is an
// AUTHENTICATE of the client's mechanism, with the initial response inline
// under SASL-IR (RFC 4959) or after the server's first "+".
func loginCommand(tag string, req loginRequest, caps map[string]bool) (parts [][]byte, isAuth bool) {
	c := req.creds
	mech, b64 := c.Mechanism, req.response
	if mech == sasl.MechLogin || mech == sasl.MechPlain {
		if c.Authzid == "" && !(caps["SASL-IR"] && caps["AUTH=PLAIN"]) && !caps["LOGINDISABLED"] {
			return loginParts(tag, c.User, c.Password, caps["LITERAL+"] || caps["LITERAL-"]), false
		}
		mech, b64 = sasl.MechPlain, sasl.EncodePlain(c.Authzid, c.User, c.Password)
	}
	if caps["SASL-IR"] {
		return [][]byte{[]byte(tag + " AUTHENTICATE " + mech + " " + b64 + "\r\n")}, true
	}
	return [][]byte{[]byte(tag + " AUTHENTICATE " + mech + "\r\n"), []byte(b64 + "\r\n")}, true
}

// loginParts builds "tag LOGIN user password" (RFC 9051 section 6.2.3),
// each argument a quoted string when it can be one (mailwire.IMAPQuote)
// and a literal otherwise: non-synchronising when the server has LITERAL+ or LITERAL-
// (RFC 7888; our fields are at most 255 octets, under LITERAL-'s 4096),
// else synchronising, which splits the command where the server must say
// "+" first.
func loginParts(tag, user, password string, nonSync bool) [][]byte {
	cur := []byte(tag + " LOGIN ")
	var parts [][]byte
	for i, arg := range []string{user, password} {
		if i > 0 {
			cur = append(cur, ' ')
		}
		if q, ok := mailwire.IMAPQuote(arg); ok {
			cur = append(cur, q...)
			continue
		}
		cur = append(cur, '{')
		cur = strconv.AppendInt(cur, int64(len(arg)), 10)
		if nonSync {
			cur = append(cur, "+}\r\n"...)
		} else {
			cur = append(cur, "}\r\n"...)
			parts = append(parts, cur)
			cur = nil
		}
		cur = append(cur, arg...)
	}
	return append(parts, append(cur, "\r\n"...))
}

// saslAbort is the answer to a SASL challenge the replay does not expect:
// for the OAuth mechanisms the server's error challenge, which the client
// acknowledges with an empty response (XOAUTH2) or a lone kvsep (RFC 7628
// section 3.2.3); for anything else a cancel (RFC 9051 section 6.2.2).
// Either way the server then sends its tagged NO or BAD.
func saslAbort(mech string) []byte {
	switch mech {
	case sasl.MechXOAUTH2:
		return []byte("\r\n")
	case sasl.MechOAuthBearer:
		return []byte("AQ==\r\n")
	}
	return []byte("*\r\n")
}

// word returns the first space-delimited word of s, upper-cased.
func word(s string) string {
	end := strings.IndexAny(s, " \r\n")
	if end < 0 {
		end = len(s)
	}
	if end > 16 {
		return "" // no status word is that long
	}
	return strings.ToUpper(s[:end])
}
