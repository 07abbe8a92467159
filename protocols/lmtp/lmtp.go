package lmtp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/maildirector/maildirector/proxy"
)

// LMTP timeouts and limits, used when the matching option is zero.
const (
	// lmtpDefaultDataTimeout bounds the client's message data and a
	// server's replies after the final dot: RFC 5321 section 4.5.3.2.6
	// gives 10 minutes for the DATA termination reply.
	lmtpDefaultDataTimeout = 10 * time.Minute
	// lmtpDefaultClientTimeout is how long the client may be idle between
	// commands: RFC 5321 section 4.5.3.2.7, the server waits at least 5 minutes.
	lmtpDefaultClientTimeout = 5 * time.Minute
	// lmtpDefaultServerTimeout bounds each server reply before the message
	// data (greeting, LHLO, RSET, MAIL, RCPT, DATA's 354). RFC 5321 section
	// 4.5.3.2 suggests 5 minutes for peers across the internet; the servers
	// here are on the same network, and a recipient waiting on a dead one
	// holds the whole transaction.
	lmtpDefaultServerTimeout = time.Minute
	// lmtpDefaultServerIdle is how long an unused pooled server connection
	// is kept; Dovecot's LMTP server drops idle clients after a few minutes.
	lmtpDefaultServerIdle = 30 * time.Second

	lmtpDefaultMaxRecipients  = 1000
	lmtpDefaultMaxMessageSize = 50 << 20
	lmtpDefaultSpoolMemory    = 1 << 20
	lmtpDefaultMaxServerConns = 16
	lmtpDefaultRetries        = 2
	// lmtpDefaultMaxLineLength is go-smtp's default: twice the 1000 octets
	// of RFC 5321 section 4.5.3.1.6, for the lenient.
	lmtpDefaultMaxLineLength = 2000
)

// LMTPServerDown says what happens to the recipients of a server that cannot
// be reached before it accepted any of them.
type LMTPServerDown int

const (
	// LMTPServerDownTempfail answers them 451 4.4.1; the MTA retries later.
	LMTPServerDownTempfail LMTPServerDown = iota
	// LMTPServerDownNext tries the next server in each user's order (the
	// director's choice, then its hash order). Only for fleets whose
	// servers share the mail storage: otherwise the mail lands on a server
	// that does not own the mailbox.
	LMTPServerDownNext
)

// ParseLMTPServerDown parses the config spelling: tempfail (or empty), next.
func ParseLMTPServerDown(s string) (LMTPServerDown, error) {
	switch s {
	case "", "tempfail":
		return LMTPServerDownTempfail, nil
	case "next":
		return LMTPServerDownNext, nil
	}
	return LMTPServerDownTempfail, fmt.Errorf("unknown server_down %q (want tempfail or next)", s)
}

func (m LMTPServerDown) String() string {
	if m == LMTPServerDownNext {
		return "next"
	}
	return "tempfail"
}

// LMTPBareLF says what happens to a bare CR or LF in message data.
type LMTPBareLF int

const (
	// LMTPBareLFNormalize turns each bare CR or LF into CRLF.
	LMTPBareLFNormalize LMTPBareLF = iota
	// LMTPBareLFReject answers every recipient 554 5.6.0 ([ErrLMTPBareNewline]).
	LMTPBareLFReject
)

// ParseLMTPBareLF parses the config spelling: normalize (or empty), reject.
func ParseLMTPBareLF(s string) (LMTPBareLF, error) {
	switch s {
	case "", "normalize":
		return LMTPBareLFNormalize, nil
	case "reject":
		return LMTPBareLFReject, nil
	}
	return LMTPBareLFNormalize, fmt.Errorf("unknown bare_lf %q (want normalize or reject)", s)
}

func (m LMTPBareLF) String() string {
	if m == LMTPBareLFReject {
		return "reject"
	}
	return "normalize"
}

// LMTPOptions configure the LMTP frontend. Only Picker is required.
type LMTPOptions struct {
	// Picker chooses the server of each recipient. The user it is given is
	// the recipient address as the client wrote it (local-part@domain,
	// without brackets); the director normalises. With ServerDown next,
	// Pick is called again with the failed servers in exclude.
	Picker proxy.Picker
	// Hostname is announced in the greeting and LHLO to servers; empty:
	// os.Hostname, else "localhost".
	Hostname string
	// MaxRecipients per transaction; zero: 1000; negative: no limit. One
	// more is answered 452 4.5.3 (RFC 5321 section 4.5.3.1.10).
	MaxRecipients int
	// MaxMessageSize in bytes, as received; zero: 50 MiB; negative: no
	// limit. Larger messages are answered 552 5.3.4 (RFC 1870 section 6.2
	// and RFC 3463), at MAIL when SIZE says so, else after the data.
	MaxMessageSize int64
	// MaxLineLength of commands and message lines, CRLF included; zero:
	// 2000; negative: no limit. A longer line ends the session
	// (500 5.4.0); recipients of a message with one get 554 5.6.0.
	MaxLineLength int
	// SpoolMemory is how much of a body is held in memory; zero: 1 MiB;
	// negative: every body goes to disk. Larger bodies go to an unlinked
	// temporary file in SpoolDir, released when the transaction ends.
	SpoolMemory int64
	// SpoolDir holds spooled bodies; empty: os.TempDir().
	SpoolDir string
	// ServerDown: zero is LMTPServerDownTempfail.
	ServerDown LMTPServerDown
	// Retries is, with ServerDown next, how many other servers each
	// recipient may try; zero: 2; negative: none.
	Retries int
	// BareLF: zero is LMTPBareLFNormalize.
	BareLF LMTPBareLF
	// MaxServerConns is how many idle connections are kept per server for
	// the next transactions; zero: 16; negative: none (dial every time).
	MaxServerConns int
	// ServerIdle is how long an idle server connection is kept; zero: 30s.
	ServerIdle time.Duration
	// DataTimeout bounds the client's message data, sending it to a server
	// and the server's replies after it; zero: 10 minutes.
	DataTimeout time.Duration
	// ClientTimeout is how long the client may be idle between commands
	// (and how long a reply write may take); zero: 5 minutes.
	ClientTimeout time.Duration
	// ServerTimeout bounds each server reply before the message data; zero:
	// 1 minute. Connecting to a server (TCP, PROXY header, TLS) is bounded
	// by the frontend's Timeouts.Connect.
	ServerTimeout time.Duration
	// Logger receives per-recipient and per-transaction Debug lines; nil:
	// the connection's logger. The session's Info line is the engine's.
	Logger *slog.Logger
}

func lmtpOrDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// limit resolves a "zero: default, negative: none (0)" option.
func lmtpLimit[T int | int64](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

func (o *LMTPOptions) hostname() string {
	if o.Hostname != "" {
		return o.Hostname
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "localhost"
}

func (o *LMTPOptions) spoolMemory() int64 {
	switch {
	case o.SpoolMemory == 0:
		return lmtpDefaultSpoolMemory
	case o.SpoolMemory < 0:
		return 0
	}
	return o.SpoolMemory
}

func (o *LMTPOptions) spoolDir() string {
	if o.SpoolDir != "" {
		return o.SpoolDir
	}
	return os.TempDir()
}

func (o *LMTPOptions) retries() int {
	if o.ServerDown != LMTPServerDownNext {
		return 0
	}
	return lmtpLimit(o.Retries, lmtpDefaultRetries)
}

func (o *LMTPOptions) dataTimeout() time.Duration {
	return lmtpOrDuration(o.DataTimeout, lmtpDefaultDataTimeout)
}

func (o *LMTPOptions) clientTimeout() time.Duration {
	return lmtpOrDuration(o.ClientTimeout, lmtpDefaultClientTimeout)
}

func (o *LMTPOptions) serverTimeout() time.Duration {
	return lmtpOrDuration(o.ServerTimeout, lmtpDefaultServerTimeout)
}

// LMTP is the LMTP frontend (RFC 2033), a [proxy.Handler]. It is
// store-and-forward, not a relay: it takes a whole transaction from the
// MTA, spools the body once, delivers it to each recipient's server over
// pooled LMTP client connections, in parallel, and answers one reply per
// recipient. Safe for concurrent use by many sessions.
type LMTP struct {
	opts     LMTPOptions
	hostname string
	pool     *lmtpPool

	transactions  atomic.Uint64
	recipients    atomic.Uint64
	delivered     atomic.Uint64
	deferred      atomic.Uint64
	rejected      atomic.Uint64
	serverFails   atomic.Uint64
	spooledToDisk atomic.Uint64
	dialed        atomic.Uint64
	reused        atomic.Uint64
}

// NewLMTP returns the LMTP frontend.
func NewLMTP(opts LMTPOptions) *LMTP {
	return &LMTP{
		opts:     opts,
		hostname: opts.hostname(),
		pool: &lmtpPool{
			max:  lmtpLimit(opts.MaxServerConns, lmtpDefaultMaxServerConns),
			idle: lmtpOrDuration(opts.ServerIdle, lmtpDefaultServerIdle),
		},
	}
}

// LMTPStats is a snapshot of the frontend's counters since NewLMTP.
type LMTPStats struct {
	Transactions  uint64 // DATA (or BDAT LAST) with a spooled body
	Recipients    uint64 // replies after the data, one per RCPT
	Delivered     uint64 // of them 250
	Deferred      uint64 // of them 4xx
	Rejected      uint64 // of them 5xx
	ServerFails   uint64 // server legs that failed (down, refused, timeout, dropped)
	SpooledToDisk uint64 // bodies larger than SpoolMemory
	ServerDials   uint64 // server connections opened
	ServerReuses  uint64 // transactions on a pooled server connection
}

// Stats returns the counters. Safe for concurrent use.
func (l *LMTP) Stats() LMTPStats {
	return LMTPStats{
		Transactions: l.transactions.Load(), Recipients: l.recipients.Load(),
		Delivered: l.delivered.Load(), Deferred: l.deferred.Load(), Rejected: l.rejected.Load(),
		ServerFails: l.serverFails.Load(), SpooledToDisk: l.spooledToDisk.Load(),
		ServerDials: l.dialed.Load(), ServerReuses: l.reused.Load(),
	}
}

// Close closes the idle server connections; later transactions dial anew.
// Call it after the engine has shut down.
func (l *LMTP) Close() error {
	l.pool.close()
	return nil
}

// ServeConn runs one LMTP session on c with go-smtp's server in LMTP mode.
// The engine closes c after ServeConn returns; on shutdown it tells the
// client "421 4.3.2" (RFC 5321 section 3.8) once the current command is done.
func (l *LMTP) ServeConn(ctx context.Context, c *proxy.Conn) error {
	c.SetGoodbye("421 4.3.2 Service shutting down\r\n")
	log := c.Logger()
	if l.opts.Logger != nil {
		log = l.opts.Logger.With("conn", c.ID())
	}
	nc := &lmtpClientConn{Conn: c.NetConn(), ctx: ctx, done: make(chan struct{})}
	nc.Conn.SetDeadline(time.Time{}) // go-smtp sets its own from here on

	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(sc *gosmtp.Conn) (gosmtp.Session, error) {
		return &lmtpSession{l: l, c: c, ctx: ctx, sc: sc, log: log}, nil
	}))
	srv.LMTP = true
	srv.Domain = l.hostname
	srv.MaxRecipients = lmtpLimit(l.opts.MaxRecipients, lmtpDefaultMaxRecipients)
	srv.MaxMessageBytes = lmtpLimit(l.opts.MaxMessageSize, lmtpDefaultMaxMessageSize)
	srv.MaxLineLength = lmtpLimit(l.opts.MaxLineLength, lmtpDefaultMaxLineLength)
	srv.ReadTimeout = l.opts.clientTimeout()
	srv.WriteTimeout = l.opts.clientTimeout()
	srv.EnableSMTPUTF8 = true // RFC 6531; passed on where the server has it
	srv.ErrorLog = lmtpErrorLog{log}
	if fe := c.Frontend(); fe.TLS != nil && !fe.ImplicitTLS && !c.IsTLS() {
		// STARTTLS (RFC 3207, which RFC 2033 section 4.1 inherits): go-smtp
		// upgrades the connection and starts its reader afresh, so commands
		// pipelined behind STARTTLS are never executed.
		srv.TLSConfig = fe.TLS
	}

	ln := &lmtpListener{conn: nc, closed: make(chan struct{})}
	srv.Serve(ln) // returns once the one connection is closed
	srv.Shutdown(context.Background())
	if ctx.Err() != nil {
		return nil // the engine ended the session and says why
	}
	return nc.err()
}

// lmtpReadError classifies an error reading the client's message data:
// go-smtp's own replies (552 too large, line too long) stay as they are.
func lmtpReadError(err error) error {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) || errors.Is(err, gosmtp.ErrTooLongLine) {
		return err
	}
	return fmt.Errorf("%w: %w", errLMTPClientRead, err)
}

// lmtpClientConn is the client connection as go-smtp sees it. Once the
// engine cancels ctx (shutdown, kick), reads fail with net.ErrClosed, so
// go-smtp stops quietly and the engine sends its goodbye. Close only stops
// go-smtp's use of it; the engine closes the connection itself.
type lmtpClientConn struct {
	net.Conn
	ctx       context.Context
	done      chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	readErr error // first read failure other than EOF, for the session's log line
}

func (c *lmtpClientConn) Read(p []byte) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	if c.ctx.Err() != nil {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if err != nil {
		if c.ctx.Err() != nil {
			return n, net.ErrClosed
		}
		c.mu.Lock()
		if c.readErr == nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
			c.readErr = err
		}
		c.mu.Unlock()
	}
	return n, err
}

// Write writes one reply line (go-smtp flushes each line on its own),
// with go-smtp's out-of-sequence 502 replies made 503.
func (c *lmtpClientConn) Write(p []byte) (int, error) {
	if _, err := c.Conn.Write(lmtpFixSequenceReply(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *lmtpClientConn) Close() error {
	c.closeOnce.Do(func() { close(c.done) })
	return nil
}

func (c *lmtpClientConn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

// lmtpListener hands go-smtp's Serve exactly one connection. The second
// Accept waits until that connection is closed, then fails, so Serve
// returns when the session is over.
type lmtpListener struct {
	conn      *lmtpClientConn
	accepted  atomic.Bool
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *lmtpListener) Accept() (net.Conn, error) {
	if l.accepted.CompareAndSwap(false, true) {
		return l.conn, nil
	}
	select {
	case <-l.conn.done:
	case <-l.closed:
	}
	return nil, net.ErrClosed
}

func (l *lmtpListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *lmtpListener) Addr() net.Addr { return l.conn.LocalAddr() }

// lmtpErrorLog takes go-smtp's internal error reports: panics at Error,
// connection errors at Debug.
type lmtpErrorLog struct{ log *slog.Logger }

func (e lmtpErrorLog) Printf(format string, v ...any) { e.report(fmt.Sprintf(format, v...)) }
func (e lmtpErrorLog) Println(v ...any)               { e.report(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (e lmtpErrorLog) report(msg string) {
	if strings.HasPrefix(msg, "panic") {
		e.log.Error("lmtp: go-smtp panic", "err", msg)
		return
	}
	e.log.Debug("lmtp: go-smtp", "err", msg)
}

// LMTPHomePicker is implemented by pickers that can name a user's own
// server without ever placing the user elsewhere (cmd's picker, over
// director.Request.Stay). With LMTPServerDownTempfail the frontend uses it
// so that a recipient whose server is down gets 451 4.4.1 rather than
// delivery to a server that does not hold the mailbox.
type LMTPHomePicker interface {
	PickHome(ctx context.Context, user string, client netip.AddrPort) (proxy.Lease, error)
}

// pickHome picks the recipient's server: its own server only when the
// failure policy is tempfail and the picker can tell, else Pick's choice.
func (l *LMTP) pickHome(ctx context.Context, user string, client netip.AddrPort) (proxy.Lease, error) {
	if hp, ok := l.opts.Picker.(LMTPHomePicker); ok && l.opts.ServerDown == LMTPServerDownTempfail {
		return hp.PickHome(ctx, user, client)
	}
	return l.opts.Picker.Pick(ctx, user, client, nil)
}
