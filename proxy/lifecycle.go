package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"
)

// The life of a Conn, written here and nowhere else. Other files move a
// Conn through it with the methods below and never touch c.life.
//
//	connNew ──register──▶ connServing ──handOff──▶ connRelaying
//	                           │                        │
//	                           └──────── finish ────────┴──▶ connClosed
//
//   - new: accepted, not yet known to the Server. Once the Server's
//     accept loops have ended at shutdown, register refuses it and the
//     accept path closes the socket.
//   - serving: registered (Sessions, Kick and shutdown see it) and the
//     frontend's handler runs in serveConn, with a context stop cancels.
//   - relaying: the handler gave the session to the relay with
//     [Conn.Relay]; serveConn returns without ending it, and the relay
//     calls finish when both sides are done, on an error, or on stop.
//   - closed: finish ran, once: goodbye if due, client closed, lease and
//     slots released, the session's log line written.
//
// Apart from the state, ended records that the engine (shutdown, kick,
// idle timeout) asked the session to end and why; the first reason wins and
// is the one logged. A session that is ending is never handed off: stop and
// handOff both decide under c.mu, so either handOff sees ended and refuses,
// or stop sees connRelaying and asks the relay, which also looks at ended
// once it has registered the session (relay.add).
//
// A graceful shutdown ends each session at a clean point of its protocol
// rather than at once: a serving session is stopped with its goodbye, or,
// if its frontend drains itself (SetDrain, LMTP), asked to end after the
// transaction in progress; a relayed session that asked for it
// (EndAtPause: IMAP, POP3, submission) is ended by the relay at the first
// pause after a server reply; whatever is left at the end of the grace
// period is stopped.

// connState is where a Conn is in its life; it only moves forward.
type connState int

const (
	connNew      connState = iota // accepted, not registered
	connServing                   // registered; the handler runs
	connRelaying                  // handed to the relay, which ends it
	connClosed                    // finished and logged
)

// connLife is the part of a Conn that its life changes; guarded by Conn.mu.
type connLife struct {
	state   connState
	cancel  context.CancelFunc // ends the handler's context; nil once the handler returned
	ended   string             // why the engine ended the session; "" if it did not
	goodbye string             // what the client is told when the engine ends the session
	// drain is how the frontend ends a serving session itself when a
	// graceful shutdown starts (SetDrain); nil: the engine stops it.
	drain func()
	// atPause: once relayed, a graceful shutdown ends the session at a
	// pause after a server reply (EndAtPause), not at the end of the grace.
	atPause bool
	// draining: a graceful shutdown asked the frontend to end the session
	// itself (SetDrain): the deadlines its handler sets stand until a stop.
	draining bool
}

// goodbyeTimeout bounds writing the goodbye: a client that does not read
// must not hold up the end of its session.
const goodbyeTimeout = time.Second

// register makes c a live session of its Server and returns the handler's
// context. It reports false when the Server is sealed (stopping, its
// accept loops ended); c then stays new and the caller closes the socket.
func (c *Conn) register() (context.Context, bool) {
	ctx, cancel := context.WithCancel(context.Background())
	c.life.cancel = cancel // c is not visible to stop yet: no lock needed
	c.life.state = connServing
	if !c.srv.addConn(c) {
		cancel()
		return nil, false
	}
	c.fe.stats().SessionStarted()
	return ctx, true
}

// handlerReturned is serveConn's step once the handler has returned: it
// cancels the handler's context (a relayed session keeps none) and reports
// whether the relay owns c now, in which case the relay finishes it.
func (c *Conn) handlerReturned() (relayed bool) {
	c.mu.Lock()
	cancel := c.life.cancel
	c.life.cancel = nil
	relayed = c.life.state == connRelaying
	c.mu.Unlock()
	cancel()
	return relayed
}

// handOff moves a serving session to the relay, unless the engine is ending
// it: then the error says why and the session stays with its handler.
func (c *Conn) handOff() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.life.ended != "" {
		return fmt.Errorf("relay: session is ending (%s)", c.life.ended)
	}
	c.life.state = connRelaying
	return nil
}

// stop asks the session to end now for reason (shutdown, kick): a serving
// session's pending client read fails and its context is cancelled; a
// relayed session is ended by the relay. A finished session is left alone.
func (c *Conn) stop(reason string) {
	c.mu.Lock()
	if c.life.state == connClosed {
		c.mu.Unlock()
		return
	}
	if c.life.ended == "" {
		c.life.ended = reason
	}
	c.life.draining = false
	state, cancel := c.life.state, c.life.cancel
	c.mu.Unlock()
	if state == connRelaying {
		c.srv.relay.stop(c, reason)
		return
	}
	if cancel != nil {
		cancel()
	}
	c.sock.SetReadDeadline(time.Now())
}

// beginShutdown starts the graceful end of a serving session (Shutdown):
// the reason is recorded, so that a session still logging in is never
// handed to the relay and its goodbye is said when its handler returns;
// then a frontend that drains itself (SetDrain) is asked to, and any
// other session is stopped as by stop. With letLogin (Handover), a
// session without a drain function is left alone to finish its login; the
// relay then ends it at a pause. A relayed or finished session is left to
// the relay and the shutdown's pause and grace handling.
func (c *Conn) beginShutdown(letLogin bool) {
	c.mu.Lock()
	if c.life.state != connServing || c.life.ended != "" {
		c.mu.Unlock()
		return
	}
	drain, cancel := c.life.drain, c.life.cancel
	if drain == nil && letLogin {
		c.mu.Unlock()
		return
	}
	c.life.ended = EndShutdown
	c.life.drain = nil // asked once
	c.life.draining = drain != nil
	c.mu.Unlock()
	if drain != nil {
		drain()
		return
	}
	if cancel != nil {
		cancel()
	}
	c.sock.SetReadDeadline(time.Now())
}

// SetDrain registers how the frontend ends its session itself when a
// graceful shutdown starts ([Server.Shutdown], [Server.Handover]): drain is
// called once, from the shutdown's goroutine, and must not block; the
// handler then returns at its next clean point (LMTP: once the transaction
// in progress is answered) and the engine says the goodbye. Without it, a
// session that has not been handed to the relay is stopped at once. A
// session still open at the end of the grace period is stopped either way.
func (c *Conn) SetDrain(drain func()) {
	c.mu.Lock()
	c.life.drain = drain
	c.mu.Unlock()
}

// EndAtPause asks the engine to end the session, once relayed, at the
// first pause after a server reply when a graceful shutdown starts, with
// the goodbye (IMAP "* BYE", POP3 "-ERR", submission "421"), rather than
// at the end of the grace period: the client is then between commands,
// not in the middle of a reply, and reconnects. Without it a relayed
// session runs until it ends or the grace period does (the tcp frontend:
// the engine cannot tell where its protocol pauses).
func (c *Conn) EndAtPause() {
	c.mu.Lock()
	c.life.atPause = true
	c.mu.Unlock()
}

// endsAtPause reports whether EndAtPause was asked for.
func (c *Conn) endsAtPause() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.life.atPause
}

// stopping reports whether the engine is ending the session now (stop, or
// a shutdown of a session without a drain function), as opposed to not at
// all or after its work in flight (SetDrain): then every deadline a
// handler sets is the present.
func (c *Conn) stopping() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.life.ended != "" && !c.life.draining
}

// markEnding records that the engine ends the session for reason; "" (a
// peer or an error ended it) records nothing. The first reason wins.
func (c *Conn) markEnding(reason string) {
	c.mu.Lock()
	if reason != "" && c.life.ended == "" {
		c.life.ended = reason
	}
	c.mu.Unlock()
}

// endingReason is why the engine is ending the session, or "" if it is not.
func (c *Conn) endingReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.life.ended
}

// relayingLocked reports whether the relay owns the session; c.mu is held.
func (c *Conn) relayingLocked() bool { return c.life.state == connRelaying }

// relaying reports whether the relay owns the session.
func (c *Conn) relaying() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.relayingLocked()
}

// SetGoodbye sets what the client is told when the engine ends the session
// (shutdown, kick): IMAP "* BYE ...\r\n", SMTP "421 ...\r\n".
func (c *Conn) SetGoodbye(msg string) {
	c.mu.Lock()
	c.life.goodbye = msg
	c.mu.Unlock()
}

// sayGoodbye writes the goodbye to the client through w when reason says
// the engine ended the session and the frontend set one; best effort, within
// goodbyeTimeout where w has a deadline. This is the only place a goodbye
// is written; the caller picks w for the stage the session is in (the
// client conn, the relay's client leg, or its raw socket) and makes sure
// nothing else is writing to the client.
func (c *Conn) sayGoodbye(reason string, w io.Writer) {
	if reason == "" {
		return
	}
	c.mu.Lock()
	msg := c.life.goodbye
	c.mu.Unlock()
	if msg == "" {
		return
	}
	if d, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		d.SetWriteDeadline(time.Now().Add(goodbyeTimeout))
	}
	io.WriteString(w, msg)
}

// finish ends the session once: the goodbye (for a serving session the
// engine ended; the relay says its own), the client closed, the lease and
// the maxconn slots released, and the session's log line written. serveConn
// calls it for a serving session, the relay for a relayed one.
func (c *Conn) finish(err error) {
	c.mu.Lock()
	if c.life.state == connClosed {
		c.mu.Unlock()
		return
	}
	relayed := c.life.state == connRelaying
	c.life.state = connClosed
	lease, ended := c.lease, c.life.ended
	c.mu.Unlock()

	if !relayed {
		c.sayGoodbye(ended, c.netConn())
	}
	info, end := c.Info(), endReason(err, ended)
	// A session that ends on a protocol error or a refusal while the
	// client's input waits unread lingers (sockconn_linux.go), after its
	// lease, slots and per-client count are given back: a client that
	// keeps writing to a refusal holds nothing but its socket.
	linger := !relayed && (end == EndError || end == EndRefused) && c.sock.pendingInput()
	if !linger {
		c.netConn().Close()
	}
	if c.r != nil && !relayed {
		putReader(c.r)
		c.r = nil
	}
	if lease != nil {
		lease.Release()
	}
	if c.admitted {
		c.fe.guard.leave(c.remote.Addr())
	}
	c.srv.removeConn(c)
	c.slots.release()
	c.fe.stats().SessionEnded(info, end)
	c.logSession(info, end, errText(err, ended, end))
	if linger {
		c.lingerClose()
	}
}

// lingering bounds the sockets that linger at once, process-wide: past it
// a socket closes at once (and may send RST), so that a flood of clients
// that write to a refusal cannot pile up descriptors.
var lingering = make(chan struct{}, 256)

// lingerClose closes the client's socket after a lingering read (see
// sockConn.lingerClose), for at most lingerTimeout. On TLS the close_notify
// alert goes first (RFC 8446 section 6.1): after the TCP FIN it could not
// be sent, and the client would see the end of the stream without it.
func (c *Conn) lingerClose() {
	defer c.netConn().Close()
	select {
	case lingering <- struct{}{}:
		defer func() { <-lingering }()
	default:
		return
	}
	if c.tlsConn != nil {
		c.tlsConn.SetWriteDeadline(time.Now().Add(goodbyeTimeout))
		c.tlsConn.CloseWrite()
	}
	c.sock.lingerClose()
}

// logSession writes the session's one Info line. Its keys are stable
// (README "Logs"): the logger's conn, frontend, proto and remote, then
// via_proxy (only when remote came from a PROXY header), tls, tls_cipher,
// user, backend, server, bytes_in, bytes_out, connect, login, duration, end, and err
// when an error ended the session.
func (c *Conn) logSession(info Info, reason, errText string) {
	level := slog.LevelInfo
	if info.BytesIn == 0 && info.User == "" {
		// The client sent nothing: a port scan, or an upstream balancer's
		// TCP check. Logged at debug, as HAProxy's "option dontlognull".
		level = slog.LevelDebug
	}
	if !c.srv.log.Enabled(context.Background(), level) {
		return // nothing to build: the logger and its attributes cost per session
	}
	attrs := make([]any, 0, 32)
	if c.proxied {
		attrs = append(attrs, "via_proxy", true)
	}
	tlsVersion, tlsCipher := info.TLSVersion, info.TLSCipher
	if tlsVersion == "" {
		tlsVersion, tlsCipher = "none", "none"
	}
	attrs = append(attrs,
		"tls", tlsVersion, "tls_cipher", tlsCipher,
		"user", info.User, "backend", info.Backend, "server", info.Server,
		"bytes_in", info.BytesIn, "bytes_out", info.BytesOut,
		"connect", info.Connect.Round(time.Microsecond), "login", info.Login.Round(time.Microsecond),
		"duration", info.Duration.Round(time.Millisecond),
		"end", reason,
	)
	if errText != "" {
		attrs = append(attrs, "err", errText)
	}
	c.Logger().Log(context.Background(), level, "session", attrs...)
}

// End reasons: how a session ended, the end of its log line and the label
// the statistics count it under. The set is bounded; [endReason] maps every
// end to one of them.
const (
	// EndDone: the frontend ended the session cleanly, without a relay:
	// the client said LOGOUT or QUIT before logging in, or LMTP QUIT.
	EndDone = "done"
	// EndClientClosed: the client closed first (a relayed session: its EOF
	// came before the server's), or its connection failed (a reset, a
	// message cut short).
	EndClientClosed = "client closed"
	// EndServerClosed: the server closed first, or its connection failed.
	// A relayed session the client ended with LOGOUT or QUIT ends here when
	// the server closed before the client did: the relay does not read the
	// protocol, it sees which side closed first.
	EndServerClosed = "server closed"
	// EndIdleTimeout: nothing moved either way for the frontend's idle
	// timeout, or a peer took nothing for that long.
	EndIdleTimeout = "idle timeout"
	// EndKicked: [Server.Kick] ended it.
	EndKicked = "kicked"
	// EndServerDown: its server was marked down and on_marked_down ended
	// the server's sessions ([Server.Kick] with this reason).
	EndServerDown = "server down"
	// EndShutdown: the process is stopping ([Server.Shutdown], [Server.Close]).
	EndShutdown = "shutdown"
	// EndTimeout: the client did not finish a phase before its deadline
	// (pre-login, TLS handshake, an LMTP command or its data).
	EndTimeout = "timeout"
	// EndRefused: a per-client limit refused the connection before the
	// handler ran ([Limits]).
	EndRefused = "refused"
	// EndError: anything else; the line's err says what.
	EndError = "error"
)

// endReason classifies how a session ended: ended is the engine's reason
// ("" when it did not end it), err what the handler or the relay ended
// with. The result is one of the End constants.
func endReason(err error, ended string) string {
	if ended != "" {
		switch ended {
		case EndIdleTimeout, EndKicked, EndServerDown, EndShutdown, EndRefused:
			return ended
		}
		return EndKicked // another Kick reason: the set stays bounded
	}
	var pc *peerClosed
	switch {
	case err == nil:
		return EndDone
	case errors.As(err, &pc):
		switch {
		case pc.err == nil || closedConn(pc.err):
			if pc.server {
				return EndServerClosed
			}
			return EndClientClosed
		case isTimeout(pc.err):
			return EndIdleTimeout // the relay's write deadline: a peer that took nothing
		}
	case errors.Is(err, errRefused):
		return EndRefused
	case errors.Is(err, ErrUnavailable):
		// No server could be reached (the tcp frontend ends on it): the
		// err says which failed and how.
	case errors.Is(err, ErrServerFailed):
		if closedConn(err) {
			return EndServerClosed
		}
	case closedConn(err):
		return EndClientClosed // a handler only reads the client itself
	case isTimeout(err):
		return EndTimeout
	}
	return EndError
}

// errText is the session line's err: the error that ended the session,
// unless its end says all there is: the engine ended it (ended), or a
// peer closed cleanly.
func errText(err error, ended, reason string) string {
	var pc *peerClosed
	switch {
	case err == nil, ended != "":
		return ""
	case reason != EndError && errors.As(err, &pc) && pc.err == nil:
		return ""
	case reason != EndError && errors.Is(err, io.EOF):
		return ""
	}
	return err.Error()
}

// peerClosed is what a relayed session ends with when a peer ended it:
// closed by both sides (EOF both ways; server says which side closed
// first, err is nil), or failed on one leg (server says which, err how).
type peerClosed struct {
	server bool
	err    error
}

func (e *peerClosed) Error() string {
	who := "client"
	if e.server {
		who = "server"
	}
	if e.err == nil {
		return who + " closed"
	}
	return who + ": " + e.err.Error()
}

func (e *peerClosed) Unwrap() error { return e.err }

// closedConn reports whether err says the peer closed the connection: an
// EOF (clean, or in the middle of something), a reset, a broken pipe.
func closedConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
