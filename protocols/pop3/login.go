package pop3

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
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
//
// With fwd set (Options.ForwardID), XCLIENT (see xclientCommand) goes
// between the greeting and AUTH, and anything but +OK to it is the
// server's failure.
func serverLogin(creds sasl.Credentials, fwd *forwarded) proxy.LoginFunc {
	ir := sasl.EncodePlain(creds.Authzid, creds.User, creds.Password)
	return func(ctx context.Context, server net.Conn, t proxy.Target) ([]byte, error) {
		stop := context.AfterFunc(ctx, func() { server.SetDeadline(time.Now()) })
		defer stop()
		br := proxy.LoginReader(server)
		defer proxy.ReleaseLoginReader(br)
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
		if fwd != nil {
			if _, err := io.WriteString(server, xclientCommand(*fwd)); err != nil {
				return nil, failed("send XCLIENT", err)
			}
			line, err := mailwire.ReadLine(br, maxServerLine)
			if err != nil {
				return nil, failed("read XCLIENT reply", err)
			}
			if !mailwire.POP3OK(line) {
				// Dovecot: "-ERR You are not from trusted IP" when this
				// host is not in its login_trusted_networks.
				return nil, failed("XCLIENT", fmt.Errorf("refused: %q", mailwire.TrimEOL(line)))
			}
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

// forwarded is who a session forwards in-band to the server (Options.ForwardID).
type forwarded struct {
	// Session is maildirector's session id (proxy.Conn.SessionID).
	Session string
	// Remote is the real client.
	Remote netip.AddrPort
}

// xclientCommand is the XCLIENT line Dovecot's pop3-login takes from a
// proxy in its login_trusted_networks (what Dovecot's own POP3 proxy
// sends): ADDR and PORT become its rip and rport, SESSION its session id.
// Dovecot 2.3 has no attribute for the address the client connected to.
func xclientCommand(c forwarded) string {
	var b strings.Builder
	b.WriteString("XCLIENT")
	if c.Remote.IsValid() {
		b.WriteString(" ADDR=" + c.Remote.Addr().Unmap().WithZone("").String())
		b.WriteString(" PORT=" + strconv.Itoa(int(c.Remote.Port())))
	}
	// A session id is [a-z2-7-] and digits: a bare word.
	b.WriteString(" SESSION=" + c.Session + "\r\n")
	return b.String()
}
