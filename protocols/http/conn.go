package http

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/maildirector/maildirector/proxy"
)

// clientConn is the engine's connection as net/http sees it: reads go
// through the proxy.Conn's reader (bytes it buffered past a PROXY header
// included), writes through its Write, deadlines through its own setters,
// so that the engine counts the bytes and can still end the session.
//
// Close is net/http's last act on it: it waits for a read in flight (the
// server's background read) to return, so that nothing reads the engine's
// reader once ServeConn has returned, then releases the listener.
type clientConn struct {
	c      *proxy.Conn
	log    *slog.Logger
	remote net.Addr
	local  net.Addr
	done   chan struct{} // closed by Close

	// x is the exchange being served (nil between requests): the
	// handler's goroutine sets it; a dial for it, on the transport's, reads
	// it. writeAt is when the write deadline moves next, the handler's.
	x       atomic.Pointer[exchange]
	writeAt time.Time

	mu       sync.Mutex
	cond     *sync.Cond // signalled when reading drops to 0 after Close
	reading  int        // reads in flight
	closed   bool
	state    http.ConnState
	draining bool           // the engine asked the connection to end after its request in flight
	readErr  error          // the last read error before Close: how the client ended
	errState http.ConnState // the state at that error
	errIdle  bool           // no byte of a next request had come at that error
	awaiting bool           // between requests: the next byte read starts a request
	reqStart time.Time      // when the current request's first byte came
}

func newClientConn(c *proxy.Conn) *clientConn {
	cc := &clientConn{
		c: c, log: c.Logger(), done: make(chan struct{}), awaiting: true,
		remote: net.TCPAddrFromAddrPort(c.RemoteAddr()),
		local:  net.TCPAddrFromAddrPort(c.LocalAddr()),
	}
	cc.cond = sync.NewCond(&cc.mu)
	return cc
}

func (cc *clientConn) Read(p []byte) (int, error) {
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return 0, net.ErrClosed
	}
	cc.reading++
	cc.mu.Unlock()

	n, err := cc.c.Reader().Read(p)

	cc.mu.Lock()
	cc.reading--
	if n > 0 && cc.awaiting {
		cc.awaiting, cc.reqStart = false, time.Now()
	}
	if err != nil && !cc.closed {
		cc.readErr, cc.errState, cc.errIdle = err, cc.state, cc.awaiting
	}
	if cc.closed && cc.reading == 0 {
		cc.cond.Broadcast()
	}
	cc.mu.Unlock()
	return n, err
}

func (cc *clientConn) Write(p []byte) (int, error) { return cc.c.Write(p) }

// Close releases the connection to the engine (which closes the socket
// when ServeConn returns).
func (cc *clientConn) Close() error {
	cc.mu.Lock()
	if cc.closed {
		cc.mu.Unlock()
		return nil
	}
	cc.closed = true
	if cc.reading > 0 {
		cc.c.SetReadDeadline(time.Now()) // wake the read in flight
		for cc.reading > 0 {
			cc.cond.Wait()
		}
	}
	cc.mu.Unlock()
	close(cc.done)
	return nil
}

func (cc *clientConn) LocalAddr() net.Addr  { return cc.local }
func (cc *clientConn) RemoteAddr() net.Addr { return cc.remote }

func (cc *clientConn) SetDeadline(t time.Time) error {
	cc.SetReadDeadline(t)
	return cc.SetWriteDeadline(t)
}

// SetReadDeadline passes t on, except while the connection is draining
// between requests: then it is the present, so that the wait for the next
// request ends at once whatever net/http asks.
func (cc *clientConn) SetReadDeadline(t time.Time) error {
	cc.mu.Lock()
	if cc.draining && cc.state != http.StateActive {
		t = time.Now()
	}
	cc.mu.Unlock()
	return cc.c.SetReadDeadline(t)
}

func (cc *clientConn) SetWriteDeadline(t time.Time) error { return cc.c.SetWriteDeadline(t) }

// setState is net/http's ConnState hook. Between requests the next byte
// read starts the next request's clock; a draining connection that goes
// idle is ended.
func (cc *clientConn) setState(s http.ConnState) {
	cc.mu.Lock()
	cc.state = s
	if s == http.StateIdle {
		cc.awaiting = true
	}
	end := cc.draining && s == http.StateIdle && !cc.closed
	cc.mu.Unlock()
	if end {
		cc.c.SetReadDeadline(time.Now())
	}
}

// drain is the engine asking the connection to end (shutdown, kick): at
// once when no request is being served, else after its response.
func (cc *clientConn) drain() {
	cc.mu.Lock()
	cc.draining = true
	end := cc.state != http.StateActive && !cc.closed
	cc.mu.Unlock()
	if end {
		cc.c.SetReadDeadline(time.Now())
	}
}

// isDraining reports whether the response being prepared is the
// connection's last.
func (cc *clientConn) isDraining() bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.draining
}

// takeRequestStart returns when the current request's first byte came.
func (cc *clientConn) takeRequestStart() time.Time {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.reqStart.IsZero() {
		return time.Now()
	}
	return cc.reqStart
}

// errRequestTimeout: the client did not send a whole request's headers in
// time (Timeouts.Request).
var errRequestTimeout = errors.New("request headers not received in time (timeouts.request)")

// errClientTimeout: the client was silent while its request body was read
// (Timeouts.Client).
var errClientTimeout = errors.New("client silent while its body was read (timeouts.client)")

// endErr is how the connection ended, for the engine's session line: nil
// when net/http ended it (the client asked to close, keep-alive expired,
// a reload or shutdown drained it), an error wrapping io.EOF or the reset
// when the client closed it, a timeout when a request did not arrive whole
// (its headers, or its body).
func (cc *clientConn) endErr() error {
	cc.mu.Lock()
	err, st, idle, draining := cc.readErr, cc.errState, cc.errIdle, cc.draining
	cc.mu.Unlock()
	var ne net.Error
	switch {
	case err == nil, draining:
		return nil
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return fmt.Errorf("client closed the connection: %w", err)
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		switch {
		case st == http.StateActive:
			return fmt.Errorf("%w: %w", errClientTimeout, err)
		case st == http.StateIdle && idle:
			return nil // keep-alive expired: the normal end of an idle connection
		}
		return fmt.Errorf("%w: %w", errRequestTimeout, err)
	}
	return err
}

// connKey is the context key of the request's clientConn.
type connKey struct{}

func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

func connOf(ctx context.Context) *clientConn {
	cc, _ := ctx.Value(connKey{}).(*clientConn)
	return cc
}

func connState(c net.Conn, s http.ConnState) {
	if cc, ok := c.(*clientConn); ok {
		cc.setState(s)
	}
}

// oneConnListener is the listener of one ServeConn: it yields its
// connection once, then blocks until the connection is closed, so that
// http.Server.Serve returns when the connection is done.
type oneConnListener struct {
	cc    *clientConn
	taken bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if !l.taken {
		l.taken = true
		return l.cc, nil
	}
	<-l.cc.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error   { return nil }
func (l *oneConnListener) Addr() net.Addr { return l.cc.local }
