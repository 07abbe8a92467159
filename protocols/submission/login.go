package submission

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

// serverLogin is the server leg of one AUTH: what the client said that
// the server must hear again.
type serverLogin struct {
	creds      sasl.Credentials
	helo       string          // the client's EHLO name
	client     netip.AddrPort  // the real client, for XCLIENT
	viaXClient map[string]bool // Options.XClient: servers told the client by XCLIENT
}

// run is the [proxy.LoginFunc]: read the server's 220 greeting, EHLO with
// the client's name (Dovecot's submission service wants an EHLO before
// AUTH), then, when the target wants XCLIENT rather than a PROXY header,
// XCLIENT with the client's address and name (Postfix's XCLIENT, which
// Dovecot submission implements: the server answers 220 and wants a new
// EHLO), then AUTH PLAIN with an initial response (RFC 4954 section 4).
//
//   - 235: the reply and anything after it go to the client; relay.
//   - 5xx: relayed to the client, who may try again (*rejectedError).
//   - 4xx: the server could not judge (its auth service is down, say):
//     the next server is tried, as for no answer at all.
func (l *serverLogin) run(ctx context.Context, server net.Conn, t proxy.Target) ([]byte, error) {
	stop := context.AfterFunc(ctx, func() { server.SetDeadline(time.Now()) })
	defer stop()
	br := proxy.LoginReader(server)
	defer proxy.ReleaseLoginReader(br)
	failed := func(step string, err error) error {
		return proxy.ServerFailure(fmt.Errorf("%s with %s: %w", step, t.Server, err))
	}
	// exchange sends line (if any) and reads the reply, which must have code want.
	exchange := func(step, line string, want int) (mailwire.Reply, error) {
		if line != "" {
			if _, err := io.WriteString(server, line+"\r\n"); err != nil {
				return mailwire.Reply{}, failed(step, err)
			}
		}
		r, err := mailwire.ReadSMTPReply(br, maxReplyLines, maxServerLine)
		if err != nil {
			return r, failed(step, err)
		}
		if want != 0 && r.Code != want {
			return r, failed(step, fmt.Errorf("unexpected reply %q", r.Text()))
		}
		return r, nil
	}

	if _, err := exchange("greeting", "", 220); err != nil {
		return nil, err
	}
	if _, err := exchange("EHLO", "EHLO "+l.helo, 250); err != nil {
		return nil, err
	}
	if l.viaXClient[t.Name()] {
		if _, err := exchange("XCLIENT", l.xclient(), 220); err != nil {
			return nil, err
		}
		if _, err := exchange("EHLO after XCLIENT", "EHLO "+l.helo, 250); err != nil {
			return nil, err
		}
	}
	ir := sasl.EncodePlain(l.creds.Authzid, l.creds.User, l.creds.Password)
	r, err := exchange("AUTH", "AUTH PLAIN "+ir, 0)
	if err == nil && r.Code == 334 {
		// A server that ignores the initial response asks for it.
		r, err = exchange("AUTH", ir, 0)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case r.Code == 235:
		reply := []byte(r.Raw())
		if n := br.Buffered(); n > 0 {
			rest, _ := br.Peek(n)
			reply = append(reply, rest...)
		}
		return reply, nil
	case r.Code >= 500:
		return nil, &rejectedError{server: t.Server, reply: r}
	case r.Code >= 400:
		// 454 4.7.0 and friends (RFC 4954 section 6): the server cannot
		// authenticate now; another may.
		return nil, proxy.ServerBusy(fmt.Errorf("server %s: AUTH: reply %d %q", t.Server, r.Code, r.Text()))
	}
	return nil, failed("AUTH", fmt.Errorf("reply %d %q", r.Code, r.Text()))
}

// xclient is the XCLIENT command line (Postfix XCLIENT_README): the real
// client's address and port, its EHLO name and the login, xtext-encoded
// (RFC 3461 section 4). An IPv6 address carries Postfix's "IPV6:" prefix.
func (l *serverLogin) xclient() string {
	var b strings.Builder
	b.WriteString("XCLIENT")
	if a := l.client.Addr(); a.IsValid() {
		addr := a.Unmap().String()
		if a.Unmap().Is6() {
			addr = "IPV6:" + addr
		}
		b.WriteString(" ADDR=" + xtext(addr))
		b.WriteString(" PORT=" + strconv.Itoa(int(l.client.Port())))
	}
	b.WriteString(" HELO=" + xtext(l.helo))
	b.WriteString(" LOGIN=" + xtext(l.creds.User))
	b.WriteString(" PROTO=ESMTP")
	return b.String()
}

// xtext encodes s as RFC 3461 section 4 xtext: printable ASCII except
// "+" and "=" as is, everything else as "+HH".
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
