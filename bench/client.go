package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/maildirector/maildirector/internal/mailwire"
)

// The benchmark client: the same few IMAP steps on every path, so any
// difference between paths is the proxy's.

// clientTimeout bounds each step of a client before it is logged in.
const clientTimeout = 30 * time.Second

const (
	// maxReplyLines bounds the untagged lines a client reads before its tagged reply.
	maxReplyLines = 100
	// maxReplyLine caps one reply line, line end included.
	maxReplyLine = 4096
)

// errNotOK is a tagged reply other than OK.
type errNotOK struct{ line string }

func (e *errNotOK) Error() string { return fmt.Sprintf("tagged reply is not OK: %q", e.line) }

// client is one IMAP connection.
type client struct {
	c net.Conn
	r *bufio.Reader
}

// dialLogin connects to addr, reads the greeting and logs in as user with
// LOGIN (RFC 9051 section 6.2.3). The connection has no deadline afterwards.
func dialLogin(addr, user string) (*client, error) {
	c, err := net.DialTimeout("tcp", addr, clientTimeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	cl := &client{c: c, r: bufio.NewReaderSize(c, 4096)}
	if err := cl.login(user); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return cl, nil
}

func (cl *client) login(user string) error {
	cl.c.SetDeadline(time.Now().Add(clientTimeout))
	if err := cl.greeting(); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(cl.c, "a1 LOGIN %s secret\r\n", user); err != nil {
		return fmt.Errorf("send login: %w", err)
	}
	return cl.tagged("a1")
}

// greeting reads the server's greeting and wants it to be OK (RFC 9051
// section 7.1.1).
func (cl *client) greeting() error {
	line, err := cl.readLine()
	if err != nil {
		return fmt.Errorf("read greeting: %w", err)
	}
	if !strings.HasPrefix(line, "* OK") {
		return fmt.Errorf("greeting is not OK: %q", line)
	}
	return nil
}

// tagged reads up to the reply tagged tag and wants it to be OK.
func (cl *client) tagged(tag string) error {
	prefix := tag + " "
	for range maxReplyLines {
		line, err := cl.readLine()
		if err != nil {
			return fmt.Errorf("read reply to %s: %w", tag, err)
		}
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			if !strings.HasPrefix(rest, "OK") {
				return &errNotOK{line: line}
			}
			return nil
		}
	}
	return fmt.Errorf("no reply to %s after %d lines", tag, maxReplyLines)
}

// readLine reads one reply line of at most maxReplyLine octets, line end
// stripped.
func (cl *client) readLine() (string, error) {
	line, err := mailwire.ReadLine(cl.r, maxReplyLine)
	return mailwire.TrimEOL(line), err
}

// logout says LOGOUT, waits for the tagged OK and closes.
func (cl *client) logout() error {
	defer cl.c.Close()
	cl.c.SetDeadline(time.Now().Add(clientTimeout))
	if _, err := cl.c.Write([]byte("a2 LOGOUT\r\n")); err != nil {
		return fmt.Errorf("send logout: %w", err)
	}
	return cl.tagged("a2")
}

// Close closes the connection without a goodbye.
func (cl *client) Close() error { return cl.c.Close() }

// drain reads until want bytes arrived, EOF, or the deadline; it returns
// the bytes read. EOF and the deadline are not errors: the caller divides
// what arrived by the time it took.
func (cl *client) drain(want int64, deadline time.Time, buf []byte) (int64, error) {
	cl.c.SetReadDeadline(deadline)
	var got int64
	// Each Read returns at least one byte or an error, so want bounds the loop.
	for got < want {
		n, err := cl.r.Read(buf)
		got += int64(n)
		if err != nil {
			var ne net.Error
			if errors.Is(err, io.EOF) || (errors.As(err, &ne) && ne.Timeout()) {
				return got, nil
			}
			return got, err
		}
	}
	return got, nil
}
