package lmtp

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/proxy"
)

// Caps on what a server may send.
const (
	// maxServerLine caps a server reply line (RFC 5321 section
	// 4.5.3.1.5: 512 octets), with room for the lenient.
	maxServerLine = 2048
	// maxReplyLines bounds a multi-line server reply (LHLO lists a few
	// dozen keywords at most).
	maxReplyLines = 100
	// serverWriteBuffer holds a message of the usual size whole, so that
	// the body and the end line go to the server in one write; a larger
	// body is written straight from the spool.
	serverWriteBuffer = 16 << 10
)

// errProtocol: a server's reply does not fit the command it answers (a
// 250 where DATA needs 354, an extra or missing reply, garbage). Its
// recipients get 451 4.4.1 and the connection is closed: a connection out
// of step cannot be trusted with the next transaction.
var errProtocol = errors.New("server broke the LMTP protocol")

// serverConn is one hand-written LMTP client connection to a server (RFC
// 2033 section 4): greeting and LHLO done, its extensions known.
type serverConn struct {
	key       poolKey
	nc        net.Conn
	r         *bufio.Reader
	w         *bufio.Writer
	ext       map[string]string // LHLO keywords, upper case, and their parameters
	idleSince time.Time
	// resetDue: taken from the pool by a server with PIPELINING, whose RSET
	// is sent with the transaction's first commands (RFC 2920) instead of
	// costing a round trip of its own.
	resetDue bool
}

func (sc *serverConn) close() { sc.nc.Close() }

// has reports whether the server advertised the extension keyword.
func (sc *serverConn) has(keyword string) bool {
	_, ok := sc.ext[keyword]
	return ok
}

// send writes command lines (CRLF added) within d. RFC 2920: with
// PIPELINING the caller may send several before reading the replies.
func (sc *serverConn) send(d time.Duration, lines ...string) error {
	sc.nc.SetWriteDeadline(deadline(d))
	for _, l := range lines {
		sc.w.WriteString(l)
		sc.w.WriteString("\r\n")
	}
	return sc.w.Flush()
}

// readReply reads one reply within d.
func (sc *serverConn) readReply(d time.Duration) (mailwire.Reply, error) {
	sc.nc.SetReadDeadline(deadline(d))
	rep, err := mailwire.ReadSMTPReply(sc.r, maxReplyLines, maxServerLine)
	if errors.Is(err, mailwire.ErrMalformedReply) || errors.Is(err, mailwire.ErrTooManyLines) ||
		errors.Is(err, mailwire.ErrLineTooLong) {
		return rep, fmt.Errorf("%w: %w", errProtocol, err)
	}
	return rep, err
}

// quiet reports whether the server has sent nothing that was not asked
// for: after the replies a command expects, any byte more means the
// connection is out of step. It looks at what was read so far, which is
// where an extra reply sent with the expected ones lands; [serverConn.idle]
// also asks the socket, before a pooled connection is used again.
func (sc *serverConn) quiet() bool { return sc.r.Buffered() == 0 }

// idle reports whether a pooled connection is fit for reuse: nothing
// buffered and nothing waiting in the socket, neither a late extra reply
// (which would answer the next transaction's first command) nor the
// server's close (a read of 0 bytes). A read deadline in the past would not
// do: the runtime reports it expired without asking the kernel.
func (sc *serverConn) idle() bool {
	if !sc.quiet() {
		return false
	}
	nc := sc.nc
	if tc, ok := nc.(*tls.Conn); ok {
		// crypto/tls reads the socket ahead: a record that came in the
		// same segment as the last reply waits inside tc, in neither
		// sc.r nor the socket. A read deadline in the past still lets
		// tc hand over a record it holds whole, and reads nothing more.
		tc.SetReadDeadline(time.Now())
		_, err := sc.r.Peek(1)
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return false
		}
		nc = tc.NetConn() // any TLS record waiting, even a ticket: not idle
	}
	sc.nc.SetReadDeadline(time.Time{})
	quiet, ok := proxy.Quiet(nc)
	if !ok {
		return true // not a socket (tests' pipes): the RSET still checks it
	}
	return quiet
}

// dialServer connects to t for client c through the engine (PROXY header,
// TLS), reads the greeting and says LHLO (RFC 2033 section 4.1). Errors
// are the server's failures.
func (l *Frontend) dialServer(ctx context.Context, c *proxy.Conn, t proxy.Target) (*serverConn, error) {
	nc, err := c.Dial(ctx, t)
	if err != nil {
		return nil, proxy.ServerFailure(err)
	}
	sc := &serverConn{key: poolKeyFor(c, t), nc: nc, r: bufio.NewReader(nc), w: bufio.NewWriterSize(nc, serverWriteBuffer)}
	fail := func(what string, rep mailwire.Reply, err error) (*serverConn, error) {
		sc.close()
		if err == nil {
			err = fmt.Errorf("%s: %q", what, rep.Raw())
		} else {
			err = fmt.Errorf("%s: %w", what, err)
		}
		return nil, proxy.ServerFailure(fmt.Errorf("%s: %w", t.Server, err))
	}
	d := l.opts.serverTimeout()
	rep, err := sc.readReply(d)
	if err != nil || rep.Code != 220 {
		return fail("greeting", rep, err)
	}
	if err := sc.send(d, "LHLO "+l.hostname); err != nil {
		return fail("send LHLO", rep, err)
	}
	rep, err = sc.readReply(d)
	if err != nil || rep.Code != 250 {
		return fail("LHLO", rep, err)
	}
	sc.ext = make(map[string]string)
	for _, line := range rep.Lines[1:] {
		kw, param, _ := strings.Cut(strings.TrimSpace(line[min(4, len(line)):]), " ")
		sc.ext[strings.ToUpper(kw)] = param
	}
	l.dialed.Add(1)
	return sc, nil
}

// serverConn returns a connection to t that has answered LHLO: a pooled
// one that is quiet and answers RSET with 250 (RFC 5321 section 4.1.1.5),
// else a new one. A pooled connection to a server with PIPELINING is
// returned with its RSET still due (resetDue): the caller sends it ahead
// of MAIL and checks its reply first.
func (l *Frontend) serverConn(ctx context.Context, c *proxy.Conn, t proxy.Target) (*serverConn, error) {
	key := poolKeyFor(c, t)
	for range l.pool.max + 1 {
		sc := l.pool.get(key)
		if sc == nil {
			break
		}
		idle := sc.idle()
		if idle && sc.has("PIPELINING") {
			sc.resetDue = true
			l.reused.Add(1)
			return sc, nil
		}
		d := l.opts.serverTimeout()
		if idle && sc.send(d, "RSET") == nil {
			if rep, err := sc.readReply(d); err == nil && rep.Code == 250 && sc.quiet() {
				l.reused.Add(1)
				return sc, nil
			}
		}
		sc.close() // went stale or out of step while idle; not the server's failure
	}
	return l.dialServer(ctx, c, t)
}

// poolKey says which idle connections a transaction may reuse: those
// to the same server of the same backend (two backends may name servers
// alike), dialled the same way and, when a PROXY header is
// sent, for a client at the same address and TLS state (the header was
// written at dial time; its source port is the first client's).
type poolKey struct {
	server    serverKey
	address   string
	proxy     proxy.ProxyMode
	tls       *tls.Config
	client    netip.Addr
	clientTLS bool
}

func poolKeyFor(c *proxy.Conn, t proxy.Target) poolKey {
	k := poolKey{server: serverKey{t.Backend, t.Server}, address: t.Address, proxy: t.Proxy, tls: t.TLS}
	if t.Proxy != proxy.ProxyNone {
		k.client = c.RemoteAddr().Addr()
		k.clientTLS = c.IsTLS()
	}
	return k
}

// serverKey names one server: by its name within its backend.
type serverKey struct{ backend, server string }

// pool keeps idle server connections: at most max per server, each for
// at most idle. Expired ones are closed whenever the pool is used.
type pool struct {
	max  int
	idle time.Duration

	mu        sync.Mutex
	conns     map[poolKey][]*serverConn
	perServer map[serverKey]int
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
		p.perServer = make(map[serverKey]int)
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
