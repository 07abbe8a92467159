package lmtp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/maildirector/maildirector/proxy"
)

// group is the recipients of one transaction that go to one server.
type group struct {
	target proxy.Target
	rcpts  []*rcpt
}

// groupResult is what one server made of its recipients.
type groupResult struct {
	// replies holds the final reply of each recipient that has one.
	replies map[string]*gosmtp.SMTPError
	// failed is the server's failure (down, refused, timeout, dropped), if any.
	failed error
	// retry: the server failed before it accepted any recipient, so the
	// recipients without a reply may go to another server.
	retry bool
}

// deliver sends the spooled body to every recipient's server, one
// connection per server, all in parallel, and sets each recipient's reply.
// With ServerDown next, the recipients of a server that failed before
// accepting any of them go to their next server, up to Retries rounds.
// It returns how many servers were used.
func (s *session) deliver(ctx context.Context, sp *spool) int {
	var pending []*rcpt
	for _, rc := range s.rcpts {
		if rc.reply == nil && !contains(pending, rc) {
			pending = append(pending, rc)
		}
	}
	used := make(map[string]bool)
	retries := 0 // with server_down tempfail, a recipient never goes elsewhere
	if s.l.opts.ServerDown == ServerDownNext {
		retries = s.c.Retries() // the frontend's retries, as for logins
	}
	for round := 0; len(pending) > 0 && round <= retries; round++ {
		groups := groupByServer(pending)
		results := make([]groupResult, len(groups))
		var wg sync.WaitGroup
		for i := range groups {
			wg.Add(1)
			go s.deliverGroup(ctx, &wg, groups[i], sp, &results[i])
		}
		wg.Wait()

		pending = nil
		for i, g := range groups {
			res := results[i]
			used[g.target.Server] = true
			s.settleLeases(g, res)
			if res.failed != nil {
				s.l.serverFails.Add(1)
				s.log.Warn("lmtp: server failed", "server", g.target.Server, "recipients", len(g.rcpts), "err", res.failed)
			}
			for _, rc := range g.rcpts {
				if reply, ok := res.replies[rc.addr]; ok {
					rc.reply = reply
					continue
				}
				// No reply from the server for this recipient. Only a
				// server that failed before accepting anyone may be
				// replaced; whatever else happened, the recipient gets a
				// 4xx: never a 250 the server did not give (never lose mail).
				if res.retry && round < retries && s.repick(ctx, rc) {
					pending = append(pending, rc)
					continue
				}
				failure := res.failed
				if failure == nil {
					failure = fmt.Errorf("server %s gave no reply for <%s>", g.target.Server, rc.addr)
				}
				rc.reply, _ = replyFor(fmt.Errorf("%w: %w", ErrServerUnavailable, failure))
			}
		}
	}
	s.nameSession()
	return len(used)
}

// maxNamedUsers bounds the users the session's log line names.
const maxNamedUsers = 5

// nameSession gives the engine's session line the users the transaction
// delivered to (the routing keys, as the director used them) and their
// servers, each once, in RCPT order.
func (s *session) nameSession() {
	var users, servers []string
	more := 0
	for _, rc := range s.rcpts {
		if rc.reply == nil || rc.reply.Code != 250 || rc.lease == nil {
			continue
		}
		if u := rc.lease.User(); u != "" && !slices.Contains(users, u) {
			if len(users) < maxNamedUsers {
				users = append(users, u)
			} else {
				more++
			}
		}
		if srv := rc.lease.Target().Server; !slices.Contains(servers, srv) {
			servers = append(servers, srv)
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
	s.c.SetServers(strings.Join(servers, ","))
}

func contains(list []*rcpt, rc *rcpt) bool {
	for _, r := range list {
		if r == rc {
			return true
		}
	}
	return false
}

// groupByServer groups recipients by target, in order of first appearance.
func groupByServer(rcpts []*rcpt) []group {
	var groups []group
	index := make(map[proxy.Target]int)
	for _, rc := range rcpts {
		t := rc.lease.Target()
		i, ok := index[t]
		if !ok {
			i = len(groups)
			index[t] = i
			groups = append(groups, group{target: t})
		}
		groups[i].rcpts = append(groups[i].rcpts, rc)
	}
	return groups
}

// settleLeases tells the director how the server did: one failure per
// failed server leg (not one per recipient); otherwise Established for
// each recipient the server accepted (250: the user is pinned to it) and
// Answered for the others, so unknown recipients grow no sticky table. The
// leases stay held until the transaction ends (Reset releases them).
func (s *session) settleLeases(g group, res groupResult) {
	if res.failed == nil {
		for _, rc := range g.rcpts {
			if r := res.replies[rc.addr]; r != nil && r.Code == 250 {
				rc.lease.Established()
			} else {
				rc.lease.Answered()
			}
		}
		return
	}
	g.rcpts[0].lease.Failed(res.failed)
	for _, rc := range g.rcpts[1:] {
		rc.lease.Release()
	}
}

// repick gives rc the next server in its user's order (ServerDown next).
func (s *session) repick(ctx context.Context, rc *rcpt) bool {
	lease, err := s.l.opts.Picker.Pick(ctx, rc.addr, s.c.RemoteAddr(), rc.tried)
	if err != nil {
		s.log.Debug("lmtp: no next server", "rcpt", rc.addr, "tried", rc.tried, "err", err)
		return false
	}
	rc.lease.Release()
	rc.lease = lease
	rc.tried = append(rc.tried, lease.Target().Server)
	return true
}

// deliverGroup runs one server's leg of the transaction; it exits when the
// server has answered every recipient, failed, or timed out (ServerTimeout
// per command, DataTimeout for the data and its replies).
func (s *session) deliverGroup(ctx context.Context, wg *sync.WaitGroup, g group, sp *spool, res *groupResult) {
	defer wg.Done()
	addrs := make([]string, len(g.rcpts))
	for i, rc := range g.rcpts {
		addrs[i] = rc.addr
	}
	defer func() {
		// A bug on one server's leg must not take the director down: its
		// recipients get 451 like any other failure (the MTA retries).
		if p := recover(); p != nil {
			s.log.Error("lmtp: panic delivering", "server", g.target.Server, "panic", p, "stack", string(debug.Stack()))
			reply, _ := replyFor(ErrServerUnavailable)
			*res = groupResult{replies: make(map[string]*gosmtp.SMTPError, len(addrs))}
			for _, a := range addrs {
				res.replies[a] = reply
			}
		}
	}()
	*res = s.deliverTo(ctx, g.target, addrs, sp)
}

// deliverTo is one LMTP client transaction (RFC 2033 section 4.2): MAIL,
// RCPT for each address (a refusal is that recipient's final reply), DATA,
// then one reply per accepted recipient.
func (s *session) deliverTo(ctx context.Context, t proxy.Target, addrs []string, sp *spool) groupResult {
	res := groupResult{replies: make(map[string]*gosmtp.SMTPError, len(addrs))}
	fail := func(err error, retry bool) groupResult {
		res.failed = proxy.ServerFailure(err)
		res.retry = retry
		if !retry {
			reply, _ := replyFor(res.failed)
			for _, a := range addrs {
				if _, ok := res.replies[a]; !ok {
					res.replies[a] = reply
				}
			}
		}
		return res
	}

	sc, err := s.l.serverConn(ctx, s.c, t)
	if err != nil {
		return fail(err, true)
	}
	healthy := false
	defer func() {
		if healthy {
			s.l.pool.put(sc)
		} else {
			sc.close()
		}
	}()
	cl := sc.cl

	opts := &gosmtp.MailOptions{Size: sp.size, Body: s.mail.Body}
	if s.mail.UTF8 {
		// RFC 6531: passed on only to a server that has SMTPUTF8; Dovecot
		// takes UTF-8 addresses either way.
		opts.UTF8, _ = cl.Extension("SMTPUTF8")
	}
	var se *gosmtp.SMTPError
	if err := cl.Mail(s.from, opts); err != nil {
		if errors.As(err, &se) && se.Code != 421 {
			healthy = true
			for _, a := range addrs {
				res.replies[a] = relayed(se, a)
			}
			return res
		}
		return fail(fmt.Errorf("mail at %s: %w", t.Server, err), true)
	}

	var accepted []string
	for _, a := range addrs {
		err := cl.Rcpt(a, nil)
		switch {
		case err == nil:
			accepted = append(accepted, a)
		case errors.As(err, &se):
			res.replies[a] = relayed(se, a)
		default:
			return fail(fmt.Errorf("rcpt at %s: %w", t.Server, err), len(accepted) == 0)
		}
	}
	if len(accepted) == 0 {
		healthy = true // the next transaction starts with RSET
		return res
	}

	dc, err := cl.Data()
	if err != nil {
		if errors.As(err, &se) {
			healthy = true
			for _, a := range accepted {
				res.replies[a] = relayed(se, a)
			}
			return res
		}
		return fail(fmt.Errorf("data at %s: %w", t.Server, err), false)
	}
	sc.nc.SetDeadline(time.Now().Add(s.l.opts.dataTimeout()))
	if _, err := io.Copy(dc, sp.reader()); err != nil {
		return fail(fmt.Errorf("send message to %s: %w", t.Server, err), false)
	}
	resp, err := dc.CloseWithLMTPResponse()
	var refused gosmtp.LMTPDataError
	errors.As(err, &refused)
	for _, a := range accepted {
		if r, ok := resp[a]; ok {
			res.replies[a] = serverOK(r.StatusText, a)
		} else if se, ok := refused[a]; ok {
			res.replies[a] = relayed(se, a)
		}
	}
	if _, onlyReplies := err.(gosmtp.LMTPDataError); err != nil && !onlyReplies {
		// Dropped or timed out after the data: the recipients it answered
		// keep their reply, the others get 451 (the MTA retries them).
		return fail(fmt.Errorf("replies after data at %s: %w", t.Server, err), false)
	}
	healthy = true
	return res
}

// serverConn is one LMTP client connection to a server.
type serverConn struct {
	key       poolKey
	nc        net.Conn
	cl        *gosmtp.Client
	idleSince time.Time
}

func (sc *serverConn) close() { sc.cl.Close() }

// poolKey says which idle connections a transaction may reuse: those
// to the same server, dialled the same way and, when a PROXY header is
// sent, for a client at the same address and TLS state (the header was
// written at dial time; its source port is the first client's).
type poolKey struct {
	server, address string
	proxy           proxy.ProxyMode
	tls             *tls.Config
	client          netip.Addr
	clientTLS       bool
}

func poolKeyFor(c *proxy.Conn, t proxy.Target) poolKey {
	k := poolKey{server: t.Server, address: t.Address, proxy: t.Proxy, tls: t.TLS}
	if t.Proxy != proxy.ProxyNone {
		k.client = c.RemoteAddr().Addr()
		k.clientTLS = c.IsTLS()
	}
	return k
}

// serverConn returns a connection to t that has answered LHLO: a pooled
// one that still answers RSET (RFC 5321 section 4.1.1.5), else a new one
// dialled by the engine (PROXY header, TLS) for client c. Errors are the
// server's failures.
func (l *Frontend) serverConn(ctx context.Context, c *proxy.Conn, t proxy.Target) (*serverConn, error) {
	key := poolKeyFor(c, t)
	for range l.pool.max + 1 {
		sc := l.pool.get(key)
		if sc == nil {
			break
		}
		if err := sc.cl.Reset(); err == nil {
			l.reused.Add(1)
			return sc, nil
		}
		sc.close() // went stale while idle; not the server's failure
	}
	nc, err := c.Dial(ctx, t)
	if err != nil {
		return nil, err
	}
	cl := gosmtp.NewClientLMTP(nc)
	cl.CommandTimeout = l.opts.serverTimeout()
	cl.SubmissionTimeout = l.opts.dataTimeout()
	if err := cl.Hello(l.hostname); err != nil {
		cl.Close()
		return nil, fmt.Errorf("greeting and LHLO from %s: %w", t.Server, err)
	}
	l.dialed.Add(1)
	return &serverConn{key: key, nc: nc, cl: cl}, nil
}

// pool keeps idle server connections: at most max per server, each for
// at most idle. Expired ones are closed whenever the pool is used.
type pool struct {
	max  int
	idle time.Duration

	mu        sync.Mutex
	conns     map[poolKey][]*serverConn
	perServer map[string]int
	closed    bool
}

// get takes the most recently used idle connection for key, or nil.
func (p *pool) get(key poolKey) *serverConn {
	p.mu.Lock()
	stale := p.expireLocked(time.Now())
	var sc *serverConn
	if list := p.conns[key]; len(list) > 0 {
		sc = list[len(list)-1]
		p.removeLocked(key, len(list)-1)
	}
	p.mu.Unlock()
	closeAll(stale)
	return sc
}

// put keeps sc for the next transaction, or closes it when the server
// already has max idle connections.
func (p *pool) put(sc *serverConn) {
	if p.max <= 0 {
		sc.close()
		return
	}
	now := time.Now()
	p.mu.Lock()
	stale := p.expireLocked(now)
	if p.closed || p.perServer[sc.key.server] >= p.max {
		p.mu.Unlock()
		closeAll(stale)
		sc.close()
		return
	}
	if p.conns == nil {
		p.conns = make(map[poolKey][]*serverConn)
		p.perServer = make(map[string]int)
	}
	sc.idleSince = now
	p.conns[sc.key] = append(p.conns[sc.key], sc)
	p.perServer[sc.key.server]++
	p.mu.Unlock()
	closeAll(stale)
}

// close closes every idle connection; later puts close theirs.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	var all []*serverConn
	for _, list := range p.conns {
		all = append(all, list...)
	}
	p.conns, p.perServer = nil, nil
	p.mu.Unlock()
	closeAll(all)
}

func (p *pool) expireLocked(now time.Time) []*serverConn {
	var stale []*serverConn
	for key, list := range p.conns {
		for i := len(list) - 1; i >= 0; i-- {
			if now.Sub(list[i].idleSince) >= p.idle {
				stale = append(stale, list[i])
				p.removeLocked(key, i)
				list = p.conns[key]
			}
		}
	}
	return stale
}

func (p *pool) removeLocked(key poolKey, i int) {
	list := p.conns[key]
	list = append(list[:i], list[i+1:]...)
	if len(list) == 0 {
		delete(p.conns, key)
	} else {
		p.conns[key] = list
	}
	p.perServer[key.server]--
	if p.perServer[key.server] <= 0 {
		delete(p.perServer, key.server)
	}
}

func closeAll(list []*serverConn) {
	for _, sc := range list {
		sc.close()
	}
}
