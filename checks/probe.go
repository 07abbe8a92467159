package checks

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/maildirector/maildirector/internal/mailwire"
)

// Caps on what a probe reads, so a broken or hostile server cannot make a
// check allocate without bound.
const (
	// maxLine caps one reply line, line end included. RFC 5321 section
	// 4.5.3.1.5 allows 512 octets per SMTP reply line, RFC 2449 section 4 512
	// per POP3 line; IMAP CAPABILITY lines are longer but well under this.
	maxLine = 8 << 10
	// maxLines caps the lines of one reply (multi-line SMTP, CAPA, untagged
	// IMAP responses before the tagged one).
	maxLines = 1000
	// maxLiteral caps an IMAP literal a probe skips.
	maxLiteral = 64 << 10
	// maxReplyInReason caps how much of a bad reply a reason quotes.
	maxReplyInReason = 200
)

// Sentinel causes inside a CheckError.
var (
	// ErrUnexpectedReply means the server answered, but not what the probe wanted.
	ErrUnexpectedReply = errors.New("unexpected reply")
	// ErrLineTooLong means a reply line exceeded the probe's cap. It is
	// the mail wire's own error, so errors.Is matches either name.
	ErrLineTooLong = mailwire.ErrLineTooLong
	// ErrTooManyLines means a reply had more lines than the probe accepts.
	ErrTooManyLines = mailwire.ErrTooManyLines
)

// CheckError says which step of a probe failed and why. Its Error text is the
// Reason of the failed Result.
type CheckError struct {
	Type Type
	// Step is what the probe was doing: "connecting", "sending PROXY header",
	// "in TLS handshake", "reading greeting", "sending LHLO", "reading LHLO reply".
	Step string
	// Cmd is the command whose reply was wrong ("greeting" for the greeting,
	// "GET /" for HTTP); set with ErrUnexpectedReply.
	Cmd string
	// Reply is the offending reply line, capped; Want what was expected
	// ("250", "* OK", "+OK"). Set with ErrUnexpectedReply.
	Reply, Want string
	// Timeout is the check's time budget, quoted when Err is a timeout.
	Timeout time.Duration
	// Err is the cause: ErrUnexpectedReply, ErrLineTooLong, io.EOF, a net
	// error, os.ErrDeadlineExceeded, context.Canceled...
	Err error
}

func (e *CheckError) Unwrap() error { return e.Err }

func (e *CheckError) Error() string {
	t := e.Type.String()
	switch {
	case errors.Is(e.Err, ErrUnexpectedReply):
		if e.Cmd == "greeting" {
			return fmt.Sprintf("%s: greeting %q, want %s", t, e.Reply, e.Want)
		}
		return fmt.Sprintf("%s: %s answered %q, want %s", t, e.Cmd, e.Reply, e.Want)
	case errors.Is(e.Err, context.Canceled):
		return fmt.Sprintf("%s: canceled %s", t, e.Step)
	case isTimeout(e.Err):
		return fmt.Sprintf("%s: timeout after %v %s", t, e.Timeout, e.Step)
	case errors.Is(e.Err, io.EOF) || errors.Is(e.Err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("%s: connection closed %s", t, e.Step)
	case errors.Is(e.Err, ErrLineTooLong) || errors.Is(e.Err, ErrTooManyLines):
		return fmt.Sprintf("%s: %v %s", t, e.Err, e.Step)
	}
	// Errno messages ("connection refused", "connection reset by peer") say
	// enough; the address is in the log line.
	var se *os.SyscallError
	if errors.As(e.Err, &se) {
		if e.Step == "connecting" {
			return fmt.Sprintf("%s: %v", t, se.Err)
		}
		return fmt.Sprintf("%s: %v %s", t, se.Err, e.Step)
	}
	return fmt.Sprintf("%s: %s: %v", t, e.Step, e.Err)
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// session is one probe's connection: a deadline for the whole check, a capped
// line reader and the error vocabulary.
type session struct {
	typ     Type
	conn    net.Conn
	r       *bufio.Reader
	timeout time.Duration
}

// runProbe is the default Checker.probe: one check of the configured type
// within Timeout.
func (c *Checker) runProbe(ctx context.Context) Result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	caps, err := c.converse(ctx)
	lat := time.Since(start)
	if err != nil {
		var ce *CheckError
		if errors.As(err, &ce) {
			ce.Timeout = c.opts.Timeout
			if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
				ce.Err = context.Canceled
			}
		}
		return Result{Reason: err.Error(), Latency: lat, Err: err}
	}
	return Result{
		OK:           true,
		Reason:       fmt.Sprintf("%s: OK in %v", c.opts.Type, roundLatency(lat)),
		Latency:      lat,
		Capabilities: caps,
	}
}

// roundLatency keeps reasons short: 3ms, 1.2s, 850µs.
func roundLatency(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(time.Millisecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// converse dials, sends the PROXY header, handshakes TLS and runs the
// protocol's conversation. It always closes the connection.
func (c *Checker) converse(ctx context.Context) ([]string, error) {
	s := &session{typ: c.opts.Type, timeout: c.opts.Timeout}
	conn, err := c.opts.Dial(ctx, "tcp", c.opts.Address)
	if err != nil {
		return nil, s.fail("connecting", err)
	}
	defer conn.Close()
	// One deadline for the whole check; cancelling ctx ends blocked I/O too.
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if err := writeProxyHeader(conn, c.opts.Proxy); err != nil {
		return nil, s.fail("sending PROXY header", err)
	}
	if c.opts.TLS != nil {
		tc := tls.Client(conn, c.opts.TLS)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, s.fail("in TLS handshake", err)
		}
		conn = tc
		defer tc.Close() // sends close_notify before the TCP close
	}
	s.conn = conn
	s.r = bufio.NewReaderSize(conn, 4096)

	switch c.opts.Type {
	case TypeIMAP:
		return s.imap(imapLogin{user: c.opts.User, password: c.opts.Password, selectInbox: c.opts.SelectInbox})
	case TypePOP3:
		return s.pop3()
	case TypeLMTP:
		return s.smtp("LHLO", c.opts.Hostname)
	case TypeSMTP:
		return s.smtp("EHLO", c.opts.Hostname)
	case TypeHTTP:
		return nil, s.http(c.opts.HTTPMethod, c.opts.HTTPPath, c.opts.HTTPHost, c.opts.ExpectStatus, c.opts.ExpectStatusMax)
	case TypeManageSieve:
		return s.managesieve()
	}
	return nil, nil // TypeTCP: connected (and handshaken) is enough
}

// writeProxyHeader sends the PROXY v2 header kind p asks for, if any.
func writeProxyHeader(conn net.Conn, p ProxyHeader) error {
	var h *proxyproto.Header
	switch p {
	case ProxyNone:
		return nil
	case ProxyLocal:
		h = &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	case ProxyV2:
		// Source is our end, destination the server: this connection, as is.
		// Addresses of another kind (a test's net.Pipe) give a LOCAL header.
		h = proxyproto.HeaderProxyFromAddrs(2, conn.LocalAddr(), conn.RemoteAddr())
	}
	_, err := h.WriteTo(conn)
	return err
}

// fail wraps err as a CheckError for step.
func (s *session) fail(step string, err error) error {
	return &CheckError{Type: s.typ, Step: step, Timeout: s.timeout, Err: err}
}

// unexpected builds the CheckError for a wrong reply to cmd.
func (s *session) unexpected(cmd, reply, want string) error {
	if len(reply) > maxReplyInReason {
		reply = reply[:maxReplyInReason] + "..."
	}
	return &CheckError{Type: s.typ, Step: "reading " + cmd + " reply", Cmd: cmd, Reply: reply, Want: want, Timeout: s.timeout, Err: ErrUnexpectedReply}
}

// send writes one command line with CRLF. step names it in errors.
func (s *session) send(step, line string) error {
	if _, err := io.WriteString(s.conn, line+"\r\n"); err != nil {
		return s.fail(step, err)
	}
	return nil
}

// readLine reads one line of at most maxLine octets, line end stripped.
// step names it in errors.
func (s *session) readLine(step string) (string, error) {
	line, err := readLine(s.r)
	if err != nil {
		return "", s.fail(step, err)
	}
	return line, nil
}

// readLine reads one line of at most maxLine octets (mailwire.ReadLine)
// and strips its line end. A last line cut off by EOF is io.EOF.
func readLine(r *bufio.Reader) (string, error) {
	line, err := mailwire.ReadLine(r, maxLine)
	return mailwire.TrimEOL(line), err
}

// replyStep names the reading of cmd's reply as a step.
func replyStep(cmd string) string { return "reading " + cmd + " reply" }

// sendStep names the sending of cmd as a step.
func sendStep(cmd string) string { return "sending " + cmd }

// atoiStrict parses a non-negative decimal without sign or spaces.
func atoiStrict(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}
