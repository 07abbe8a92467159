package http

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/maildirector/maildirector/proxy"
)

// transportKey names one server as the frontend dials it: its pool.
type transportKey struct {
	addr string
	tls  *tls.Config
}

// transport returns the pool of connections to t, made on first use: one
// http.Transport per server, so that each server has its own idle
// connections and TLS settings.
func (f *Frontend) transport(t proxy.Target) *http.Transport {
	key := transportKey{t.Address, t.TLS}
	f.mu.Lock()
	defer f.mu.Unlock()
	if tr := f.transports[key]; tr != nil {
		return tr
	}
	idle := f.opts.maxIdlePerServer()
	tr := &http.Transport{
		DialContext:           f.dial,
		TLSHandshakeTimeout:   f.opts.Timeouts.connect(),
		DisableKeepAlives:     f.opts.ServerClose || f.closed || idle == 0,
		DisableCompression:    true, // bodies pass byte for byte
		MaxIdleConnsPerHost:   idle,
		IdleConnTimeout:       f.opts.Timeouts.server(),
		ResponseHeaderTimeout: f.opts.Timeouts.server(),
		ExpectContinueTimeout: time.Second,
		ReadBufferSize:        copyBufferSize,
		WriteBufferSize:       copyBufferSize,
	}
	if t.TLS != nil {
		cfg := t.TLS
		tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return f.dialTLS(ctx, addr, cfg)
		}
	}
	f.transports[key] = tr
	return tr
}

// dialError is a failure to connect to a server (TCP or TLS): nothing of
// the request was sent, so any request may go to another server.
type dialError struct {
	addr string
	err  error
}

func (e *dialError) Error() string { return fmt.Sprintf("connect to %s: %v", e.addr, e.err) }
func (e *dialError) Unwrap() error { return e.err }

// dial opens a connection to a server within Timeouts.Connect, whose
// reads and writes then time out after Timeouts.Server of silence. The
// transport dials for a request (the context carries its connection, so
// its exchange): the dial's time is the request's connect time, also when
// another connection came free first and served it.
func (f *Frontend) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	began := time.Now()
	d := net.Dialer{Timeout: f.opts.Timeouts.connect()}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if x := exchangeOf(ctx); x != nil {
		x.connect.Store(int64(time.Since(began)))
	}
	if err != nil {
		return nil, &dialError{addr, err}
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		if sc, err := proxy.SocketConn(tc); err == nil {
			nc = sc
		}
	}
	if t := f.opts.Timeouts.server(); t > 0 {
		return &serverConn{Conn: nc, timeout: t}, nil
	}
	return nc, nil
}

func (f *Frontend) dialTLS(ctx context.Context, addr string, cfg *tls.Config) (net.Conn, error) {
	nc, err := f.dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if d := f.opts.Timeouts.connect(); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		nc.Close()
		return nil, &dialError{addr, fmt.Errorf("tls: %w", err)}
	}
	return tc, nil
}

// serverConn is a connection to a server whose reads and writes fail after
// timeout of silence (HAProxy's timeout server). A write moves the read
// deadline too: the server's answer is due from then on, and the pending
// read of a pooled connection (the transport always reads) must not keep
// the deadline of its idle time. Deadlines move at most every timeout/16,
// which keeps the effective timeout within 1/16 of the setting; the
// transport reads on one goroutine and writes on another, so each side has
// its own clock.
type serverConn struct {
	net.Conn
	timeout time.Duration
	readAt  time.Time // the read side's next refresh
	writeAt time.Time // the write side's next refresh
}

func (c *serverConn) Read(p []byte) (int, error) {
	if now := time.Now(); !now.Before(c.readAt) {
		c.Conn.SetReadDeadline(now.Add(c.timeout))
		c.readAt = now.Add(c.timeout / 16)
	}
	return c.Conn.Read(p)
}

func (c *serverConn) Write(p []byte) (int, error) {
	if now := time.Now(); !now.Before(c.writeAt) {
		c.Conn.SetDeadline(now.Add(c.timeout))
		c.writeAt = now.Add(c.timeout / 16)
	}
	return c.Conn.Write(p)
}

// errQueueTimeout: no slot under Options.MaxRequests came free in
// Timeouts.Queue.
var errQueueTimeout = errors.New("queue timeout: no slot free under max_requests in time")

// noServerError: the picker had no server for the request (none usable,
// or all tried).
type noServerError struct{ err error }

func (e *noServerError) Error() string { return e.err.Error() }
func (e *noServerError) Unwrap() error { return e.err }

// RoundTrip is the reverse proxy's transport: it picks a server (the
// backend's balance algorithm, no user), sends the request on a pooled
// connection to it and returns its response, whose body ends the lease
// when closed. When the server fails before a response (connection
// refused, reset, timed out) it reports the server failed (passive health)
// and tries the next one, up to the frontend's retries, if the request
// can be sent again: always after a failed connect (nothing was sent),
// else only an idempotent request whose body was not read past the replay
// buffer (RFC 9110 section 9.2.2; the client saw no response byte yet).
func (f *Frontend) RoundTrip(req *http.Request) (*http.Response, error) {
	x := exchangeOf(req.Context())
	if x == nil {
		return nil, errors.New("round trip outside an exchange")
	}
	var tried []string
	var last error
	for attempt := 0; ; attempt++ {
		lease, err := f.opts.Picker.Pick(req.Context(), x.cc.c.PickRequest("", tried))
		if err != nil {
			if last != nil {
				return nil, last // every usable server was tried
			}
			return nil, &noServerError{err}
		}
		t := lease.Target()
		tried = append(tried, t.Server)
		x.backend, x.server, x.tried = t.Backend, t.Server, len(tried)
		out := x.attemptRequest(req, t)
		resp, err := f.transport(t).RoundTrip(out)
		if err == nil {
			x.response = time.Since(x.sent) - time.Duration(x.connect.Load())
			lease.Established()
			resp.Body = &serverBody{ReadCloser: resp.Body, x: x, lease: lease}
			return resp, nil
		}
		switch {
		case req.Context().Err() != nil: // the client left: nobody's failure
			lease.Release()
			return nil, err
		case proxy.IsLocalResource(err):
			lease.Release()
			return nil, fmt.Errorf("%w: %w", proxy.ErrLocalResource, err)
		case x.body != nil && x.body.clientErr() != nil: // the client's body broke off
			lease.Answered()
			lease.Release()
			return nil, err
		}
		lease.Failed(err) // releases the lease
		last = &serverError{server: t.Server, err: err}
		if attempt >= x.retries || !x.retryable(err) {
			return nil, last
		}
		x.cc.log.Warn("server failed, trying the next one", "server", t.Server, "method", x.method, "uri", x.uri, "err", err)
	}
}

// serverError is a server's failure to answer a request.
type serverError struct {
	server string
	err    error
}

func (e *serverError) Error() string { return fmt.Sprintf("server %s: %v", e.server, e.err) }
func (e *serverError) Unwrap() error { return e.err }

// attemptRequest is req as sent to t: its URL names t, its body is a new
// attempt's reader.
func (x *exchange) attemptRequest(req *http.Request, t proxy.Target) *http.Request {
	out := new(http.Request)
	*out = *req // a shallow copy, as Request.WithContext makes: the context stays
	u := *req.URL
	u.Scheme, u.Host = "http", t.Address
	if t.TLS != nil {
		u.Scheme = "https"
	}
	out.URL = &u
	if req.Body != nil && x.body != nil {
		out.Body = x.body.attempt()
	}
	x.connect.Store(0)
	x.sent = time.Now()
	return out
}

// retryable reports whether the request may go to another server after
// err: after a failed connect always (nothing was sent); otherwise when
// the method is idempotent and the body can be sent again whole.
func (x *exchange) retryable(err error) bool {
	var de *dialError
	if errors.As(err, &de) {
		return x.body == nil || x.body.canReplay()
	}
	switch x.method {
	case http.MethodGet, http.MethodHead, http.MethodDelete, http.MethodPut, http.MethodOptions, http.MethodTrace:
		return x.body == nil || x.body.canReplay()
	}
	return false
}
