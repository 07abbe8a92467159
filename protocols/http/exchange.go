package http

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maildirector/maildirector/proxy"
)

// exchange is one request and its response, from the handler's start to
// its access log line. The handler's goroutine owns it; the request body
// (clientBody) has its own lock, for the transport reads it on another.
type exchange struct {
	f        *Frontend
	cc       *clientConn
	client   netip.AddrPort
	retries  int       // other servers this request may be tried on
	reqStart time.Time // the request's first byte
	start    time.Time // the handler's start: the headers are in
	method   string
	uri      string
	captured []string
	body     *clientBody // nil: the request has no body
	w        *respWriter

	queued    time.Duration // waiting for a slot
	connect   atomic.Int64  // ns dialling a connection for this request (0: a pooled one); set by the dial's goroutine
	response  time.Duration // from the connection to the response headers
	backend   string        // the last server's backend ("": Options.Backend)
	server    string        // the last server tried
	tried     int           // servers tried
	answered  string        // maildirector's own answer's reason; "" when a server answered
	term      string        // HAProxy's termination state, when an error decided it
	serverErr error         // reading the response body from the server failed

	sent time.Time // when the last attempt went to the transport
}

// exchangeOf returns the exchange a request's context belongs to: its
// connection's current one (HTTP/1.1 serves one request at a time on a
// connection), so that no context or request is made per request for it.
func exchangeOf(ctx context.Context) *exchange {
	if cc := connOf(ctx); cc != nil {
		return cc.x.Load()
	}
	return nil
}

// ServeHTTP proxies one request: capture, queue, Rewrite, RoundTrip (with
// retries), the response streamed back, one access log line.
func (f *Frontend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cc := connOf(r.Context())
	if cc == nil {
		http.Error(w, "maildirector: no connection", http.StatusInternalServerError)
		return
	}
	x := &exchange{
		f: f, cc: cc, client: cc.c.RemoteAddr(), retries: cc.c.Retries(),
		reqStart: cc.takeRequestStart(), start: time.Now(),
		method: r.Method, uri: r.RequestURI,
		captured: make([]string, len(f.capture)),
	}
	for i, c := range f.capture {
		x.captured[i] = cut(r.Header.Get(c.Name), c.Len)
	}
	x.w = &respWriter{ResponseWriter: w, x: x, timeout: f.opts.Timeouts.client()}
	x.w.refresh(x.start)
	cc.x.Store(x)
	defer func() {
		p := recover() // ReverseProxy aborts a response cut short with http.ErrAbortHandler
		x.end(p)
		if p != nil {
			panic(p)
		}
	}()

	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		x.body = newClientBody(r.Body, x, f.opts.replayBuffer()) // the outgoing body: see rewrite
		// A server may answer before it has read the whole body (an early
		// error, or a stream): pass its answer on at once instead of
		// letting net/http read the rest of the body first.
		http.NewResponseController(w).EnableFullDuplex()
	}
	began := time.Now()
	err := f.queue.acquire(r.Context(), f.opts.Timeouts.queue())
	x.queued = time.Since(began)
	if err != nil {
		f.answerError(x.w, r, err)
		return
	}
	defer f.queue.release()
	f.rp.ServeHTTP(x.w, r)
}

// end writes the access log line and counts the request; p is the
// handler's panic, if any (an aborted response).
func (x *exchange) end(p any) {
	x.cc.x.Store(nil)
	if x.body != nil {
		x.body.finish()
	}
	total := time.Since(x.reqStart)
	status := x.w.status
	if status == 0 {
		status = http.StatusOK // net/http's implicit answer
	}
	term := x.termination(p)
	failed := x.answered != "" || term[0] != '-'
	if term[0] == 'C' || term[0] == 'c' {
		if x.w.status == 0 {
			status = statusClientClosed
		}
	}
	var in int64
	if x.body != nil {
		in = x.body.count()
	}
	if s := x.f.opts.Stats; s != nil {
		reason := ""
		if x.f.reason >= 0 {
			reason = x.captured[x.f.reason]
		}
		backend := x.backend
		if backend == "" {
			backend = x.f.opts.Backend
		}
		s.Request(backend, x.server, reason, status, in, x.w.n, total, failed)
	}
	x.log(status, in, total, term, p)
}

// termination is HAProxy's two-character termination state: who ended the
// request ('-' nobody: it completed; 'C'/'c' the client, by closing or a
// timeout; 'S'/'s' the server, by an error or a timeout; 'P' maildirector;
// 'R' a local resource) and in which phase ('-' completed, 'Q' the queue,
// 'C' connecting, 'H' the response headers, 'D' the data).
func (x *exchange) termination(p any) string {
	if x.term != "" {
		return x.term
	}
	if err := x.w.err; err != nil {
		return side('C', err) + "D"
	}
	if err := x.serverErr; err != nil {
		return side('S', err) + "D"
	}
	if x.body != nil {
		if err := x.body.clientErr(); err != nil {
			return side('C', err) + "D"
		}
	}
	if p != nil {
		return "PD"
	}
	return "--"
}

// side is who, in upper case, or in lower case when err is a timeout.
func side(who byte, err error) string {
	if isTimeout(err) {
		who += 'a' - 'A'
	}
	return string(who)
}

// cut returns s cut to n bytes.
func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// forwardingHeaders are the headers ReverseProxy removes before Rewrite.
var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"}

// rewrite is ReverseProxy's Rewrite: the client's forwarding headers pass
// as they came, and with ForwardFor the client's address is added to
// X-Forwarded-For (HAProxy's option forwardfor: except from the networks
// listed). The Host header is the client's; RoundTrip sets the server.
// The body is the exchange's, which RoundTrip reads once per attempt.
func (f *Frontend) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = pr.In.Host
	for _, h := range forwardingHeaders {
		if v, ok := pr.In.Header[h]; ok {
			pr.Out.Header[h] = v
		}
	}
	x := exchangeOf(pr.In.Context())
	if x == nil {
		return
	}
	if x.body != nil {
		pr.Out.Body = x.body
	}
	if !f.opts.ForwardFor {
		return
	}
	for _, p := range f.opts.ForwardForExcept {
		if p.Contains(x.client.Addr().Unmap()) {
			return
		}
	}
	ip := clientIP(x.client)
	if prior := pr.In.Header["X-Forwarded-For"]; len(prior) > 0 {
		ip = strings.Join(prior, ", ") + ", " + ip
	}
	pr.Out.Header.Set("X-Forwarded-For", ip)
}

// respWriter is the client's ResponseWriter: it records the status and the
// body bytes written, and keeps the client's write deadline Timeouts.Client
// ahead of each write.
type respWriter struct {
	http.ResponseWriter
	x       *exchange
	timeout time.Duration
	status  int // the final status written; 0 before
	n       int64
	err     error // the first write error: the client's
}

func (w *respWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
		w.last()
	}
	w.refresh(time.Now())
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
		w.last()
	}
	w.refresh(time.Now())
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// last marks the response the connection's last when the engine asked it
// to end (a shutdown that came while the request was under way).
func (w *respWriter) last() {
	if w.x.cc.isDraining() {
		w.Header().Set("Connection", "close")
	}
}

// Unwrap lets http.ResponseController reach net/http's writer (Flush).
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// refresh moves the write deadline to now+timeout, at most every
// timeout/16 on a connection: a deadline per write, or per request, would
// cost a timer update each for nothing.
func (w *respWriter) refresh(now time.Time) {
	cc := w.x.cc
	if w.timeout <= 0 || now.Before(cc.writeAt) {
		return
	}
	cc.SetWriteDeadline(now.Add(w.timeout))
	cc.writeAt = now.Add(w.timeout / 16)
}

// errAttemptOver is what a request body reader of an attempt that was
// given up returns (the transport may read on after RoundTrip returned).
var errAttemptOver = errors.New("request body: attempt given up")

// clientBody is the request body as the servers get it: counted, the
// client's read deadline kept Timeouts.Client ahead, and kept up to a limit
// so that the request can be sent again to another server. Each attempt
// reads it through its own reader (attempt); a new attempt invalidates the
// previous one's, which the transport may still be reading on another
// goroutine.
type clientBody struct {
	src     io.ReadCloser
	x       *exchange
	limit   int
	timeout time.Duration

	mu        sync.Mutex
	gen       int
	buf       []byte // bytes 0..n of the body, while not over
	over      bool   // more than limit was read: buf dropped
	n         int64  // bytes read from the client
	eof       bool
	err       error // the client's read error
	done      bool  // the handler returned
	refreshAt time.Time
}

func newClientBody(src io.ReadCloser, x *exchange, limit int) *clientBody {
	return &clientBody{src: src, x: x, limit: limit, timeout: x.f.opts.Timeouts.client(), over: limit == 0}
}

// Read and Close make clientBody the outgoing request's body until
// RoundTrip gives each attempt its own reader; they are not used.
func (b *clientBody) Read([]byte) (int, error) { return 0, errAttemptOver }
func (b *clientBody) Close() error             { return nil }

// attempt returns the body reader of a new attempt; the previous one's
// reads fail from now on.
func (b *clientBody) attempt() io.ReadCloser {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.gen++
	return &attemptBody{b: b, gen: b.gen}
}

// canReplay reports whether a new attempt can send the whole body: nothing
// was read yet, or all that was read is kept and the client did not fail.
func (b *clientBody) canReplay() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n == 0 || !b.over && b.err == nil
}

// complete reports whether the whole body was read from the client.
func (b *clientBody) complete() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof
}

func (b *clientBody) count() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

func (b *clientBody) clientErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// finish marks the handler's end: a transport still reading gets an error
// and the client connection is left alone.
func (b *clientBody) finish() {
	b.mu.Lock()
	b.done = true
	b.gen++
	b.buf = nil
	b.mu.Unlock()
}

type attemptBody struct {
	b   *clientBody
	gen int
	pos int64
}

func (a *attemptBody) Read(p []byte) (int, error) {
	b := a.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if a.gen != b.gen || b.done {
		return 0, errAttemptOver
	}
	if !b.over && a.pos < int64(len(b.buf)) { // replaying what an earlier attempt read
		n := copy(p, b.buf[a.pos:])
		a.pos += int64(n)
		return n, nil
	}
	switch {
	case a.pos != b.n: // cannot happen: RoundTrip retries only what canReplay
		return 0, errAttemptOver
	case b.eof:
		return 0, io.EOF
	case b.err != nil:
		return 0, b.err
	}
	now := time.Now()
	if b.timeout > 0 && !now.Before(b.refreshAt) {
		b.x.cc.SetReadDeadline(now.Add(b.timeout))
		b.refreshAt = now.Add(b.timeout / 16)
	}
	n, err := b.src.Read(p)
	b.n += int64(n)
	a.pos += int64(n)
	if !b.over {
		if len(b.buf)+n <= b.limit {
			b.buf = append(b.buf, p[:n]...)
		} else {
			b.over, b.buf = true, nil
		}
	}
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.err = err
	}
	switch {
	case err == io.EOF && b.timeout > 0:
		// The body is done: no deadline while the response streams, or
		// net/http's background read would cancel the request.
		b.x.cc.SetReadDeadline(time.Time{})
	case err != nil && err != io.EOF:
		// The client failed: what is left of the connection is not read
		// again (net/http would wait for the rest of the body).
		b.x.cc.SetReadDeadline(time.Now())
	}
	return n, err
}

func (a *attemptBody) Close() error { return nil }

// serverBody is a response body from a server: it records a read error
// (the server failed mid-body) and ends the request's lease on the server
// when ReverseProxy closes it.
type serverBody struct {
	io.ReadCloser
	x     *exchange
	lease proxy.Lease
	once  sync.Once
}

func (b *serverBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		if b.x.serverErr == nil {
			b.x.serverErr = err // ReverseProxy reads the body on the handler's goroutine
		}
	}
	return n, err
}

func (b *serverBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.lease.Release)
	return err
}
