package imap

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/proxy"
)

// idTag tags the ID command that forwards the client before the replayed
// login (Options.ForwardID).
const idTag = "L0"

// forwarded is who a session forwards in-band to the server (Options.ForwardID).
type forwarded struct {
	// Session is maildirector's session id (proxy.Conn.SessionID): Dovecot
	// takes it as its own session id.
	Session string
	// Remote is the real client; Local the address it connected to.
	Remote, Local netip.AddrPort
}

// idCommand is the ID command (RFC 2971 section 3.1) that tells a Dovecot
// server the real client and maildirector's session id, with the field
// names Dovecot's own IMAP proxy sends (imap-login's client_update_info):
// x-session-ext-id becomes Dovecot's session id, x-originating-ip/-port its
// rip and rport, x-connected-ip/-port its lip and lport. Dovecot honours
// them only from login_trusted_networks, judged by the connecting address
// (on a haproxy = yes listener, by the PROXY header's client: measured on
// 2.3.19), so they go on a plain connection.
func idCommand(c forwarded) []byte {
	var b strings.Builder
	b.WriteString(idTag + " ID (")
	first := true
	field := func(k, v string) {
		if !first {
			b.WriteByte(' ')
		}
		first = false
		// Every value is a bare IP, a number or a session id of
		// [a-z2-7-] and digits: quoting never fails.
		q, _ := mailwire.IMAPQuote(v)
		b.WriteString(`"` + k + `" ` + q)
	}
	field("x-session-ext-id", c.Session)
	if c.Remote.IsValid() {
		field("x-originating-ip", ipString(c.Remote.Addr()))
		field("x-originating-port", strconv.Itoa(int(c.Remote.Port())))
	}
	if c.Local.IsValid() {
		field("x-connected-ip", ipString(c.Local.Addr()))
		field("x-connected-port", strconv.Itoa(int(c.Local.Port())))
	}
	b.WriteString(")\r\n")
	return []byte(b.String())
}

// ipString is a as Dovecot's net_addr2ip reads it: no zone, and an
// IPv4-mapped IPv6 address as IPv4.
func ipString(a netip.Addr) string { return a.Unmap().WithZone("").String() }

// forwardID sends the ID command and reads up to its tagged answer,
// skipping the untagged "* ID" response; it returns what is left of the
// byte budget. Anything but a tagged OK is the server's failure: every
// Dovecot answers ID with OK (fields from an untrusted address are
// ignored, not refused).
func forwardID(conn net.Conn, br *bufio.Reader, c forwarded, budget int) (int, error) {
	if _, err := conn.Write(idCommand(c)); err != nil {
		return 0, proxy.ServerFailure(fmt.Errorf("send ID: %w", err))
	}
	tagged := idTag + " "
	for range maxServerLines {
		line, err := mailwire.ReadLine(br, budget)
		if errors.Is(err, mailwire.ErrLineTooLong) {
			return 0, proxy.ServerFailure(fmt.Errorf("more than %d bytes before the ID reply", maxLoginReplyBytes))
		}
		if err != nil {
			return 0, proxy.ServerFailure(fmt.Errorf("read ID reply: %w", err))
		}
		budget -= len(line)
		switch {
		case strings.HasPrefix(line, "* "):
			if word(line[2:]) == "BYE" {
				return 0, proxy.ServerBusy(fmt.Errorf("server said BYE in answer to ID: %s", strings.TrimSpace(line)))
			}
			// RFC 2971 section 3.2: "* ID (...)" or "* ID NIL".
		case strings.HasPrefix(line, tagged) && word(line[len(tagged):]) == "OK":
			return budget, nil
		default:
			return 0, proxy.ServerFailure(fmt.Errorf("server refused ID: %s", strings.TrimSpace(line)))
		}
	}
	return 0, proxy.ServerFailure(fmt.Errorf("more than %d lines before the ID reply", maxServerLines))
}
