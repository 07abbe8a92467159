package lmtp

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/maildirector/maildirector/proxy"
)

// session is one client's LMTP session as go-smtp drives it: one
// transaction at a time (MAIL, RCPT × n, DATA or BDAT). go-smtp calls its
// methods from one goroutine; LMTPData runs on another while that one waits.
type session struct {
	l   *Frontend
	c   *proxy.Conn
	ctx context.Context
	sc  *gosmtp.Conn
	log *slog.Logger

	from   string
	mail   gosmtp.MailOptions
	rcpts  []*rcpt // in RCPT order; a duplicate address shares its first entry
	byAddr map[string]*rcpt
}

// rcpt is one distinct recipient address of the transaction.
type rcpt struct {
	addr  string
	lease proxy.Lease // the server chosen for it; released when the transaction ends
	tried []string    // servers tried, for ServerDown next
	reply *gosmtp.SMTPError
}

// Mail starts a transaction (RFC 5321 section 4.1.1.2). go-smtp has
// checked SIZE against MaxMessageSize and the BODY and SMTPUTF8 parameters.
func (s *session) Mail(from string, opts *gosmtp.MailOptions) error {
	s.Reset()
	s.from = from
	if opts != nil {
		s.mail = *opts
	}
	return nil
}

// Rcpt picks the recipient's server now, so that a recipient with no usable
// server is answered 451 4.4.1 at once (a proxy-side failure: 4xx, the MTA
// retries). The server itself hears of the recipient only after the data;
// its answer then is the recipient's reply (RFC 2033 section 4.2). go-smtp
// has already enforced MaxRecipients (452 4.5.3) and MAIL before RCPT.
func (s *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if rc, ok := s.byAddr[to]; ok {
		s.rcpts = append(s.rcpts, rc) // delivered once, answered once per RCPT
		return nil
	}
	lease, err := s.l.pickHome(s.ctx, to, s.c.RemoteAddr())
	if err != nil {
		s.log.Debug("lmtp recipient", "rcpt", to, "server", "", "code", 451, "err", err)
		reply, _ := replyFor(fmt.Errorf("%w: %w", ErrServerUnavailable, err))
		return reply
	}
	rc := &rcpt{addr: to, lease: lease, tried: []string{lease.Target().Server}}
	if s.byAddr == nil {
		s.byAddr = make(map[string]*rcpt)
	}
	s.byAddr[to] = rc
	s.rcpts = append(s.rcpts, rc)
	return nil
}

// Data is go-smtp's non-LMTP entry point (in LMTP mode it calls
// LMTPData): it answers with the first recipient's failure, if any.
func (s *session) Data(r io.Reader) error {
	var first firstFailure
	if err := s.LMTPData(r, &first); err != nil {
		return err
	}
	return first.err
}

type firstFailure struct{ err error }

func (f *firstFailure) SetStatus(_ string, err error) {
	if se, ok := err.(*gosmtp.SMTPError); ok && se.Code == 250 {
		return
	}
	if f.err == nil {
		f.err = err
	}
}

// LMTPData spools the body once, delivers it and sets one status per RCPT
// in RCPT order (go-smtp writes them, RFC 2033 section 4.2). The error it
// returns becomes the status of every recipient: it is always a reply.
func (s *session) LMTPData(r io.Reader, status gosmtp.StatusCollector) error {
	start := time.Now()
	// With BDAT this runs while go-smtp still reads chunks, and an RSET then
	// resets the session under it; only this snapshot is used until the
	// body has been read in full.
	rcpts := s.rcpts
	// The client's data has its own, longer deadline; go-smtp sets the
	// command deadline again before the next command.
	s.sc.Conn().SetReadDeadline(start.Add(s.l.opts.dataTimeout()))

	sp := &spool{dir: s.l.opts.spoolDir(), limit: s.l.opts.spoolMemory(), onDisk: func() { s.l.spooledToDisk.Add(1) }}
	defer sp.Close()
	if err := spoolBody(sp, r, s.l.opts.BareLF == BareLFReject); err != nil {
		reply, expected := replyFor(err)
		if !expected {
			s.log.Warn("lmtp: spool message", "err", err)
		}
		s.log.Debug("lmtp data refused", "recipients", len(rcpts), "code", reply.Code, "err", err)
		s.count(reply, len(rcpts))
		return reply
	}
	s.l.transactions.Add(1)

	dctx := context.WithoutCancel(s.ctx) // a delivery under way finishes even at shutdown
	servers := s.deliver(dctx, sp)

	for _, rc := range s.rcpts {
		reply := rc.reply
		if reply == nil { // not reached: every distinct recipient gets a reply
			reply, _ = replyFor(ErrServerUnavailable)
		}
		s.count(reply, 1)
		s.log.Debug("lmtp recipient", "rcpt", rc.addr, "server", rc.lease.Target().Server, "code", reply.Code)
		status.SetStatus(rc.addr, reply)
	}
	s.log.Debug("lmtp transaction", "recipients", len(s.rcpts), "servers", servers,
		"size", sp.size, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}

func (s *session) count(reply *gosmtp.SMTPError, n int) {
	s.l.recipients.Add(uint64(n))
	switch reply.Code / 100 {
	case 2:
		s.l.delivered.Add(uint64(n))
	case 4:
		s.l.deferred.Add(uint64(n))
	default:
		s.l.rejected.Add(uint64(n))
	}
}

// Reset ends the transaction (RSET, after DATA, a new LHLO) and releases
// the recipients' leases.
func (s *session) Reset() {
	for _, rc := range s.byAddr {
		rc.lease.Release()
	}
	s.from, s.mail, s.rcpts, s.byAddr = "", gosmtp.MailOptions{}, nil, nil
}

// Logout ends the session.
func (s *session) Logout() error {
	s.Reset()
	return nil
}
