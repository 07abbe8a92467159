package http

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/maildirector/maildirector/proxy"
)

// Capture is one request header written into the access log line
// (HAProxy's "capture request header NAME len LEN").
type Capture struct {
	Name string // the header's name, as it is logged (hdr.NAME=)
	Len  int    // the value is cut to this many bytes; must be positive
}

// DefaultCapture are the headers Dovecot's HTTP client sends to object
// storage, with the lengths of Dovecot's documented HAProxy setup.
var DefaultCapture = []Capture{
	{"X-Dovecot-Reason", 40},
	{"X-Dovecot-Username", 40},
	{"X-Dovecot-Session-Id", 70},
}

// DefaultReasonHeader is the header the statistics count requests by.
const DefaultReasonHeader = "X-Dovecot-Reason"

// Recorder receives one frontend's requests for the statistics. It is
// implemented outside the frontend (cmd wires the stats package to it);
// Request runs on the request's goroutine once it is done and must be
// cheap: atomics, no blocking.
type Recorder interface {
	// Request: one request ended. server is the last server tried ("" when
	// none was), of backend (the frontend's own unless a routing rule
	// chose another), reason the value of the reason header (cut to its capture
	// length, "" when absent), status what the client was answered (499
	// when it left before an answer), in and out the body bytes from and to
	// the client, d the time from its first byte to its end, and failed
	// whether maildirector answered it (no server's response) or a transfer
	// broke.
	Request(backend, server, reason string, status int, in, out int64, d time.Duration, failed bool)
}

// Timeouts bound each phase of a request, as HAProxy's timeouts of the
// same names. A zero field takes the default next to it; a negative one
// means none.
type Timeouts struct {
	Request   time.Duration // the request's headers, from its first byte (http-request); default 1m
	Queue     time.Duration // waiting for a slot under Options.MaxRequests (queue); default 1m
	Connect   time.Duration // dialling a server, TLS included (connect); default 5s
	Client    time.Duration // the client silent while its body is read or the response written (client); default 1m
	Server    time.Duration // the server silent: its response headers, a body either way (server); default 1m
	KeepAlive time.Duration // an idle client connection between requests (http-keep-alive); default 10m
}

func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d < 0:
		return 0 // none
	case d == 0:
		return def
	}
	return d
}

func (t Timeouts) request() time.Duration   { return orDefault(t.Request, time.Minute) }
func (t Timeouts) queue() time.Duration     { return orDefault(t.Queue, time.Minute) }
func (t Timeouts) connect() time.Duration   { return orDefault(t.Connect, 5*time.Second) }
func (t Timeouts) client() time.Duration    { return orDefault(t.Client, time.Minute) }
func (t Timeouts) server() time.Duration    { return orDefault(t.Server, time.Minute) }
func (t Timeouts) keepAlive() time.Duration { return orDefault(t.KeepAlive, 10*time.Minute) }

// Options configure a [Frontend]. The zero value of each field is its
// documented default, except Picker, which is required.
type Options struct {
	// Picker chooses the server of each request (and of each retry); it is
	// asked with an empty user name.
	Picker proxy.Picker
	// Backend names the servers' backend in the access log.
	Backend string
	// ForwardFor adds the client's address to X-Forwarded-For (after the
	// values the client sent), unless the client is in ForwardForExcept
	// (HAProxy's option forwardfor except NET). False: the client's
	// X-Forwarded-For passes unchanged.
	ForwardFor       bool
	ForwardForExcept []netip.Prefix
	// Capture are the request headers logged with each request. Nil:
	// DefaultCapture; empty and not nil: none.
	Capture []Capture
	// ReasonHeader is the header the statistics count requests by. Zero:
	// DefaultReasonHeader.
	ReasonHeader string
	// MaxRequests caps the requests in flight to the servers; more wait in
	// a queue for up to Timeouts.Queue, then get 503. Zero or negative: no
	// limit.
	MaxRequests int
	// ServerClose closes the server connection after each response
	// (HAProxy's option http-server-close). False: server connections are
	// kept alive and pooled.
	ServerClose bool
	// MaxIdlePerServer caps the idle pooled connections per server. Zero:
	// 64. Negative: none are kept.
	MaxIdlePerServer int
	// ReplayBuffer is how much of a request body is kept so that the
	// request can be sent again to another server after an error; a body
	// read further than this is never retried. Zero: 128 KiB. Negative:
	// none kept (only requests whose body was not read yet are retried).
	ReplayBuffer int
	Timeouts     Timeouts
	// Stats receives every request; nil: none.
	Stats Recorder
}

func (o *Options) replayBuffer() int {
	switch {
	case o.ReplayBuffer < 0:
		return 0
	case o.ReplayBuffer == 0:
		return 128 << 10
	}
	return o.ReplayBuffer
}

func (o *Options) maxIdlePerServer() int {
	switch {
	case o.MaxIdlePerServer < 0:
		return 0
	case o.MaxIdlePerServer == 0:
		return 64
	}
	return o.MaxIdlePerServer
}

// Frontend is the HTTP reverse proxy of one [frontend.NAME]; it is a
// [proxy.Handler] and safe for concurrent use. Close it when a reload
// replaces it.
type Frontend struct {
	opts    Options
	capture []Capture
	reason  int // index of the reason header in capture; -1: not captured
	srv     *http.Server
	rp      *httputil.ReverseProxy
	queue   *queue
	buffers sync.Pool // copy buffers of the response bodies

	mu         sync.Mutex
	closed     bool
	transports map[transportKey]*http.Transport
}

// New returns an HTTP frontend.
func New(opts Options) *Frontend {
	f := &Frontend{opts: opts, transports: make(map[transportKey]*http.Transport), queue: newQueue(opts.MaxRequests), reason: -1}
	if f.opts.ReasonHeader == "" {
		f.opts.ReasonHeader = DefaultReasonHeader
	}
	f.capture = opts.Capture
	if f.capture == nil {
		f.capture = DefaultCapture
	}
	for i, c := range f.capture {
		if http.CanonicalHeaderKey(c.Name) == http.CanonicalHeaderKey(f.opts.ReasonHeader) {
			f.reason = i
			break
		}
	}
	f.buffers.New = func() any { return make([]byte, copyBufferSize) }
	discard := log.New(io.Discard, "", 0)
	f.rp = &httputil.ReverseProxy{
		Rewrite:      f.rewrite,
		Transport:    f,
		ErrorHandler: f.answerError,
		BufferPool:   (*bufferPool)(&f.buffers),
		ErrorLog:     discard,
	}
	f.srv = &http.Server{
		Handler:                      f,
		ReadHeaderTimeout:            f.opts.Timeouts.request(),
		IdleTimeout:                  f.opts.Timeouts.keepAlive(),
		MaxHeaderBytes:               maxHeaderBytes,
		ConnState:                    connState,
		ConnContext:                  withConn,
		ErrorLog:                     discard,
		DisableGeneralOptionsHandler: true, // "OPTIONS *" goes to the servers, as through HAProxy
		// No HTTP/2: the engine ends TLS, so net/http never sees a
		// *tls.Conn; an empty map also skips its HTTP/2 setup.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	if f.srv.IdleTimeout == 0 {
		f.srv.IdleTimeout = -1 // none, rather than net/http's fallback to ReadTimeout
	}
	return f
}

const (
	// maxHeaderBytes caps a request's header section: Dovecot's requests
	// carry a few short headers; HAProxy's default buffer holds 16 KiB.
	maxHeaderBytes = 64 << 10
	// copyBufferSize is the buffer a response body is copied through:
	// large enough that a big object moves in few system calls.
	copyBufferSize = 64 << 10
)

// bufferPool is ReverseProxy's BufferPool over a sync.Pool.
type bufferPool sync.Pool

func (p *bufferPool) Get() []byte  { return (*sync.Pool)(p).Get().([]byte) }
func (p *bufferPool) Put(b []byte) { (*sync.Pool)(p).Put(b) }

// ServeConn serves HTTP requests on c until the client or net/http closes
// it, or the engine ends it: a graceful shutdown drains it (closed at once
// when idle, after the response in flight otherwise), a kick ends it. The engine closes c after
// ServeConn returns. The error says how the client ended: nil when net/http
// closed the connection (the client asked to, keep-alive ended, a reload),
// else the client's close or a request that did not arrive in time.
func (f *Frontend) ServeConn(ctx context.Context, c *proxy.Conn) error {
	cc := newClientConn(c)
	// The engine's first phase set a deadline for both directions; from
	// here on net/http and the exchanges set their own.
	c.SetWriteDeadline(time.Time{})
	// A graceful shutdown drains the connection; a kick (the context's
	// end, with every deadline the present) ends it at once.
	c.SetDrain(cc.drain)
	stop := context.AfterFunc(ctx, cc.drain)
	defer stop()
	f.srv.Serve(&oneConnListener{cc: cc}) // returns once cc is closed
	return cc.endErr()
}

// Refusal is what a connection the engine refuses (a per-client limit)
// is told before it is closed (proxy.Refuser): a 503 with the reason, as
// the answer to the request it is sending.
func (f *Frontend) Refusal(why string) string {
	body := "maildirector: " + why + "\n"
	return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// Close ends the frontend when a reload replaced it: its client
// connections close after their response in flight (idle ones at once) and
// its idle server connections are closed. Requests under way finish.
func (f *Frontend) Close() {
	f.mu.Lock()
	f.closed = true
	transports := f.transports
	f.mu.Unlock()
	f.srv.SetKeepAlivesEnabled(false) // also closes its idle connections
	for _, t := range transports {
		t.CloseIdleConnections()
	}
}

// queue holds the requests in flight to the servers under a limit; nil
// slots: no limit.
type queue struct{ slots chan struct{} }

func newQueue(max int) *queue {
	if max <= 0 {
		return &queue{}
	}
	return &queue{slots: make(chan struct{}, max)}
}

// acquire takes a slot, waiting up to timeout (0: without limit) or until
// ctx ends.
func (q *queue) acquire(ctx context.Context, timeout time.Duration) error {
	if q.slots == nil {
		return nil
	}
	select {
	case q.slots <- struct{}{}:
		return nil
	default:
	}
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case q.slots <- struct{}{}:
		return nil
	case <-expired:
		return errQueueTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *queue) release() {
	if q.slots != nil {
		<-q.slots
	}
}

// clientIP is the client as the engine knows it (a trusted PROXY
// header's source, else the socket's peer), for X-Forwarded-For.
func clientIP(a netip.AddrPort) string { return a.Addr().Unmap().String() }

var _ net.Listener = (*oneConnListener)(nil)
