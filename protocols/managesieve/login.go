package managesieve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
)

// The server leg: read the server's greeting, replay the client's login as
// AUTHENTICATE PLAIN with an initial response, and map the answer back.
// There is no STARTTLS to the server: the engine's PROXY v2 header tells it
// the client's address and, with the SSL TLV, that the client used TLS,
// which Dovecot counts as secured, as for the other frontends.

const (
	// maxLoginReplyBytes caps everything a server sends from its greeting
	// to the answer to the login, line ends and literals included: a
	// greeting is a few hundred bytes. Past it the server has failed.
	maxLoginReplyBytes = 64 << 10
	// maxServerLines bounds the lines of the greeting and the login's
	// answer.
	maxServerLines = 100
)

// serverLogin returns the step that logs creds in on a freshly dialled
// server (RFC 5804 section 2.1):
//
//   - OK: the answer and anything after it go to the client; relay.
//   - NO: relayed to the client, who may try again (*rejectedError);
//     except NO (TRYLATER) (section 1.3), which says the server could not
//     judge now: the next server is tried, none is counted as failing.
//   - BYE: the server will not go on (it is shutting down, or full): the
//     next server is tried, none is counted as failing.
//   - a greeting that does not end in OK, anything else, or no answer:
//     the server failed ([proxy.ServerFailure]).
func serverLogin(creds sasl.Credentials) proxy.LoginFunc {
	ir := sasl.EncodePlain(creds.Authzid, creds.User, creds.Password)
	return func(ctx context.Context, server net.Conn, t proxy.Target) ([]byte, error) {
		stop := context.AfterFunc(ctx, func() { server.SetDeadline(time.Now()) })
		defer stop()
		l := &serverReader{br: proxy.LoginReader(server), budget: maxLoginReplyBytes, server: t.Server}
		defer proxy.ReleaseLoginReader(l.br)
		if err := l.greeting(); err != nil {
			return nil, err
		}
		if _, err := io.WriteString(server, `AUTHENTICATE "PLAIN" `+mailwire.SieveString(ir, true)+"\r\n"); err != nil {
			return nil, l.failed("send AUTHENTICATE", err)
		}
		sentResponse := false
		for range maxServerLines {
			line, toks, err := l.read("read AUTHENTICATE reply")
			if err != nil {
				return nil, err
			}
			if len(toks) == 1 && toks[0].Kind == mailwire.SieveKindString {
				// A challenge (section 2.1): a server that ignored the
				// initial response asks for it; anything more is not
				// PLAIN, and "*" cancels (the server then says NO).
				answer := "\"*\"\r\n"
				if !sentResponse {
					answer, sentResponse = mailwire.SieveString(ir, true)+"\r\n", true
				}
				if _, err := io.WriteString(server, answer); err != nil {
					return nil, l.failed("send AUTHENTICATE response", err)
				}
				continue
			}
			r, ok := mailwire.ParseSieveResponse(toks)
			switch {
			case !ok:
				return nil, l.failed("AUTHENTICATE", fmt.Errorf("unexpected reply %q", capped(line)))
			case r.Status == "OK":
				reply := []byte(line + "\r\n")
				if n := l.br.Buffered(); n > 0 {
					rest, _ := l.br.Peek(n)
					reply = append(reply, rest...)
				}
				return reply, nil
			case r.Status == "BYE" || r.Code == "TRYLATER":
				return nil, proxy.ServerBusy(fmt.Errorf("server %s: AUTHENTICATE: %q", t.Server, capped(line)))
			}
			return nil, &rejectedError{server: t.Server, reply: line + "\r\n"}
		}
		return nil, l.failed("AUTHENTICATE", fmt.Errorf("more than %d lines before the answer", maxServerLines))
	}
}

// serverReader reads a server's lines within one byte budget.
type serverReader struct {
	br     *bufio.Reader
	budget int
	server string
}

// failed is a server failure at step.
func (l *serverReader) failed(step string, err error) error {
	return proxy.ServerFailure(fmt.Errorf("%s from %s: %w", step, l.server, err))
}

// read reads one line with its literals and splits it; a line that does
// not parse has no tokens.
func (l *serverReader) read(step string) (string, []mailwire.SieveToken, error) {
	line, err := mailwire.ReadSieveLine(l.br, l.budget)
	if errors.Is(err, mailwire.ErrLineTooLong) {
		return "", nil, l.failed(step, fmt.Errorf("more than %d bytes before the login's answer", maxLoginReplyBytes))
	}
	if err != nil {
		return "", nil, l.failed(step, err)
	}
	l.budget -= len(line) + 2
	toks, _ := mailwire.ParseSieveLine(line)
	return line, toks, nil
}

// greeting reads the server's capability lines up to its OK (RFC 5804
// section 1.7). The proxy announced its own capabilities to the client;
// the server's are the health check's business.
func (l *serverReader) greeting() error {
	for range maxServerLines {
		line, toks, err := l.read("read greeting")
		if err != nil {
			return err
		}
		if _, ok := mailwire.ParseSieveCapability(toks); ok {
			continue
		}
		if r, ok := mailwire.ParseSieveResponse(toks); ok && r.Status == "OK" {
			return nil
		}
		return l.failed("greeting", fmt.Errorf("unexpected %q", capped(line)))
	}
	return l.failed("greeting", fmt.Errorf("more than %d lines", maxServerLines))
}

// capped shortens a server's line for an error message.
func capped(line string) string {
	const max = 200
	if len(line) > max {
		return line[:max] + "..."
	}
	return line
}
