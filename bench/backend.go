package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/maildirector/maildirector/internal/mailwire"
)

// The fake backend: a TCP server that speaks just enough IMAP to be proxied
// (greeting, LOGIN, AUTHENTICATE PLAIN, CAPABILITY, NOOP, SELECT, LOGOUT) and holds
// idle connections. It isolates the proxy: its cost is the same on every
// path and sits in this process, not in the one being measured.

// greeting offers SASL-IR and AUTH=PLAIN, so maildirector replays a login
// as one AUTHENTICATE PLAIN line (RFC 4959), as it would to Dovecot.
const greeting = "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n"

const (
	// maxLine caps one command line, line end included; the longest we
	// take is an AUTHENTICATE PLAIN with a short initial response.
	maxLine = 1024
	// maxCommands bounds the commands served on one connection.
	maxCommands = 1000
	// backendIdle ends a connection that is silent this long; longer than
	// any benchmark run.
	backendIdle = 30 * time.Minute
	// bulkPrefix in a user name asks for a bulk transfer after login:
	// "bulk1048576" sends 1 MiB to the client.
	bulkPrefix = "bulk"
	// bulkWriteTimeout bounds each write of a bulk transfer; a client that
	// stops reading ends it.
	bulkWriteTimeout = 30 * time.Second
)

// bulkChunk is what a bulk transfer writes, over and over.
var bulkChunk = bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/\r\n"), 4096)

// backend is the fake IMAP server, or with pop3 the fake POP3 server
// (pop3fake.go).
type backend struct {
	ln   net.Listener
	wg   sync.WaitGroup
	pop3 bool

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	logins int
}

// startBackend listens on addr (host:port, port 0 for any) and serves until Close.
func startBackend(addr string) (*backend, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	b := &backend{ln: ln, conns: make(map[net.Conn]struct{})}
	b.wg.Add(1)
	go b.acceptLoop()
	return b, nil
}

// Addr is the listen address, host:port.
func (b *backend) Addr() string { return b.ln.Addr().String() }

// Logins counts successful logins so far.
func (b *backend) Logins() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.logins
}

// Close stops accepting, closes every connection and waits for their goroutines.
func (b *backend) Close() error {
	err := b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
	return err
}

// acceptLoop serves each connection in its own goroutine. It exits when
// the listener is closed.
func (b *backend) acceptLoop() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: back off a little rather than spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		b.mu.Lock()
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		if b.pop3 {
			go b.servePOP3(c)
		} else {
			go b.serveConn(c)
		}
	}
}

// serveConn runs one session. It exits on LOGOUT, EOF, an error, after
// maxCommands commands or backendIdle of silence.
func (b *backend) serveConn(c net.Conn) {
	defer b.wg.Done()
	defer func() {
		c.Close()
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
	}()
	if _, err := c.Write([]byte(greeting)); err != nil {
		return
	}
	br := bufio.NewReaderSize(c, maxLine)
	for range maxCommands {
		c.SetReadDeadline(time.Now().Add(backendIdle))
		line, err := mailwire.ReadLine(br, maxLine)
		if err != nil {
			return
		}
		cmd, err := parseCommand(mailwire.TrimEOL(line))
		if err != nil {
			fmt.Fprintf(c, "* BAD %v\r\n", err)
			continue
		}
		if !b.handle(c, br, cmd) {
			return
		}
	}
}

// handle answers one command; false ends the connection.
func (b *backend) handle(c net.Conn, br *bufio.Reader, cmd command) bool {
	switch cmd.verb {
	case "CAPABILITY":
		// RFC 9051 section 6.1.1.
		_, err := fmt.Fprintf(c, "* CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN\r\n%s OK done\r\n", cmd.tag)
		return err == nil
	case "NOOP":
		_, err := fmt.Fprintf(c, "%s OK done\r\n", cmd.tag)
		return err == nil
	case "SELECT":
		// RFC 9051 section 6.3.2: an empty mailbox, whatever its name.
		_, err := fmt.Fprintf(c, "* 0 EXISTS\r\n* OK [UIDVALIDITY 1] UIDs valid\r\n* OK [UIDNEXT 1] next\r\n* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n%s OK [READ-WRITE] SELECT completed\r\n", cmd.tag)
		return err == nil
	case "LOGOUT":
		// RFC 9051 section 6.1.3: BYE, then the tagged OK, then close.
		fmt.Fprintf(c, "* BYE logging out\r\n%s OK Logout completed\r\n", cmd.tag)
		return false
	case "LOGIN":
		// RFC 9051 section 6.2.3.
		if len(cmd.args) != 2 {
			_, err := fmt.Fprintf(c, "%s BAD LOGIN needs a user and a password\r\n", cmd.tag)
			return err == nil
		}
		return b.loggedIn(c, cmd.tag, cmd.args[0])
	case "AUTHENTICATE":
		// RFC 9051 section 6.2.2, RFC 4959 for the initial response.
		if len(cmd.args) == 0 || !strings.EqualFold(cmd.args[0], "PLAIN") {
			_, err := fmt.Fprintf(c, "%s NO unsupported mechanism\r\n", cmd.tag)
			return err == nil
		}
		resp := ""
		if len(cmd.args) > 1 {
			resp = cmd.args[1]
		} else {
			if _, err := c.Write([]byte("+ \r\n")); err != nil {
				return false
			}
			line, err := mailwire.ReadLine(br, maxLine)
			if err != nil {
				return false
			}
			resp = mailwire.TrimEOL(line)
		}
		user, err := decodePlain(resp)
		if err != nil {
			_, err := fmt.Fprintf(c, "%s BAD %v\r\n", cmd.tag, err)
			return err == nil
		}
		return b.loggedIn(c, cmd.tag, user)
	default:
		_, err := fmt.Fprintf(c, "%s BAD unknown command\r\n", cmd.tag)
		return err == nil
	}
}

// loggedIn answers a successful login and starts a bulk transfer when the
// user asks for one.
func (b *backend) loggedIn(c net.Conn, tag, user string) bool {
	b.mu.Lock()
	b.logins++
	b.mu.Unlock()
	if _, err := fmt.Fprintf(c, "%s OK Logged in\r\n", tag); err != nil {
		return false
	}
	n, ok := bulkSize(user)
	if !ok {
		return true
	}
	sendBulk(c, n)
	return false
}

// bulkSize returns n for a user "bulk<n>".
func bulkSize(user string) (int64, bool) {
	s, ok := strings.CutPrefix(user, bulkPrefix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}

// sendBulk writes n bytes to c, or fewer if the client goes away.
func sendBulk(c net.Conn, n int64) {
	for left := n; left > 0; {
		chunk := bulkChunk
		if int64(len(chunk)) > left {
			chunk = chunk[:left]
		}
		c.SetWriteDeadline(time.Now().Add(bulkWriteTimeout))
		m, err := c.Write(chunk)
		left -= int64(m)
		if err != nil {
			return
		}
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// command is one parsed client command line.
type command struct {
	tag  string
	verb string // upper case
	args []string
}

// parseCommand splits "tag VERB arg..." (RFC 9051 section 2.2.1). Arguments
// are atoms or quoted strings with \" and \\ escapes; literals are not
// supported (the benchmark clients never send them).
func parseCommand(line string) (command, error) {
	tag, rest, ok := strings.Cut(line, " ")
	if !ok || tag == "" {
		return command{}, errors.New("missing tag or command")
	}
	verb, rest, _ := strings.Cut(rest, " ")
	if verb == "" {
		return command{}, errors.New("missing command")
	}
	cmd := command{tag: tag, verb: strings.ToUpper(verb)}
	for rest != "" {
		if rest[0] == ' ' {
			rest = rest[1:]
			continue
		}
		if rest[0] != '"' {
			arg, r, _ := strings.Cut(rest, " ")
			if strings.HasPrefix(arg, "{") {
				return command{}, errors.New("literals are not supported")
			}
			cmd.args = append(cmd.args, arg)
			rest = r
			continue
		}
		arg, n, err := unquote(rest)
		if err != nil {
			return command{}, err
		}
		cmd.args = append(cmd.args, arg)
		rest = rest[n:]
	}
	return cmd, nil
}

// unquote reads the quoted string at the start of s and returns it with the
// number of bytes it took.
func unquote(s string) (string, int, error) {
	var sb strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '"':
			return sb.String(), i + 1, nil
		case '\\':
			i++
			if i == len(s) || (s[i] != '"' && s[i] != '\\') {
				return "", 0, errors.New("bad escape in quoted string")
			}
		}
		sb.WriteByte(s[i])
	}
	return "", 0, errors.New("unterminated quoted string")
}

// decodePlain returns the authentication identity of a base64 SASL PLAIN
// response (RFC 4616 section 2: authzid NUL authcid NUL passwd).
func decodePlain(b64 string) (string, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("decode PLAIN response: %w", err)
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		return "", errors.New("malformed PLAIN response")
	}
	return parts[1], nil
}
