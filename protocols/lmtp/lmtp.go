package lmtp

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"time"

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
	// defaultSpoolBudget bounds all the spools of a frontend together.
	defaultSpoolBudget = 1 << 30
	// noTimeout stands for a timeout set to none: a century is as good.
	noTimeout = 100 * 365 * 24 * time.Hour
	// defaultMaxLineLength is twice the 1000 octets of RFC 5321 section
	// 4.5.3.1.6, for the lenient (go-smtp's default, which this frontend
	// was built on before).
	defaultMaxLineLength = 2000
	// maxErrors ends a session after this many commands refused with 5xx
	// for their syntax or sequence (Postfix's smtpd_hard_error_limit does
	// the same); an MTA never gets there.
	maxErrors = 20
	// maxBatch bounds the command lines taken together from the client's
	// buffer (RFC 2920 pipelining): their RCPTs go to the servers together.
	maxBatch = 1000
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
	// MaxRecipients per transaction, counted as recipients a server
	// accepted (a refused RCPT does not use one up); zero: 1000; negative:
	// no limit. One more is answered 452 4.5.3 (RFC 5321 section
	// 4.5.3.1.10) without asking a server.
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
	// SpoolBudget bounds the octets held by all the frontend's spools at
	// once, in memory and on disk; zero: 1 GiB; negative: no limit. A
	// message that would pass it is answered 452 4.3.1 (RFC 3463
	// section 3.4, "Mail system full") and the MTA retries.
	SpoolBudget int64
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
	// ServerTimeout bounds each server reply before the message data
	// (greeting, LHLO, RSET, MAIL, RCPT, DATA's 354); zero:
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

// Frontend is the LMTP frontend (RFC 2033), a [proxy.Handler]. It asks
// each recipient's server at RCPT, spools the body once, delivers it to
// every server that accepted recipients over pooled LMTP client
// connections, in parallel, and answers one reply per accepted recipient. Safe for concurrent use by many sessions.
type Frontend struct {
	opts     Options
	hostname string
	pool     *pool
	budget   budget

	transactions  atomic.Uint64
	recipients    atomic.Uint64
	delivered     atomic.Uint64
	deferred      atomic.Uint64
	rejected      atomic.Uint64
	serverFails   atomic.Uint64
	spooledToDisk atomic.Uint64
	dialed        atomic.Uint64
	reused        atomic.Uint64
	spoolRefused  atomic.Uint64
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
		budget: budget{max: limit(opts.SpoolBudget, defaultSpoolBudget)},
	}
}

// Stats is a snapshot of the frontend's counters since New.
type Stats struct {
	Transactions  uint64 // DATA (or BDAT LAST) with a spooled body
	Recipients    uint64 // final replies: a RCPT refused at RCPT time, or one reply after the data
	Delivered     uint64 // of them 250
	Deferred      uint64 // of them 4xx
	Rejected      uint64 // of them 5xx
	ServerFails   uint64 // server legs that failed (down, refused, timeout, dropped)
	SpooledToDisk uint64 // bodies larger than SpoolMemory
	ServerDials   uint64 // server connections opened
	ServerReuses  uint64 // transactions on a pooled server connection
	SpoolInUse    int64  // octets held by spools now, memory and disk
	SpoolRefused  uint64 // messages refused 452 4.3.1 for the spool budget
}

// Stats returns the counters. Safe for concurrent use.
func (l *Frontend) Stats() Stats {
	return Stats{
		Transactions: l.transactions.Load(), Recipients: l.recipients.Load(),
		Delivered: l.delivered.Load(), Deferred: l.deferred.Load(), Rejected: l.rejected.Load(),
		ServerFails: l.serverFails.Load(), SpooledToDisk: l.spooledToDisk.Load(),
		ServerDials: l.dialed.Load(), ServerReuses: l.reused.Load(),
		SpoolInUse: l.budget.used.Load(), SpoolRefused: l.spoolRefused.Load(),
	}
}

// Close closes the idle server connections; later transactions dial anew.
// Call it after the engine has shut down.
func (l *Frontend) Close() error {
	l.pool.close()
	return nil
}

// Refusal is the greeting of a connection the engine refuses (a
// per-client limit): 421 (RFC 5321 section 3.1), 4.7.0 (RFC 3463).
func (l *Frontend) Refusal(why string) string { return "421 4.7.0 " + why + "\r\n" }

// ServeConn runs one LMTP session. The engine closes c after ServeConn
// returns. A graceful shutdown lets the transaction in progress finish (its
// replies are the MTA's receipt: cutting it would make the MTA send again
// what was delivered), then the client hears "421 4.3.2" (RFC 5321 section
// 3.8); a session between transactions hears it at once, and one still in
// a transaction at the end of the grace period is closed.
func (l *Frontend) ServeConn(ctx context.Context, c *proxy.Conn) error {
	c.SetGoodbye("421 4.3.2 Service shutting down\r\n")
	nc := c.NetConn()
	s := &session{l: l, c: c, ctx: ctx, log: c.Logger(), nc: nc, w: bufio.NewWriter(nc)}
	c.SetDrain(s.drain)
	err := s.serve()
	if ctx.Err() != nil {
		return nil // the engine ended the session and says why
	}
	return err
}

// deadline is the time d from now; see noTimeout.
func deadline(d time.Duration) time.Time { return time.Now().Add(d) }

// HomePicker is implemented by pickers that can name a user's own
// server without ever placing the user elsewhere (cmd's picker, over
// director.Request.Stay). With ServerDownTempfail the frontend uses it
// so that a recipient whose server is down gets 451 4.4.1 rather than
// delivery to a server that does not hold the mailbox.
type HomePicker interface {
	PickHome(ctx context.Context, req proxy.PickRequest) (proxy.Lease, error)
}

// pickHome picks the recipient's server: its own server only when the
// failure policy is tempfail and the picker can tell, else Pick's choice.
func (l *Frontend) pickHome(ctx context.Context, req proxy.PickRequest) (proxy.Lease, error) {
	if hp, ok := l.opts.Picker.(HomePicker); ok && l.opts.ServerDown == ServerDownTempfail {
		return hp.PickHome(ctx, req)
	}
	return l.opts.Picker.Pick(ctx, req)
}
