package lmtp

import (
	"bytes"
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
	// defaultDataTimeout bounds the client's message data and a
	// server's replies after the final dot: RFC 5321 section 4.5.3.2.6
	// gives 10 minutes for the DATA termination reply.
	defaultDataTimeout = 10 * time.Minute
	// defaultClientTimeout is how long the client may be idle between
	// commands: RFC 5321 section 4.5.3.2.7, the server waits at least 5 minutes.
	defaultClientTimeout = 5 * time.Minute
	// defaultServerTimeout bounds each server reply before the message
	// data (greeting, LHLO, RSET, MAIL, RCPT, DATA's 354). RFC 5321 section
	// 4.5.3.2 suggests 5 minutes for peers across the internet; the servers
	// here are on the same network, and a recipient waiting on a dead one
	// holds the whole transaction.
	defaultServerTimeout = time.Minute
	// defaultServerIdle is how long an unused pooled server connection
	// is kept; Dovecot's LMTP server drops idle clients after a few minutes.
	defaultServerIdle = 30 * time.Second

	defaultMaxRecipients  = 1000
	defaultMaxMessageSize = 50 << 20
	defaultSpoolMemory    = 1 << 20
	defaultMaxServerConns = 16
	// noTimeout stands for a timeout set to none: go-smtp's client has no
	// "no deadline", and a century is as good.
	noTimeout = 100 * 365 * 24 * time.Hour
	// defaultMaxLineLength is go-smtp's default: twice the 1000 octets
	// of RFC 5321 section 4.5.3.1.6, for the lenient.
	defaultMaxLineLength = 2000
)

// ServerDown says what happens to the recipients of a server that cannot
// be reached before it accepted any of them.
type ServerDown int

const (
	// ServerDownTempfail answers them 451 4.4.1; the MTA retries later.
	ServerDownTempfail ServerDown = iota
	// ServerDownNext tries the next server in each user's order (the
	// director's choice, then its hash order). Only for fleets whose
	// servers share the mail storage: otherwise the mail lands on a server
	// that does not own the mailbox.
	ServerDownNext
)

// ParseServerDown parses the config spelling: tempfail (or empty), next.
func ParseServerDown(s string) (ServerDown, error) {
	switch s {
	case "", "tempfail":
		return ServerDownTempfail, nil
	case "next":
		return ServerDownNext, nil
	}
	return ServerDownTempfail, fmt.Errorf("unknown server_down %q (want tempfail or next)", s)
}

func (m ServerDown) String() string {
	if m == ServerDownNext {
		return "next"
	}
	return "tempfail"
}

// BareLF says what happens to a bare CR or LF in message data.
type BareLF int

const (
	// BareLFNormalize turns each bare CR or LF into CRLF.
	BareLFNormalize BareLF = iota
	// BareLFReject answers every recipient 554 5.6.0 ([ErrBareNewline]).
	BareLFReject
)

// ParseBareLF parses the config spelling: normalize (or empty), reject.
func ParseBareLF(s string) (BareLF, error) {
	switch s {
	case "", "normalize":
		return BareLFNormalize, nil
	case "reject":
		return BareLFReject, nil
	}
	return BareLFNormalize, fmt.Errorf("unknown bare_lf %q (want normalize or reject)", s)
}

func (m BareLF) String() string {
	if m == BareLFReject {
		return "reject"
	}
	return "normalize"
}

// Options configure the LMTP frontend. Only Picker is required.
type Options struct {
	// Picker chooses the server of each recipient. The user it is given is
	// the recipient address as the client wrote it (local-part@domain,
	// without brackets); the director normalises. With ServerDown next,
	// Pick is called again with the failed servers in exclude.
	Picker proxy.Picker
	// Hostname is announced in the greeting and LHLO to servers; empty:
	// "localhost". (The configuration resolves the machine's name.)
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
	// ServerDown: zero is ServerDownTempfail.
	ServerDown ServerDown
	// BareLF: zero is BareLFNormalize.
	BareLF BareLF
	// MaxServerConns is how many idle connections are kept per server for
	// the next transactions; zero: 16; negative: none (dial every time).
	MaxServerConns int
	// ServerIdle is how long an idle server connection is kept; zero: 30s;
	// negative: no limit.
	ServerIdle time.Duration
	// DataTimeout bounds the client's message data, sending it to a server
	// and the server's replies after it; zero: 10 minutes; negative: none.
	DataTimeout time.Duration
	// ClientTimeout is how long the client may be idle between commands
	// (and how long a reply write may take); zero: 5 minutes; negative: none.
	ClientTimeout time.Duration
	// ServerTimeout bounds each server reply before the message data; zero:
	// 1 minute; negative: none. Connecting to a server (TCP, PROXY header, TLS) is bounded
	// by the frontend's Timeouts.Connect.
	ServerTimeout time.Duration
}

// orDuration resolves a timeout option: zero is def, negative is none.
func orDuration(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return noTimeout
	}
	return d
}

// limit resolves a "zero: default, negative: none (0)" option.
func limit[T int | int64](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

func (o *Options) hostname() string {
	if o.Hostname != "" {
		return o.Hostname
	}
	return "localhost"
}

func (o *Options) spoolMemory() int64 {
	switch {
	case o.SpoolMemory == 0:
		return defaultSpoolMemory
	case o.SpoolMemory < 0:
		return 0
	}
	return o.SpoolMemory
}

func (o *Options) spoolDir() string {
	if o.SpoolDir != "" {
		return o.SpoolDir
	}
	return os.TempDir()
}

func (o *Options) dataTimeout() time.Duration {
	return orDuration(o.DataTimeout, defaultDataTimeout)
}

func (o *Options) clientTimeout() time.Duration {
	return orDuration(o.ClientTimeout, defaultClientTimeout)
}

func (o *Options) serverTimeout() time.Duration {
	return orDuration(o.ServerTimeout, defaultServerTimeout)
}

// Frontend is the LMTP frontend (RFC 2033), a [proxy.Handler]. It is
// store-and-forward, not a relay: it takes a whole transaction from the
// MTA, spools the body once, delivers it to each recipient's server over
// pooled LMTP client connections, in parallel, and answers one reply per
// recipient. Safe for concurrent use by many sessions.
type Frontend struct {
	opts     Options
	hostname string
	pool     *pool

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

// New returns the LMTP frontend.
func New(opts Options) *Frontend {
	return &Frontend{
		opts:     opts,
		hostname: opts.hostname(),
		pool: &pool{
			max:  limit(opts.MaxServerConns, defaultMaxServerConns),
			idle: orDuration(opts.ServerIdle, defaultServerIdle),
		},
	}
}

// Stats is a snapshot of the frontend's counters since New.
type Stats struct {
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
func (l *Frontend) Stats() Stats {
	return Stats{
		Transactions: l.transactions.Load(), Recipients: l.recipients.Load(),
		Delivered: l.delivered.Load(), Deferred: l.deferred.Load(), Rejected: l.rejected.Load(),
		ServerFails: l.serverFails.Load(), SpooledToDisk: l.spooledToDisk.Load(),
		ServerDials: l.dialed.Load(), ServerReuses: l.reused.Load(),
	}
}

// Close closes the idle server connections; later transactions dial anew.
// Call it after the engine has shut down.
func (l *Frontend) Close() error {
	l.pool.close()
	return nil
}

// ServeConn runs one LMTP session on c with go-smtp's server in LMTP mode.
// The engine closes c after ServeConn returns; on shutdown it tells the
// client "421 4.3.2" (RFC 5321 section 3.8) once the current command is done.
func (l *Frontend) ServeConn(ctx context.Context, c *proxy.Conn) error {
	c.SetGoodbye("421 4.3.2 Service shutting down\r\n")
	log := c.Logger() // per-recipient and per-transaction Debug lines; the session's Info line is the engine's
	nc := &clientConn{Conn: c.NetConn(), ctx: ctx, done: make(chan struct{}), pc: c, idle: l.opts.clientTimeout()}
	if fe := c.Frontend(); fe.TLS != nil && !fe.ImplicitTLS && !c.IsTLS() {
		// STARTTLS (RFC 3207, which RFC 2033 section 4.1 inherits) is the
		// engine's, as for the other frontends: go-smtp then only ever
		// sees plaintext commands and writes plaintext replies, which
		// clientConn can still correct after the upgrade.
		nc.offerTLS = true
	}
	nc.Conn.SetDeadline(time.Time{}) // go-smtp sets its own from here on

	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(sc *gosmtp.Conn) (gosmtp.Session, error) {
		return &session{l: l, c: c, ctx: ctx, sc: sc, log: log}, nil
	}))
	srv.LMTP = true
	srv.Domain = l.hostname
	srv.MaxRecipients = limit(l.opts.MaxRecipients, defaultMaxRecipients)
	srv.MaxMessageBytes = limit(l.opts.MaxMessageSize, defaultMaxMessageSize)
	srv.MaxLineLength = limit(l.opts.MaxLineLength, defaultMaxLineLength)
	srv.ReadTimeout = l.opts.clientTimeout()
	srv.WriteTimeout = l.opts.clientTimeout()
	srv.EnableSMTPUTF8 = true // RFC 6531; passed on where the server has it
	srv.ErrorLog = errorLog{log}

	ln := &listener{conn: nc, closed: make(chan struct{})}
	srv.Serve(ln) // returns once the one connection is closed
	srv.Shutdown(context.Background())
	if ctx.Err() != nil {
		return nil // the engine ended the session and says why
	}
	return nc.err()
}

// readError classifies an error reading the client's message data:
// go-smtp's own replies (552 too large, line too long) stay as they are.
func readError(err error) error {
	var se *gosmtp.SMTPError
	if errors.As(err, &se) || errors.Is(err, gosmtp.ErrTooLongLine) {
		return err
	}
	return fmt.Errorf("%w: %w", errClientRead, err)
}

// clientConn is the client connection as go-smtp sees it. Once the
// engine cancels ctx (shutdown, kick), reads fail with net.ErrClosed, so
// go-smtp stops quietly and the engine sends its goodbye. Close only stops
// go-smtp's use of it; the engine closes the connection itself.
type clientConn struct {
	net.Conn
	ctx       context.Context
	done      chan struct{}
	closeOnce sync.Once
	pc        *proxy.Conn
	idle      time.Duration // go-smtp's ReadTimeout

	// STARTTLS, done here rather than by go-smtp: until the first MAIL
	// (no DATA can come before it, so every line is a command) the client
	// is read one line at a time, STARTTLS is answered and handed to the
	// engine, and LHLO's reply gets a STARTTLS line. Used by go-smtp's
	// goroutine only.
	offerTLS  bool   // the frontend has certificates and the client is not on TLS
	mailSeen  bool   // a MAIL went by: from here on lines pass through
	advertise bool   // the next 250 line answers LHLO
	pending   []byte // the rest of a line longer than go-smtp's buffer

	mu      sync.Mutex
	readErr error // first read failure other than EOF, for the session's log line
}

func (c *clientConn) Read(p []byte) (int, error) {
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	if c.ctx.Err() != nil {
		return 0, net.ErrClosed
	}
	var n int
	var err error
	if c.intercepting() {
		n, err = c.readCommand(p)
	} else {
		n, err = c.Conn.Read(p)
	}
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
// with go-smtp's out-of-sequence 502 replies made 503, and STARTTLS added
// to the LHLO reply while it is on offer (RFC 3207 section 4).
func (c *clientConn) Write(p []byte) (int, error) {
	line := fixSequenceReply(p)
	var after []byte
	if c.advertise && bytes.HasPrefix(line, []byte("250")) && len(line) > 4 {
		c.advertise = false
		if c.intercepting() {
			if line[3] == ' ' { // a one-line reply becomes two
				line = append([]byte("250-"), line[4:]...)
				after = []byte("250 STARTTLS\r\n")
			} else {
				after = []byte("250-STARTTLS\r\n")
			}
		}
	}
	if _, err := c.Conn.Write(line); err != nil {
		return 0, err
	}
	if after != nil {
		if _, err := c.Conn.Write(after); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *clientConn) intercepting() bool { return c.offerTLS && !c.mailSeen && !c.pc.IsTLS() }

// readCommand gives go-smtp the client's next command line, or the part of
// it that fits p, handling STARTTLS itself: it answers 220, and the engine
// discards whatever the client sent behind the command (RFC 3207 section
// 4.2: it was not protected) and does the handshake under the frontend's
// handshake timeout. A failed handshake ends the session.
func (c *clientConn) readCommand(p []byte) (int, error) {
	for len(c.pending) == 0 {
		line, err := c.pc.Reader().ReadSlice('\n')
		if len(line) == 0 {
			return 0, err
		}
		verb := strings.ToUpper(strings.TrimSpace(string(line)))
		if v, _, ok := strings.Cut(verb, " "); ok {
			verb = v
		}
		switch {
		case strings.EqualFold(strings.TrimRight(string(line), "\r\n"), "STARTTLS"):
			if _, err := c.Conn.Write([]byte("220 2.0.0 Ready to start TLS\r\n")); err != nil {
				return 0, err
			}
			if err := c.pc.StartTLS(c.ctx); err != nil {
				return 0, err
			}
			// The handshake's deadline ends; the client's next command
			// gets the usual wait.
			c.Conn.SetReadDeadline(time.Now().Add(c.idle))
			continue // the next command comes over TLS
		case verb == "MAIL":
			c.mailSeen = true
		case verb == "LHLO" || verb == "EHLO" || verb == "HELO":
			c.advertise = true
		}
		c.pending = append(c.pending[:0], line...)
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *clientConn) Close() error {
	c.closeOnce.Do(func() { close(c.done) })
	return nil
}

func (c *clientConn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

// listener hands go-smtp's Serve exactly one connection. The second
// Accept waits until that connection is closed, then fails, so Serve
// returns when the session is over.
type listener struct {
	conn      *clientConn
	accepted  atomic.Bool
	closed    chan struct{}
	closeOnce sync.Once
}

func (l *listener) Accept() (net.Conn, error) {
	if l.accepted.CompareAndSwap(false, true) {
		return l.conn, nil
	}
	select {
	case <-l.conn.done:
	case <-l.closed:
	}
	return nil, net.ErrClosed
}

func (l *listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *listener) Addr() net.Addr { return l.conn.LocalAddr() }

// errorLog takes go-smtp's internal error reports: panics at Error,
// connection errors at Debug.
type errorLog struct{ log *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.report(fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.report(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (e errorLog) report(msg string) {
	if strings.HasPrefix(msg, "panic") {
		e.log.Error("lmtp: go-smtp panic", "err", msg)
		return
	}
	e.log.Debug("lmtp: go-smtp", "err", msg)
}

// HomePicker is implemented by pickers that can name a user's own
// server without ever placing the user elsewhere (cmd's picker, over
// director.Request.Stay). With ServerDownTempfail the frontend uses it
// so that a recipient whose server is down gets 451 4.4.1 rather than
// delivery to a server that does not hold the mailbox.
type HomePicker interface {
	PickHome(ctx context.Context, user string, client netip.AddrPort) (proxy.Lease, error)
}

// pickHome picks the recipient's server: its own server only when the
// failure policy is tempfail and the picker can tell, else Pick's choice.
func (l *Frontend) pickHome(ctx context.Context, user string, client netip.AddrPort) (proxy.Lease, error) {
	if hp, ok := l.opts.Picker.(HomePicker); ok && l.opts.ServerDown == ServerDownTempfail {
		return hp.PickHome(ctx, user, client)
	}
	return l.opts.Picker.Pick(ctx, user, client, nil)
}
