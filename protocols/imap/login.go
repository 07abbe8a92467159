package imap

import (
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
// under a tag of our own, read up to the tagged answer and give it the
// client's tag.

// serverTag tags the replayed login. It is never the client's tag: RFC 9051
// allows tags that Dovecot's imap-login refuses (with "]", over 126 bytes,
// over its input buffer), and it answers them untagged, or with BYE, so
// that the client's input would look like the server's failure. Dovecot's
// own proxy replays under a tag of its own too.
const serverTag = "L1"

const (
	// maxLoginReplyBytes caps everything a server sends from its greeting
	// to the tagged answer to the login, line ends included: a greeting and
	// a CAPABILITY line are a few hundred bytes. Past it the server has
	// failed.
	maxLoginReplyBytes = 64 << 10
	// maxServerLines bounds the lines after the greeting up to the tagged
	// answer.
	maxServerLines = 100
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
	// forward, when set, is sent in an ID command before the login
	// (Options.ForwardID).
	forward *forwarded
}

// replayLogin is the session's proxy.LoginFunc; tag is the client's. On the
// server's tagged OK it returns everything the server sent from the first
// line after its greeting on (untagged lines, the OK with its CAPABILITY
// code under the client's tag, anything pipelined behind it): the client
// sees the server's own answer. A tagged NO or BAD is a *rejectedError
// holding the same lines.
//
// What the server does with the login is the client's business, not the
// server's health: an untagged BAD in answer to it is errServerRefused (the
// client gets BAD; no other server is tried and no failure is counted), a
// BYE is proxy.ErrServerBusy (the next server is tried; no failure is
// counted). A greeting that is not "* OK", garbage, EOF or a
// deadline before the answer, or more than maxLoginReplyBytes or
// maxServerLines before it, is a server failure: the engine tries the next
// server.
func replayLogin(ctx context.Context, conn net.Conn, tag string, req loginRequest) ([]byte, error) {
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	br := proxy.LoginReader(conn)
	defer proxy.ReleaseLoginReader(br)
	budget := maxLoginReplyBytes
	greeting, err := mailwire.ReadLine(br, budget)
	if err != nil {
		return nil, proxy.ServerFailure(fmt.Errorf("read greeting: %w", err))
	}
	budget -= len(greeting)
	caps, err := parseGreeting(greeting)
	if err != nil {
		return nil, proxy.ServerFailure(err)
	}
	if req.forward != nil {
		if budget, err = forwardID(conn, br, *req.forward, budget); err != nil {
			return nil, err
		}
	}
	parts, isAuth := loginCommand(serverTag, req, caps)
	if _, err := conn.Write(parts[0]); err != nil {
		return nil, proxy.ServerFailure(fmt.Errorf("send login: %w", err))
	}
	parts = parts[1:]

	var out []byte
	conts := 0
	tagged := serverTag + " "
	for range maxServerLines {
		line, err := mailwire.ReadLine(br, budget)
		if errors.Is(err, mailwire.ErrLineTooLong) {
			return nil, proxy.ServerFailure(fmt.Errorf("more than %d bytes before the login reply", maxLoginReplyBytes))
		}
		if err != nil {
			return nil, proxy.ServerFailure(fmt.Errorf("read login reply: %w", err))
		}
		budget -= len(line)
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
			switch w := word(line[2:]); w {
			case "BAD":
				// RFC 9051 section 7.1.3: a command the server could not
				// parse (it sends no tagged answer then): the client's
				// input, which another server would refuse as well.
				return nil, fmt.Errorf("%w: untagged BAD", errServerRefused)
			case "BYE":
				// RFC 9051 section 7.1.5: the server will not go on (it is
				// shutting down, or the input overran its buffer). It
				// greeted and answered, so it is alive: the next server
				// is tried, and none is counted as failing.
				return nil, proxy.ServerBusy(fmt.Errorf("server said BYE before answering the login: %s", strings.TrimSpace(line)))
			}
			out = append(out, line...)
		case strings.HasPrefix(line, tagged):
			// The client sees its own tag on the server's answer.
			out = append(append(out, tag...), line[len(serverTag):]...)
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
	return nil, proxy.ServerFailure(fmt.Errorf("more than %d lines before the login reply", maxServerLines))
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
