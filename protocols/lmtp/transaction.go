package lmtp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/proxy"
)

// txn is one mail transaction (RFC 5321 section 3.3), from MAIL to the
// replies after the data, RSET, a new LHLO or the end of the session.
type txn struct {
	from   string
	params mailParams
	start  time.Time

	all      []*rcpt               // every RCPT routed, in order, for the log line
	accepted []*rcpt               // RCPTs a server accepted, in order; a repeated address repeats its entry
	byAddr   map[string]*rcpt      // distinct accepted addresses
	legs     map[proxy.Target]*leg // the servers of the transaction
	order    []*leg                // legs in order of first use

	body     *bodyWriter // the spooled data, once DATA or BDAT began
	bodyErr  error       // BDAT: why the data will be refused
	bdatSize int64
	size     int64 // the spooled size, for the log line
}

// rcpt is one RCPT routed to a server.
type rcpt struct {
	addr   string
	params rcptParams
	lease  proxy.Lease // released when the transaction ends, or at once when refused
	tried  []string    // servers tried, for ServerDown next
	leg    *leg
	server string // the server that answered, for the log line

	answered  bool   // the server answered the RCPT
	rcptReply reply  // the reply the client got at RCPT
	dataReply *reply // the reply after the data
}

// leg is one server's side of the transaction: one connection, MAIL once,
// then the RCPTs routed to it, then DATA.
type leg struct {
	target    proxy.Target
	sc        *serverConn
	mailSent  bool
	mailReply *reply // the server refused MAIL: its RCPTs get this reply
	failed    error  // the server failed; its recipients get 451 4.4.1
	reported  bool   // the failure was reported (lease.Failed, log, counter)
	// keepAnswered: the server failed after the data with some replies
	// given; those stand (they are the server's own, in step).
	keepAnswered bool
	accepted     []*rcpt // the recipients the server accepted, in its order
}

// fail marks the leg failed and closes its connection: a connection that
// failed or broke the protocol is never reused.
func (lg *leg) fail(err error) {
	if lg.failed == nil {
		lg.failed = proxy.ServerFailure(err)
	}
	if lg.sc != nil {
		lg.sc.close()
		lg.sc = nil
	}
}

func (tx *txn) leg(t proxy.Target) *leg {
	if lg := tx.legs[t]; lg != nil {
		return lg
	}
	if tx.legs == nil {
		tx.legs = make(map[proxy.Target]*leg)
	}
	lg := &leg{target: t}
	tx.legs[t] = lg
	tx.order = append(tx.order, lg)
	return lg
}

// handleRcpts answers consecutive RCPT commands (RFC 5321 section
// 4.1.1.3), in order, each with its server's own reply (RFC 2033 section
// 4.2), as Dovecot's own LMTP proxy does. The RCPTs are sent to their
// servers together, pipelined per server, all servers in parallel.
func (s *session) handleRcpts(cmds []command) error {
	type outcome struct {
		r       reply
		refusal bool // a refused command (syntax, sequence): counts as an error
		rc      *rcpt
	}
	out := make([]outcome, len(cmds))
	var round []*rcpt
	index := make(map[*rcpt]int)
	flushRound := func() {
		if len(round) > 0 {
			s.forward(round)
			for _, rc := range round {
				out[index[rc]].rc = rc
			}
			round = nil
		}
	}
	max := limit(s.l.opts.MaxRecipients, defaultMaxRecipients)
	debug := s.log.Enabled(s.ctx, slog.LevelDebug)
	for i, cmd := range cmds {
		if debug {
			s.log.Debug("command", "verb", cmd.Verb)
		}
		if err := s.inTransaction(); err != nil {
			out[i] = outcome{r: err.(reply), refusal: true}
			continue
		}
		tx := s.tx
		to, params, err := parseRcpt(cmd.Args)
		if err != nil {
			out[i] = outcome{r: err.(reply), refusal: true}
			continue
		}
		if slices.ContainsFunc(round, func(rc *rcpt) bool { return rc.addr == to }) {
			flushRound() // a repeated address: its first RCPT's answer first
		}
		if rc := tx.byAddr[to]; rc != nil {
			// Delivered once, answered once per RCPT: the server hears of
			// it once, and an accepted address counts once more.
			if max > 0 && len(tx.accepted) >= max {
				out[i] = outcome{r: errTooManyRecipients}
				continue
			}
			tx.accepted = append(tx.accepted, rc)
			out[i] = outcome{r: rc.rcptReply}
			continue
		}
		if max > 0 && len(tx.accepted)+len(round) >= max {
			// Only accepted recipients use up the limit: learn how the
			// RCPTs under way fare before refusing this one.
			flushRound()
			if len(tx.accepted) >= max {
				out[i] = outcome{r: errTooManyRecipients}
				continue
			}
		}
		lease, err := s.l.pickHome(s.ctx, s.c.PickRequest(to, nil))
		if err != nil {
			r := replyUnavailable
			if errors.Is(err, proxy.ErrHeld) {
				r = replyHeld // frozen by an operator: no server may take it now
			}
			s.log.Debug("lmtp recipient", "rcpt", to, "server", "", "code", r.code, "err", err)
			out[i] = outcome{r: r}
			tx.all = append(tx.all, &rcpt{addr: to, rcptReply: r})
			continue
		}
		rc := &rcpt{addr: to, params: params, lease: lease, tried: []string{lease.Target().Server}}
		index[rc] = i
		round = append(round, rc)
	}
	flushRound()
	for _, o := range out {
		switch {
		case o.refusal:
			if err := s.fail(o.r); err != nil {
				return err
			}
			continue
		case o.rc != nil:
			o.r = o.rc.rcptReply
		}
		if o.r.code/100 != 2 {
			s.count(o.r, 1) // a final reply: this recipient is not in the transaction
		}
		s.reply(o.r)
	}
	return nil
}

// forward sends a round of RCPTs to their servers and sets each one's
// reply. With ServerDown next, a recipient whose server failed before
// answering it goes to its next server, up to the frontend's retries.
func (s *session) forward(round []*rcpt) {
	tx := s.tx
	retries := 0 // with server_down tempfail, a recipient never goes elsewhere
	if s.l.opts.ServerDown == ServerDownNext {
		retries = s.c.Retries() // the frontend's retries, as for logins
	}
	pending := round
	for attempt := 0; len(pending) > 0; attempt++ {
		groups := make(map[*leg][]*rcpt)
		var legs []*leg
		for _, rc := range pending {
			lg := tx.leg(rc.lease.Target())
			if groups[lg] == nil {
				legs = append(legs, lg)
			}
			groups[lg] = append(groups[lg], rc)
			rc.leg = lg
		}
		var wg sync.WaitGroup
		wg.Add(len(legs))
		if len(legs) == 1 {
			s.legRcpts(&wg, legs[0], groups[legs[0]]) // one server: nothing to run beside it
		} else {
			for _, lg := range legs {
				go s.legRcpts(&wg, lg, groups[lg])
			}
		}
		wg.Wait()

		var next []*rcpt
		for _, lg := range legs {
			if lg.failed != nil {
				s.reportFailure(lg, groups[lg][0].lease)
			}
		}
		for _, rc := range pending {
			lg := rc.leg
			if lg.failed == nil && rc.answered {
				rc.server = lg.target.Server
				if rc.rcptReply.code/100 == 2 {
					lg.accepted = append(lg.accepted, rc)
					tx.accepted = append(tx.accepted, rc)
					if tx.byAddr == nil {
						tx.byAddr = make(map[string]*rcpt)
					}
					tx.byAddr[rc.addr] = rc
				} else {
					rc.lease.Answered() // unknown recipients pin nothing
					rc.lease.Release()
				}
				tx.all = append(tx.all, rc)
				continue
			}
			// The server failed before answering (or broke the protocol,
			// which voids its answers): never a 250 it did not give.
			rc.answered = false
			if attempt < retries && s.repick(rc) {
				next = append(next, rc)
				continue
			}
			rc.rcptReply = replyUnavailable
			rc.server = lg.target.Server
			rc.lease.Release()
			tx.all = append(tx.all, rc)
		}
		pending = next
	}
}

// reportFailure tells the director, once per failed leg, that its server
// failed (passive health), with lease, and logs it.
func (s *session) reportFailure(lg *leg, lease proxy.Lease) {
	if lg.reported {
		return
	}
	lg.reported = true
	s.l.serverFails.Add(1)
	s.log.Warn("lmtp: server failed", "server", lg.target.Server, "err", lg.failed)
	lease.Failed(lg.failed)
}

// repick gives rc the next server in its user's order (ServerDown next).
func (s *session) repick(rc *rcpt) bool {
	lease, err := s.l.opts.Picker.Pick(s.ctx, s.c.PickRequest(rc.addr, rc.tried))
	if err != nil {
		s.log.Debug("lmtp: no next server", "rcpt", rc.addr, "tried", rc.tried, "err", err)
		return false
	}
	rc.lease.Release()
	rc.lease = lease
	rc.tried = append(rc.tried, lease.Target().Server)
	return true
}

// legRcpts sends rcpts to lg's server: MAIL first if the server has not
// had it, then the RCPTs, all in one write when the server has PIPELINING
// (RFC 2920), then reads exactly one reply for each command, in order. A
// server that fails or breaks the protocol fails the leg. When the round
// has several servers it runs on its own goroutine; it returns when the
// replies are in, or on the server timeout.
func (s *session) legRcpts(wg *sync.WaitGroup, lg *leg, rcpts []*rcpt) {
	defer wg.Done()
	defer func() {
		// A bug on one server's leg must not take the director down: its
		// recipients get 451 like any other failure (the MTA retries).
		if p := recover(); p != nil {
			s.log.Error("lmtp: panic forwarding RCPT", "server", lg.target.Server, "panic", p, "stack", string(debug.Stack()))
			lg.fail(fmt.Errorf("panic: %v", p))
		}
	}()
	if lg.failed != nil {
		return
	}
	if lg.mailReply != nil {
		for _, rc := range rcpts {
			rc.answered, rc.rcptReply = true, *lg.mailReply
		}
		return
	}
	ctx := context.WithoutCancel(s.ctx) // what the client waits for finishes even at shutdown
	if lg.sc == nil {
		sc, err := s.l.serverConn(ctx, s.c, lg.target)
		if err != nil {
			lg.fail(err)
			return
		}
		lg.sc = sc
	}
	mail := !lg.mailSent
	lg.mailSent = true
	commands := func(sc *serverConn) []string {
		var lines []string
		if mail {
			lines = append(lines, s.mailLine(sc))
		}
		for _, rc := range rcpts {
			lines = append(lines, rcptLine(sc, rc))
		}
		return lines
	}
	d := s.l.opts.serverTimeout()
	sent := false // the first window is already on its way
	if lg.sc.resetDue {
		// RSET rides ahead of the commands (RFC 2920). If the pooled
		// connection went stale while idle, its RSET gets no 250: the
		// connection is dropped, which also drops whatever it was sent,
		// and the commands go to a fresh one. Not the server's failure.
		sc := lg.sc
		sc.resetDue = false
		err := sc.send(d, append([]string{"RSET"}, commands(sc)...)...)
		if err == nil {
			var rep mailwire.Reply
			if rep, err = sc.readReply(d); err == nil && rep.Code != 250 {
				err = fmt.Errorf("RSET answered %q", rep.Raw())
			}
		}
		if err == nil {
			sent = true
		} else {
			sc.close()
			fresh, err := s.l.dialServer(ctx, s.c, lg.target)
			if err != nil {
				lg.sc = nil
				lg.fail(err)
				return
			}
			lg.sc = fresh
		}
	}
	sc := lg.sc
	lines := commands(sc)
	window := 1
	if sc.has("PIPELINING") {
		window = len(lines)
	}
	replyIndex := 0 // the next command whose reply is due
	for start := 0; start < len(lines); start += window {
		end := min(start+window, len(lines))
		if sent {
			sent = false
		} else if err := sc.send(d, lines[start:end]...); err != nil {
			lg.fail(fmt.Errorf("send RCPT to %s: %w", lg.target.Server, err))
			return
		}
		for ; replyIndex < end; replyIndex++ {
			rep, err := sc.readReply(d)
			if err == nil && (rep.Code < 200 || rep.Code/100 == 3) {
				err = fmt.Errorf("%w: %q", errProtocol, rep.Raw())
			}
			if err == nil && rep.Code == 421 {
				err = fmt.Errorf("server closing: %q", rep.Raw())
			}
			if err != nil {
				lg.fail(fmt.Errorf("replies to MAIL and RCPT from %s: %w", lg.target.Server, err))
				return
			}
			r := serverReply(rep)
			if mail && replyIndex == 0 {
				if rep.Code/100 != 2 {
					lg.mailReply = &r // relayed to each of its recipients
				}
				continue
			}
			rc := rcpts[replyIndex-boolInt(mail)]
			rc.answered, rc.rcptReply = true, r
			if lg.mailReply != nil {
				rc.rcptReply = *lg.mailReply
			}
		}
	}
	if !sc.quiet() {
		lg.fail(fmt.Errorf("%w: %s sent more replies than commands", errProtocol, lg.target.Server))
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// mailLine is the client's MAIL for sc: the parameters the server
// advertises are passed on, the others dropped (RFC 1870 SIZE, RFC 6152
// BODY, RFC 6531 SMTPUTF8, RFC 3461 RET and ENVID).
func (s *session) mailLine(sc *serverConn) string {
	p := s.tx.params
	var b strings.Builder
	b.WriteString("MAIL FROM:<" + s.tx.from + ">")
	if p.size > 0 && sc.has("SIZE") {
		b.WriteString(" SIZE=" + strconv.FormatInt(p.size, 10))
	}
	if p.body != "" && sc.has("8BITMIME") {
		b.WriteString(" BODY=" + p.body)
	}
	if p.utf8 && sc.has("SMTPUTF8") {
		b.WriteString(" SMTPUTF8")
	}
	if sc.has("DSN") {
		if p.ret != "" {
			b.WriteString(" RET=" + p.ret)
		}
		if p.envid != "" {
			b.WriteString(" ENVID=" + p.envid)
		}
	}
	return b.String()
}

// rcptLine is rc's RCPT for sc, with its RFC 3461 NOTIFY and ORCPT only
// for a server that advertises DSN.
func rcptLine(sc *serverConn, rc *rcpt) string {
	line := "RCPT TO:<" + rc.addr + ">"
	if sc.has("DSN") {
		if rc.params.notify != "" {
			line += " NOTIFY=" + rc.params.notify
		}
		if rc.params.orcpt != "" {
			line += " ORCPT=" + rc.params.orcpt
		}
	}
	return line
}

// deliver sends the spooled body to every server that accepted
// recipients, all in parallel, and sets each accepted recipient's reply
// after the data.
func (s *session) deliver(tx *txn) {
	var legs []*leg
	for _, lg := range tx.order {
		if len(lg.accepted) > 0 && lg.failed == nil {
			legs = append(legs, lg)
		}
	}
	var wg sync.WaitGroup
	wg.Add(len(legs))
	if len(legs) == 1 {
		s.legData(&wg, legs[0], tx.body.sp) // one server: nothing to run beside it
	} else {
		for _, lg := range legs {
			go s.legData(&wg, lg, tx.body.sp)
		}
	}
	wg.Wait()
	for _, lg := range tx.order {
		if lg.failed != nil && len(lg.accepted) > 0 {
			s.reportFailure(lg, lg.accepted[0].lease)
		}
	}
	for _, rc := range tx.accepted {
		if rc.dataReply == nil || (rc.leg.failed != nil && !rc.leg.keepAnswered) {
			// A server that failed, or broke the protocol, after the RCPT:
			// 451, never a 250 it did not give (never lose mail).
			rc.dataReply = &replyUnavailable
		}
	}
	s.nameSession(tx)
}

// legData is one server's data (RFC 2033 section 4.2): BDAT LAST when the
// server has CHUNKING, else DATA, 354 and the body; then exactly one reply
// per recipient it accepted, in RCPT order. When
// the message has several servers it runs on its own goroutine; it returns
// when the replies are in, the server failed, or DataTimeout passed.
func (s *session) legData(wg *sync.WaitGroup, lg *leg, sp *spool) {
	defer wg.Done()
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("lmtp: panic delivering", "server", lg.target.Server, "panic", p, "stack", string(debug.Stack()))
			lg.fail(fmt.Errorf("panic: %v", p))
		}
	}()
	sc := lg.sc
	dd := s.l.opts.dataTimeout()
	if sc.has("CHUNKING") {
		// RFC 3030: the body as one last chunk, no 354 to wait for, so
		// a message costs the server one round trip less than DATA.
		sc.nc.SetWriteDeadline(deadline(dd))
		if err := writeChunk(sc.w, sp); err != nil {
			lg.fail(fmt.Errorf("send message to %s: %w", lg.target.Server, err))
			return
		}
	} else if !s.sendData(lg, sp, dd) {
		return
	}
	for _, rc := range lg.accepted {
		rep, err := sc.readReply(dd)
		if err == nil && (rep.Code < 200 || rep.Code/100 == 3) {
			err = fmt.Errorf("%w: %q", errProtocol, rep.Raw())
		}
		if err != nil {
			if errors.Is(err, errProtocol) {
				lg.fail(fmt.Errorf("replies after data from %s: %w", lg.target.Server, err))
				return
			}
			// Dropped or timed out after the data: the recipients it
			// answered keep their reply, the others get 451 (the MTA
			// retries them).
			lg.fail(fmt.Errorf("replies after data from %s: %w", lg.target.Server, err))
			lg.keepAnswered = true
			return
		}
		r := serverReply(rep)
		rc.dataReply = &r
	}
	if !sc.quiet() {
		lg.fail(fmt.Errorf("%w: %s sent more replies than recipients", errProtocol, lg.target.Server))
	}
}

// sendData sends DATA, waits for 354 and sends the body (RFC 5321
// section 4.1.1.4). It reports false when the server refused DATA (its
// refusal is each recipient's reply) or failed.
func (s *session) sendData(lg *leg, sp *spool, dd time.Duration) bool {
	sc := lg.sc
	d := s.l.opts.serverTimeout()
	if err := sc.send(d, "DATA"); err != nil {
		lg.fail(fmt.Errorf("send DATA to %s: %w", lg.target.Server, err))
		return false
	}
	rep, err := sc.readReply(d)
	switch {
	case err != nil:
		lg.fail(fmt.Errorf("reply to DATA from %s: %w", lg.target.Server, err))
		return false
	case rep.Code == 354:
	case rep.Code/100 == 4 && rep.Code != 421, rep.Code/100 == 5:
		// The server's own refusal of the data, for each of its recipients.
		r := serverReply(rep)
		for _, rc := range lg.accepted {
			rc.dataReply = &r
		}
		if !sc.quiet() {
			lg.fail(fmt.Errorf("%w: %s sent more than its reply to DATA", errProtocol, lg.target.Server))
		}
		return false
	default:
		// A 250 (or anything else) where DATA needs 354: the server is out
		// of step, and its 250 cannot be trusted to mean delivery.
		lg.fail(fmt.Errorf("%w: %s answered DATA with %q", errProtocol, lg.target.Server, rep.Raw()))
		return false
	}
	sc.nc.SetWriteDeadline(deadline(dd))
	if err := writeData(sc.w, sp.reader()); err != nil {
		lg.fail(fmt.Errorf("send message to %s: %w", lg.target.Server, err))
		return false
	}
	return true
}

// endTransaction ends the transaction, if any: the leases are settled
// (Established for a recipient its server accepted the message for,
// Answered for the others it answered) and released, healthy server
// connections go back to the pool (the next transaction starts with
// RSET), failed ones are closed, and the transaction's log line written.
func (s *session) endTransaction() {
	tx := s.tx
	if tx == nil {
		return
	}
	s.tx = nil
	if s.state == stateMail {
		s.state = stateReady
	}
	if tx.body != nil {
		tx.body.sp.Close()
	}
	for _, rc := range tx.byAddr {
		switch {
		case rc.leg.failed != nil:
		case rc.dataReply != nil && rc.dataReply.code == 250:
			rc.lease.Established() // the user is pinned to the server
		default:
			rc.lease.Answered()
		}
		rc.lease.Release()
	}
	for _, lg := range tx.order {
		if lg.sc != nil && lg.failed == nil {
			s.l.pool.put(lg.sc)
		} else if lg.sc != nil {
			lg.sc.close()
		}
		lg.sc = nil
	}
	if len(tx.all) > 0 && s.log.Enabled(s.ctx, slog.LevelInfo) {
		s.logTransaction(tx) // built only when it is written
	}
}

// maxLoggedRcpts bounds the recipients the transaction's log line names
// one by one; the codes of all are counted.
const maxLoggedRcpts = 1000

// logTransaction writes the transaction's one Info line: the sender and,
// per recipient, its server and its reply at RCPT and after the data.
func (s *session) logTransaction(tx *txn) {
	var b strings.Builder
	codes := make(map[int]int)
	for i, rc := range tx.all {
		final := rc.rcptReply.code
		if rc.dataReply != nil {
			final = rc.dataReply.code
		}
		codes[final]++
		if i >= maxLoggedRcpts {
			continue
		}
		if i > 0 {
			b.WriteString(" ")
		}
		server := rc.server
		if server == "" {
			server = "-"
		}
		fmt.Fprintf(&b, "%s@%s:%d", rc.addr, server, rc.rcptReply.code)
		if rc.dataReply != nil {
			fmt.Fprintf(&b, "/%d", rc.dataReply.code)
		}
	}
	if n := len(tx.all) - maxLoggedRcpts; n > 0 {
		fmt.Fprintf(&b, " +%d more", n)
	}
	var summary []string
	for _, code := range slices.Sorted(maps.Keys(codes)) {
		summary = append(summary, fmt.Sprintf("%d:%d", code, codes[code]))
	}
	s.log.Info("lmtp transaction", "from", tx.from, "rcpts", len(tx.all), "accepted", len(tx.accepted),
		"size", tx.size, "codes", strings.Join(summary, ","), "recipients", b.String(),
		"duration", time.Since(tx.start).Round(time.Millisecond))
}

// maxNamedUsers bounds the users the session's log line names.
const maxNamedUsers = 5

// nameSession gives the engine's session line the users the transaction
// delivered to (the routing keys, as the director used them) and their
// servers, each once, in RCPT order.
func (s *session) nameSession(tx *txn) {
	var users, backends []string
	var targets []proxy.Target
	more := 0
	for _, rc := range tx.accepted {
		if rc.dataReply == nil || rc.dataReply.code != 250 {
			continue
		}
		if u := rc.lease.User(); u != "" && !slices.Contains(users, u) {
			if len(users) < maxNamedUsers {
				users = append(users, u)
			} else {
				more++
			}
		}
		t := rc.lease.Target()
		if !slices.ContainsFunc(targets, func(o proxy.Target) bool { return o.Backend == t.Backend && o.Server == t.Server }) {
			targets = append(targets, t)
		}
		if !slices.Contains(backends, t.Backend) {
			backends = append(backends, t.Backend)
		}
	}
	if len(users) == 0 {
		return
	}
	u := strings.Join(users, ",")
	if more > 0 {
		u += fmt.Sprintf(",+%d more", more)
	}
	s.c.SetUser(u)
	// Servers by name alone, as a relayed session's, unless the recipients
	// went to several backends (routing rules), whose servers may share a
	// name: then "BACKEND/SERVER".
	servers := make([]string, len(targets))
	for i, t := range targets {
		servers[i] = t.Server
		if len(backends) > 1 {
			servers[i] = t.Name()
		}
	}
	s.c.SetServers(backends, servers)
}
