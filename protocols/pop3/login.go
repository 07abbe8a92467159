package pop3

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
)

// serverLogin returns the step that logs creds in on a freshly dialled
// server: read its +OK greeting, send AUTH PLAIN with an initial response
// (RFC 5034 section 4; Dovecot supports it, and it is one round trip for
// USER/PASS and AUTH logins alike), read the answer.
//
//   - +OK: the answer and anything after it go to the client; relay.
//   - -ERR: relayed to the client, who may try again (*rejectedError);
//     except -ERR [SYS/TEMP] (RFC 3206 section 4), which says the server
//     could not judge: the next server is tried.
//   - anything else, or no answer: the server failed ([proxy.ServerFailure]).
func serverLogin(creds sasl.Credentials) proxy.LoginFunc {
	ir := sasl.EncodePlain(creds.Authzid, creds.User, creds.Password)
	return func(ctx context.Context, server net.Conn, t proxy.Target) ([]byte, error) {
		stop := context.AfterFunc(ctx, func() { server.SetDeadline(time.Now()) })
		defer stop()
		br := bufio.NewReaderSize(server, maxServerLine)
		failed := func(step string, err error) error {
			return proxy.ServerFailure(fmt.Errorf("%s from %s: %w", step, t.Server, err))
		}
		line, err := mailwire.ReadLine(br, maxServerLine)
		if err != nil {
			return nil, failed("read greeting", err)
		}
		if !mailwire.POP3OK(line) {
			return nil, failed("greeting", fmt.Errorf("unexpected %q", mailwire.TrimEOL(line)))
		}
		if _, err := io.WriteString(server, "AUTH PLAIN "+ir+"\r\n"); err != nil {
			return nil, failed("send AUTH", err)
		}
		line, err = mailwire.ReadLine(br, maxServerLine)
		if err == nil && (strings.HasPrefix(line, "+ ") || mailwire.TrimEOL(line) == "+") {
			// A server that ignores the initial response asks for it.
			if _, err := io.WriteString(server, ir+"\r\n"); err != nil {
				return nil, failed("send AUTH response", err)
			}
			line, err = mailwire.ReadLine(br, maxServerLine)
		}
		if err != nil {
			return nil, failed("read AUTH reply", err)
		}
		switch {
		case mailwire.POP3OK(line):
			reply := []byte(mailwire.TrimEOL(line) + "\r\n")
			if n := br.Buffered(); n > 0 {
				rest, _ := br.Peek(n)
				reply = append(reply, rest...)
			}
			return reply, nil
		case mailwire.POP3Err(line) && strings.HasPrefix(line[4:], " [SYS/TEMP]"):
			return nil, proxy.ServerBusy(fmt.Errorf("server %s: AUTH: temporary failure %q", t.Server, mailwire.TrimEOL(line)))
		case mailwire.POP3Err(line):
			return nil, &rejectedError{server: t.Server, reply: mailwire.TrimEOL(line) + "\r\n"}
		}
		return nil, failed("AUTH", fmt.Errorf("unexpected reply %q", mailwire.TrimEOL(line)))
	}
}
