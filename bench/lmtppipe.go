package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"time"
)

// pipeClient is an LMTP client that pipelines as Postfix's lmtp(8) does
// with a server that advertises PIPELINING (RFC 2920): MAIL, every RCPT
// and DATA go in one write, and their replies are read together.
type pipeClient struct {
	nc net.Conn
	r  *textproto.Reader
	w  *bufio.Writer
}

// pipeDial connects to addr, reads the greeting and says LHLO.
func pipeDial(addr string) (lmtpSession, error) {
	nc, err := net.DialTimeout("tcp", addr, clientTimeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &pipeClient{nc: nc, r: textproto.NewReader(bufio.NewReader(nc)), w: bufio.NewWriterSize(nc, 32<<10)}
	nc.SetDeadline(time.Now().Add(clientTimeout))
	if _, _, err := c.r.ReadResponse(220); err != nil {
		nc.Close()
		return nil, fmt.Errorf("greeting at %s: %w", addr, err)
	}
	c.w.WriteString("LHLO mta.bench.test\r\n")
	c.w.Flush()
	_, msg, err := c.r.ReadResponse(250)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("LHLO at %s: %w", addr, err)
	}
	if !strings.Contains(msg, "PIPELINING") {
		nc.Close()
		return nil, fmt.Errorf("LHLO at %s: no PIPELINING", addr)
	}
	return c, nil
}

// send runs one transaction; a nil error means every recipient got 250
// after the data. A refused RCPT or DATA leaves the session in step (the
// data is not sent and the transaction is reset).
func (c *pipeClient) send(to []string, msg []byte) (error, bool) {
	err := c.transaction(to, msg)
	var te *textproto.Error
	return err, err == nil || errors.As(err, &te)
}

func (c *pipeClient) transaction(to []string, msg []byte) error {
	c.nc.SetDeadline(time.Now().Add(clientTimeout))
	c.w.WriteString("MAIL FROM:<mta@bench.test>\r\n")
	for _, r := range to {
		c.w.WriteString("RCPT TO:<" + r + ">\r\n")
	}
	c.w.WriteString("DATA\r\n")
	if err := c.w.Flush(); err != nil {
		return err
	}
	var refused error
	if _, msg, err := c.r.ReadResponse(250); err != nil {
		refused = fmt.Errorf("MAIL: %w %s", err, msg)
	}
	accepted := 0
	for _, r := range to {
		_, msg, err := c.r.ReadResponse(250)
		switch {
		case err == nil:
			accepted++
		case refused == nil:
			refused = fmt.Errorf("RCPT %s: %w %s", r, err, msg)
		}
	}
	if _, msg, err := c.r.ReadResponse(354); err != nil || accepted == 0 {
		if err == nil { // 354 with no recipient: end the data at once
			c.w.WriteString(".\r\n")
			c.w.Flush()
			c.r.ReadResponse(250)
			err = fmt.Errorf("no recipient accepted")
		}
		if refused == nil {
			refused = fmt.Errorf("DATA: %w %s", err, msg)
		}
		c.w.WriteString("RSET\r\n")
		c.w.Flush()
		c.r.ReadResponse(250)
		return refused
	}
	// The bench's message has CRLF line ends and no line that begins with
	// "."; it is sent as it is, then the end line (RFC 5321 section 4.5.2).
	if bytes.Contains(msg, []byte("\n.")) || !bytes.HasSuffix(msg, []byte("\r\n")) {
		return fmt.Errorf("message needs dot-stuffing or a final CRLF")
	}
	c.w.Write(msg)
	c.w.WriteString(".\r\n")
	if err := c.w.Flush(); err != nil {
		return err
	}
	// One reply per recipient after the data (RFC 2033 section 4.2),
	// for the accepted ones; the bench counts a message only when every
	// recipient was accepted.
	for range accepted {
		if _, msg, err := c.r.ReadResponse(250); err != nil && refused == nil {
			refused = fmt.Errorf("after the data: %w %s", err, msg)
		}
	}
	return refused
}

func (c *pipeClient) close() {
	c.nc.SetDeadline(time.Now().Add(time.Second))
	c.w.WriteString("QUIT\r\n")
	c.w.Flush()
	c.r.ReadResponse(221)
	c.nc.Close()
}
