package proxy

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// deadlineFor is the deadline d from now; a negative d (a timeout set to
// none) is no deadline.
func deadlineFor(d time.Duration) time.Time {
	if d < 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// Relay hands the session to the relay and returns at once; the handler
// should then return. server is the conn from [Conn.Dial]; fromServer holds
// bytes already read from the server that the client has not seen yet (a
// pipelined reply read with the login answer). Bytes the client sent ahead,
// still in [Conn.Reader], go to the server first.
//
// Relay takes server whatever happens: on error it has closed server, and
// the client stays with the handler, which returns the error.
//
// On success the relay owns both connections: it copies bytes both ways,
// passes half-closes on, ends the session after the frontend's idle timeout
// without a byte either way, and closes both legs and writes the session's
// log line when it ends.
func (c *Conn) Relay(server net.Conn, fromServer []byte) (err error) {
	defer func() {
		if err != nil {
			server.Close()
		}
	}()
	sl, err := newLeg(server)
	if err != nil {
		return err
	}
	cl, err := newLeg(c.netConn())
	if err != nil {
		return err
	}
	var toServer []byte
	if n := c.r.Buffered(); n > 0 {
		b, _ := c.r.Peek(n)
		toServer = append([]byte(nil), b...)
	}
	c.sock.prefix = nil // consumed by the TLS handshake, or never set on plaintext
	if len(fromServer) > 0 {
		if _, err := c.Write(fromServer); err != nil {
			return fmt.Errorf("relay: write to client: %w", err)
		}
	}
	if len(toServer) > 0 {
		if _, err := server.Write(toServer); err != nil {
			return ServerFailure(fmt.Errorf("relay: write to server: %w", err))
		}
	}
	if err := c.handOff(); err != nil {
		return err
	}
	putReader(c.r) // the pre-login buffer is not needed any more
	c.r = nil
	c.srv.relay.add(c, cl, sl)
	return nil
}

// leg is one side of a relayed session.
type leg struct {
	conn net.Conn // what is read and written: *sockConn or *tls.Conn on one
	sock *sockConn
	tls  *tls.Conn
}

func newLeg(nc net.Conn) (leg, error) {
	switch c := nc.(type) {
	case *sockConn:
		return leg{conn: c, sock: c}, nil
	case *tls.Conn:
		if s, ok := c.NetConn().(*sockConn); ok {
			return leg{conn: c, sock: s, tls: c}, nil
		}
	}
	return leg{}, fmt.Errorf("relay: %T is not a connection from this engine", nc)
}

func (l leg) closeWrite() error {
	if l.tls != nil {
		l.tls.CloseWrite()
	}
	return l.sock.CloseWrite()
}

// readers recycles the pre-login client readers: every login would
// otherwise leave a 4 KiB buffer behind for the garbage collector.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readerSize) }}

func getReader(r io.Reader) *bufio.Reader {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	return br
}

func putReader(br *bufio.Reader) {
	br.Reset(nil)
	readers.Put(br)
}

// LoginReader returns a pooled buffered reader of a server leg for a
// frontend's login exchange (greeting, login, reply), as the client's
// pre-login reader is: without it every login leaves a 4 KiB buffer to
// the garbage collector, which a process holding many idle sessions pays
// in memory until the next collection. Give it back with
// [ReleaseLoginReader] once nothing read through it is referenced.
func LoginReader(r io.Reader) *bufio.Reader { return getReader(r) }

// ReleaseLoginReader gives back a reader from [LoginReader].
func ReleaseLoginReader(br *bufio.Reader) { putReader(br) }
