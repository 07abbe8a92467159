package lmtp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/proxy"
)

// state is where an LMTP session is (RFC 2033 section 4, RFC 5321 section 3.3).
type state int

const (
	stateGreeted state = iota // no LHLO yet, or forgotten after STARTTLS (RFC 3207 section 4.2)
	stateReady                // LHLO done, no transaction
	stateMail                 // MAIL accepted: RCPT, DATA or BDAT may follow
	stateQuit                 // QUIT answered
)

// session is one client's LMTP session: one loop reads the client's
// commands, a batch of pipelined lines at a time (RFC 2920), and answers
// them in order. The server legs of a transaction run on goroutines of
// their own while the loop waits for them.
type session struct {
	l   *Frontend
	c   *proxy.Conn
	ctx context.Context // cancelled when the engine ends the session
	log *slog.Logger
	nc  net.Conn      // the client, for deadlines
	w   *bufio.Writer // replies queued until the batch is answered

	state   state
	errors  int  // commands refused for their syntax or sequence
	discard bool // STARTTLS: the rest of the batch was sent in plaintext, drop it
	tx      *txn // the transaction from MAIL on; nil outside one

	// A graceful shutdown (drain) ends the session between transactions.
	drainMu  sync.Mutex
	draining bool // the engine asked the session to end
	idle     bool // waiting for a command outside a transaction
}

// errDrained ends a session that a graceful shutdown asked to end, at a
// point outside a transaction; the engine then says 421 (RFC 5321 section
// 3.8).
var errDrained = errors.New("draining")

// drain is the session's [proxy.Conn.SetDrain]: the session ends once the
// transaction in progress is answered, or at once when it waits for a
// command outside one (its read is woken).
func (s *session) drain() {
	s.drainMu.Lock()
	s.draining = true
	if s.idle {
		s.nc.SetReadDeadline(time.Now())
	}
	s.drainMu.Unlock()
}

// waitCommand prepares the read of the next command: errDrained when the
// session is to end here (draining, outside a transaction), else the
// client's deadline. Under drainMu, so a drain either sees idle and wakes
// the read, or comes before and is seen here.
func (s *session) waitCommand() error {
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	s.idle = s.state != stateMail
	if s.idle && s.draining {
		return errDrained
	}
	return s.waitClient(s.l.opts.clientTimeout())
}

// drained reports whether a graceful shutdown ended the session outside a
// transaction (a failed read there is the drain waking it).
func (s *session) drained() bool {
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	return s.draining && s.state != stateMail
}

// serve writes the greeting and answers commands until QUIT, an error,
// or the engine ends the session.
func (s *session) serve() error {
	defer s.endTransaction()
	// RFC 5321 section 4.3.1: the greeting is 220 <domain>.
	s.reply(reply{code: 220, text: s.l.hostname + " LMTP maildirector ready"})
	if err := s.flush(); err != nil {
		return err
	}
	for s.state != stateQuit {
		batch, rerr := s.readBatch()
		if err := s.run(batch); err != nil {
			s.flush()
			return err
		}
		if rerr != nil {
			if errors.Is(rerr, mailwire.ErrLineTooLong) {
				s.fail(errLineTooLong)
				s.flush()
				return errLineTooLong
			}
			s.flush()
			return s.readFailed(rerr)
		}
		if err := s.flush(); err != nil {
			return err
		}
	}
	return nil
}

// readFailed says how a failed client read ends the session: quietly when
// the engine ends it (the engine says why), else with the read's error,
// which an EOF makes the session's "client closed" (no QUIT came).
func (s *session) readFailed(err error) error {
	if s.ctx.Err() != nil || s.drained() {
		return nil
	}
	return fmt.Errorf("read command: %w", err)
}

// waitClient sets the client's read deadline d from now. Once the engine
// has cancelled the session it fails: the engine sets its own deadline
// after cancelling, so a deadline set before the check cannot undo it.
func (s *session) waitClient(d time.Duration) error {
	s.nc.SetReadDeadline(deadline(d))
	if s.ctx.Err() != nil {
		return net.ErrClosed
	}
	return nil
}

func (s *session) maxLine() int {
	if n := limit(s.l.opts.MaxLineLength, defaultMaxLineLength); n > 0 {
		return n
	}
	return math.MaxInt
}

// readBatch waits (ClientTimeout) for the next command line, then takes
// the complete lines the client has already sent behind it, up to
// maxBatch, stopping after a command whose data or TLS follows (RFC 2920
// section 3.1: DATA, BDAT, STARTTLS and QUIT end a group).
func (s *session) readBatch() ([]string, error) {
	if err := s.waitCommand(); err != nil {
		return nil, err
	}
	r := s.c.Reader()
	var batch []string
	for len(batch) < maxBatch {
		if len(batch) > 0 {
			buf, _ := r.Peek(r.Buffered())
			if bytes.IndexByte(buf, '\n') < 0 {
				break
			}
		}
		line, err := mailwire.ReadLine(r, s.maxLine())
		if err != nil {
			return batch, err
		}
		batch = append(batch, line)
		if endsBatch(line) {
			break
		}
	}
	return batch, nil
}

func endsBatch(line string) bool {
	verb, _, _ := strings.Cut(mailwire.TrimEOL(line), " ")
	switch strings.ToUpper(verb) {
	case "DATA", "BDAT", "STARTTLS", "QUIT":
		return true
	}
	return false
}

// run answers a batch of command lines in order. Consecutive RCPTs go to
// their servers together (handleRcpts); every other command is handled on
// its own.
func (s *session) run(batch []string) error {
	s.discard = false
	for i := 0; i < len(batch) && !s.discard && s.state != stateQuit; {
		cmd, err := parseCommand(batch[i])
		i++
		if err != nil {
			if err := s.fail(errUnknownCommand); err != nil {
				return err
			}
			continue
		}
		if cmd.Verb == "RCPT" {
			cmds := []command{cmd}
			for ; i < len(batch); i++ {
				next, err := parseCommand(batch[i])
				if err != nil || next.Verb != "RCPT" {
					break
				}
				cmds = append(cmds, next)
			}
			if err := s.handleRcpts(cmds); err != nil {
				return err
			}
			continue
		}
		if s.log.Enabled(s.ctx, slog.LevelDebug) {
			s.log.Debug("command", "verb", cmd.Verb)
		}
		if err := s.handle(cmd); err != nil {
			if err := s.fail(err); err != nil {
				return err
			}
		}
	}
	return nil
}

// handle runs one command other than RCPT.
func (s *session) handle(cmd command) error {
	switch cmd.Verb {
	case "LHLO":
		return s.handleLhlo(cmd)
	case "HELO", "EHLO":
		return errUseLHLO
	case "MAIL":
		return s.handleMail(cmd)
	case "DATA":
		return s.handleData(cmd)
	case "BDAT":
		return s.handleBdat(cmd)
	case "RSET":
		return s.handleRset(cmd)
	case "NOOP":
		s.reply(replyOK) // RFC 5321 section 4.1.1.9
		return nil
	case "QUIT":
		return s.handleQuit()
	case "VRFY":
		// RFC 5321 section 3.5.3: 252 when the address is not checked.
		s.reply(reply{code: 252, enh: "2.5.0", text: "Cannot VRFY user, but will accept message"})
		return nil
	case "STARTTLS":
		return s.handleStartTLS(cmd)
	case "EXPN", "HELP", "ETRN", "TURN", "SEND", "SOML", "SAML":
		return errNotImplemented
	}
	return errUnknownCommand
}

// handleLhlo answers LHLO (RFC 2033 section 4.1, like EHLO in RFC 5321
// section 4.1.1.1) with the extensions the frontend serves, and ends any
// transaction.
func (s *session) handleLhlo(cmd command) error {
	name := strings.TrimSpace(cmd.Args)
	if name == "" || strings.ContainsAny(name, " \t") {
		return errSyntax
	}
	s.endTransaction()
	s.state = stateReady
	size := "SIZE" // RFC 1870 section 4: no fixed limit
	if max := limit(s.l.opts.MaxMessageSize, defaultMaxMessageSize); max > 0 {
		size += " " + strconv.FormatInt(max, 10)
	}
	lines := []string{s.l.hostname, "PIPELINING", "ENHANCEDSTATUSCODES", size, "8BITMIME", "SMTPUTF8", "CHUNKING", "DSN"}
	if s.c.CanStartTLS() {
		lines = append(lines, "STARTTLS") // RFC 3207 section 4, which RFC 2033 inherits
	}
	s.replyLines(250, lines)
	return nil
}

// handleMail starts a transaction (RFC 5321 section 4.1.1.2). Servers
// hear of it with the first RCPT for them.
func (s *session) handleMail(cmd command) error {
	switch s.state {
	case stateGreeted:
		return errLhloFirst
	case stateMail:
		return errNestedMail
	}
	from, params, err := parseMail(cmd.Args)
	if err != nil {
		return err
	}
	if max := limit(s.l.opts.MaxMessageSize, defaultMaxMessageSize); max > 0 && params.size > max {
		return errTooLarge // RFC 1870 section 6.2
	}
	if s.l.budget.full(params.size) {
		s.l.spoolRefused.Add(1)
		return replyStorage // RFC 1870 section 6.1: 452 at MAIL
	}
	s.tx = &txn{from: from, params: params, start: time.Now()}
	s.state = stateMail
	s.reply(reply{code: 250, enh: "2.1.0", text: "OK"})
	return nil
}

// handleRset ends the transaction (RFC 5321 section 4.1.1.5).
func (s *session) handleRset(cmd command) error {
	if cmd.Args != "" {
		return errSyntax
	}
	s.endTransaction()
	s.reply(replyOK)
	return nil
}

// handleQuit ends the session (RFC 5321 section 4.1.1.10).
func (s *session) handleQuit() error {
	s.reply(reply{code: 221, enh: "2.0.0", text: "Bye"})
	s.state = stateQuit
	return nil
}

// handleStartTLS upgrades to TLS (RFC 3207 section 4) through the engine,
// which discards what the client sent behind the command; the rest of the
// batch is dropped for the same reason, and LHLO is forgotten (section 4.2).
func (s *session) handleStartTLS(cmd command) error {
	switch {
	case cmd.Args != "":
		return errSyntax
	case s.c.IsTLS():
		return errTLSActive
	case !s.c.CanStartTLS():
		return errTLSUnavailable
	case s.state == stateMail:
		return errTLSInTransaction
	}
	s.reply(reply{code: 220, enh: "2.0.0", text: "Ready to start TLS"})
	if err := s.flush(); err != nil {
		return err
	}
	s.discard = true
	if err := s.c.StartTLS(s.ctx); err != nil {
		return &endSession{err}
	}
	s.state = stateGreeted
	return nil
}

// inTransaction checks that a transaction command may come now.
func (s *session) inTransaction() error {
	switch s.state {
	case stateGreeted:
		return errLhloFirst
	case stateReady, stateQuit:
		return errMailFirst
	}
	return nil
}

// handleData receives the message (RFC 5321 section 4.1.1.4) and answers
// once per accepted RCPT (RFC 2033 section 4.2).
func (s *session) handleData(cmd command) error {
	if err := s.inTransaction(); err != nil {
		return err
	}
	tx := s.tx
	switch {
	case cmd.Args != "":
		return errSyntax
	case tx.body != nil:
		return errBDATSequence
	case len(tx.accepted) == 0:
		return errNoRecipients
	case s.l.budget.full(tx.params.size):
		s.l.spoolRefused.Add(1)
		return replyStorage
	}
	s.reply(reply{code: 354, text: "Start mail input; end with <CRLF>.<CRLF>"})
	if err := s.flush(); err != nil {
		return err
	}
	// The client's data has its own, longer deadline.
	if err := s.waitClient(s.l.opts.dataTimeout()); err != nil {
		return &endSession{err}
	}
	dr := &dataReader{r: s.c.Reader(), max: limit(s.l.opts.MaxMessageSize, defaultMaxMessageSize), maxLine: s.maxLine()}
	tx.body = s.newBody()
	err := copyBody(tx.body, dr)
	if err != nil && !errors.Is(err, errClientRead) {
		if derr := dr.drain(); derr != nil {
			err = derr
		}
	}
	return s.finishData(err)
}

// handleBdat takes one chunk (RFC 3030 section 2); the last one ends the
// data, answered once per accepted RCPT like DATA.
func (s *session) handleBdat(cmd command) error {
	sizeArg, rest, _ := strings.Cut(cmd.Args, " ")
	n, err := strconv.ParseInt(sizeArg, 10, 64)
	last := strings.EqualFold(rest, "LAST")
	if err != nil || n < 0 || (rest != "" && !last) {
		// The chunk's end is unknown: the session cannot stay in step.
		return reply{code: 501, enh: "5.5.4", text: "Syntax error in BDAT", close: true}
	}
	if err := s.waitClient(s.l.opts.dataTimeout()); err != nil {
		return &endSession{err}
	}
	chunk := &io.LimitedReader{R: s.c.Reader(), N: n}
	drainChunk := func() error {
		_, err := io.Copy(io.Discard, chunk)
		if err == nil && chunk.N > 0 {
			err = io.ErrUnexpectedEOF // the client closed inside the chunk
		}
		if err != nil {
			return &endSession{fmt.Errorf("%w: chunk cut short: %w", errClientRead, err)}
		}
		return nil
	}
	if err := s.inTransaction(); err != nil {
		if derr := drainChunk(); derr != nil {
			return derr
		}
		return err
	}
	tx := s.tx
	if len(tx.accepted) == 0 {
		if derr := drainChunk(); derr != nil {
			return derr
		}
		return errNoRecipients
	}
	if tx.body == nil {
		tx.body = s.newBody()
	}
	tx.bdatSize += n
	if max := limit(s.l.opts.MaxMessageSize, defaultMaxMessageSize); max > 0 && tx.bdatSize > max && tx.bodyErr == nil {
		tx.bodyErr = errDataTooLarge
	}
	if tx.bodyErr == nil {
		if _, err := io.Copy(tx.body, chunk); err != nil {
			var werr *bodyWriteError
			if !errors.As(err, &werr) {
				return &endSession{fmt.Errorf("%w: %w", errClientRead, err)}
			}
			tx.bodyErr = werr.err
		}
	}
	if err := drainChunk(); err != nil {
		return err
	}
	if !last {
		s.reply(reply{code: 250, enh: "2.0.0", text: strconv.FormatInt(n, 10) + " octets received"})
		return nil
	}
	err = tx.bodyErr
	if err == nil {
		err = tx.body.end()
	}
	return s.finishData(err)
}

// newBody starts the transaction's spool.
func (s *session) newBody() *bodyWriter {
	sp := &spool{dir: s.l.opts.spoolDir(), limit: s.l.opts.spoolMemory(),
		onDisk: func() { s.l.spooledToDisk.Add(1) }, budget: &s.l.budget}
	return &bodyWriter{sp: sp, reject: s.l.opts.BareLF == BareLFReject}
}

// finishData delivers the spooled body, or refuses it for err, answers
// one reply per accepted RCPT in RCPT order, and ends the transaction.
func (s *session) finishData(err error) error {
	tx := s.tx
	defer s.endTransaction()
	if err != nil {
		r, ok := replyFor(err)
		if !ok {
			s.log.Warn("lmtp: spool message", "err", err)
		}
		if errors.Is(err, errSpoolBudget) {
			s.l.spoolRefused.Add(1)
		}
		s.log.Debug("lmtp data refused", "recipients", len(tx.accepted), "code", r.code, "err", err)
		if errors.Is(err, errClientRead) {
			return &endSession{err} // nobody to answer
		}
		for _, rc := range tx.accepted {
			rc.dataReply = &r
		}
	} else {
		s.l.transactions.Add(1)
		tx.size = tx.body.sp.size
		s.deliver(tx)
	}
	for _, rc := range tx.accepted {
		r := *rc.dataReply
		s.count(r, 1)
		s.reply(r.naming(rc.addr))
	}
	return nil
}

// count adds n final replies r to the frontend's counters.
func (s *session) count(r reply, n int) {
	for range n {
		s.c.CountRecipient(r.code)
	}
	s.l.recipients.Add(uint64(n))
	switch r.code / 100 {
	case 2:
		s.l.delivered.Add(uint64(n))
	case 4:
		s.l.deferred.Add(uint64(n))
	default:
		s.l.rejected.Add(uint64(n))
	}
}

// bodyWriter spools message data with every line end made CRLF; with
// reject it refuses a bare CR or LF instead ([ErrBareNewline]).
type bodyWriter struct {
	sp     *spool
	reject bool
	cr     bool // a CR ended the last write
	out    []byte
}

// bodyWriteError is a failure to spool, told apart from the client's
// read errors in io.Copy.
type bodyWriteError struct{ err error }

func (e *bodyWriteError) Error() string { return e.err.Error() }
func (e *bodyWriteError) Unwrap() error { return e.err }

func (b *bodyWriter) Write(p []byte) (int, error) {
	out := p // the usual: every line end already CRLF
	if b.cr || crlfRun(p) < len(p) {
		var bare bool
		b.out, b.cr, bare = normalizeCRLF(b.out[:0], p, b.cr)
		if bare && b.reject {
			return 0, &bodyWriteError{ErrBareNewline}
		}
		out = b.out
	}
	if _, err := b.sp.Write(out); err != nil {
		return 0, &bodyWriteError{err}
	}
	return len(p), nil
}

// end settles a CR left at the end of the data.
func (b *bodyWriter) end() error {
	out, bare := normalizeEnd(nil, b.cr)
	if bare && b.reject {
		return ErrBareNewline
	}
	_, err := b.sp.Write(out)
	return err
}

// copyBuffers are copyBody's buffers, io.Copy's size: one per message
// otherwise.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// copyBody spools all of r into b. The error is the client's (wrapping
// errClientRead), its limits', or the spool's.
func copyBody(b *bodyWriter, r io.Reader) error {
	buf := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(buf)
	if _, err := io.CopyBuffer(b, r, *buf); err != nil {
		var werr *bodyWriteError
		if errors.As(err, &werr) {
			return werr.err
		}
		return err
	}
	return b.end()
}
