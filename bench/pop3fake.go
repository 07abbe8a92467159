package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/maildirector/maildirector/internal/mailwire"
)

// The fake POP3 server: just enough POP3 to be proxied and logged in to
// (greeting, CAPA, USER, PASS, AUTH PLAIN, STAT, NOOP, QUIT), an empty
// maildrop for every user. Like the fake IMAP server it isolates the
// proxy: its cost is the same on every path and sits in this process.

// pop3Greeting is the fake server's greeting (RFC 1939 section 4).
const pop3Greeting = "+OK fake POP3 ready\r\n"

// startPOP3Backend listens on addr (host:port, port 0 for any) and serves
// the fake POP3 server until Close.
func startPOP3Backend(addr string) (*backend, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	b := &backend{ln: ln, conns: make(map[net.Conn]struct{}), pop3: true}
	b.wg.Add(1)
	go b.acceptLoop()
	return b, nil
}

// servePOP3 runs one POP3 session. It exits on QUIT, EOF, an error, after
// maxCommands commands or backendIdle of silence.
func (b *backend) servePOP3(c net.Conn) {
	defer b.wg.Done()
	defer func() {
		c.Close()
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
	}()
	if _, err := io.WriteString(c, pop3Greeting); err != nil {
		return
	}
	br := bufio.NewReaderSize(c, maxLine)
	user := ""
	for range maxCommands {
		c.SetReadDeadline(time.Now().Add(backendIdle))
		line, err := mailwire.ReadLine(br, maxLine)
		if err != nil {
			return
		}
		reply, quit := b.pop3Reply(br, c, mailwire.TrimEOL(line), &user)
		if _, err := io.WriteString(c, reply); err != nil || quit {
			return
		}
	}
}

// pop3Reply answers one command line (an AUTH continuation goes to c and
// its answer comes from br); quit ends the session after the reply.
func (b *backend) pop3Reply(br *bufio.Reader, c io.Writer, line string, user *string) (reply string, quit bool) {
	verb, arg, _ := strings.Cut(line, " ")
	switch strings.ToUpper(verb) {
	case "CAPA":
		// RFC 2449 section 5.
		return "+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n", false
	case "USER":
		// RFC 1939 section 7.
		if arg == "" {
			return "-ERR USER needs a name\r\n", false
		}
		*user = arg
		return "+OK\r\n", false
	case "PASS":
		if *user == "" {
			return "-ERR USER first\r\n", false
		}
		return b.pop3LoggedIn(), false
	case "AUTH":
		// RFC 5034 section 4, with or without an initial response.
		mech, ir, _ := strings.Cut(arg, " ")
		if !strings.EqualFold(mech, "PLAIN") {
			return "-ERR unsupported mechanism\r\n", false
		}
		if ir == "" {
			if _, err := io.WriteString(c, "+ \r\n"); err != nil {
				return "", true
			}
			line, err := mailwire.ReadLine(br, maxLine)
			if err != nil {
				return "", true
			}
			ir = mailwire.TrimEOL(line)
		}
		u, err := decodePlain(ir)
		if err != nil {
			return fmt.Sprintf("-ERR %v\r\n", err), false
		}
		*user = u
		return b.pop3LoggedIn(), false
	case "STAT":
		// RFC 1939 section 5: an empty maildrop.
		return "+OK 0 0\r\n", false
	case "NOOP":
		return "+OK\r\n", false
	case "QUIT":
		// RFC 1939 section 6.
		return "+OK bye\r\n", true
	}
	return "-ERR unknown command\r\n", false
}

// pop3LoggedIn counts a login and answers it.
func (b *backend) pop3LoggedIn() string {
	b.mu.Lock()
	b.logins++
	b.mu.Unlock()
	return "+OK Logged in\r\n"
}
