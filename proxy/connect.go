package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"
)

// ErrUnavailable means no server could take the session: none is usable,
// or every one tried failed. Frontends render it as IMAP NO [UNAVAILABLE],
// POP3 -ERR [SYS/TEMP], SMTP 421 4.3.0 or LMTP 451 4.4.1.
var ErrUnavailable = errors.New("no server available")

// ErrHeld means an operator froze the user while the mailbox moves
// (`maildirector ctl freeze`): the login waited and was not released in
// time, or the LMTP recipient is refused for now. It wraps ErrUnavailable,
// so login frontends give their temporary failure; LMTP answers 451 4.2.0.
var ErrHeld = fmt.Errorf("%w: user frozen by an operator", ErrUnavailable)

// LoginFunc is a frontend's step on a freshly dialled server: read its
// greeting, replay the client's login, read the answer. It returns bytes it
// read past the answer (for the client), and:
//   - nil when the server accepted the login: the session goes to the relay;
//   - an error wrapping ErrServerFailed (see [ServerFailure]) when the
//     server failed before answering: the next server is tried;
//   - an error wrapping ErrServerBusy (see [ServerBusy]) when the server
//     refused the login for now: the next server is tried, and the server
//     is not counted as failing;
//   - any other error (a rejected password, a command the server refused
//     as malformed: whatever the client's input caused): the server is
//     fine, the connection to it is closed and the error returned to the
//     frontend. No other server is tried and no failure is counted.
type LoginFunc func(ctx context.Context, server net.Conn, t Target) (fromServer []byte, err error)

// Connect picks a server for user, dials it and runs login, trying up to
// the frontend's Retries other servers when a server fails (HAProxy's
// retries with redispatch). On success the lease is recorded on c and the
// server conn is returned for [Conn.Relay]. When no server could be
// reached the error wraps
// ErrUnavailable; so does a dial that failed for want of local resources
// ([ErrLocalResource]), which is tried on no other server and counted
// against none.
func (c *Conn) Connect(ctx context.Context, p Picker, user string, login LoginFunc) (net.Conn, []byte, error) {
	g := c.fe.guard
	if user != "" && g != nil && g.blocked(c.remote.Addr(), time.Now()) {
		c.countLogin(ctx, user, ErrBlocked, 0)
		return nil, nil, ErrBlocked
	}
	srv, fromServer, err := c.connect(ctx, p, user, login)
	var wait time.Duration
	if g != nil && user != "" && err != nil && loginResult(err) == LoginRejected {
		// Dovecot's auth_penalty: the answer to a failed login waits,
		// longer with each failure of this client or of this user.
		wait = g.failed(c.remote.Addr(), strings.ToLower(user), time.Now())
	}
	if c.countLogin(ctx, user, err, wait) == LoginOK && g != nil {
		g.succeeded(strings.ToLower(user))
	}
	sleepCtx(ctx, wait)
	return srv, fromServer, err
}

// loginResult classifies a login's outcome for the statistics.
func loginResult(err error) LoginResult {
	var temp Temporary
	switch {
	case err == nil:
		return LoginOK
	case errors.Is(err, ErrLocalResource), errors.Is(err, ErrHeld), errors.Is(err, ErrBlocked):
		return LoginTempFail
	case errors.Is(err, ErrUnavailable):
		return LoginNoServer
	case errors.As(err, &temp) && temp.Temporary():
		return LoginTempFail
	}
	return LoginRejected
}

// countLogin records a login's outcome in the frontend's statistics and
// logs a failed one: one line with the user, the client (the logger's
// remote), the result and the penalty its answer waits, never the
// password. A session without a login (tcp) and one the engine ended are
// not counted.
func (c *Conn) countLogin(ctx context.Context, user string, err error, penalty time.Duration) LoginResult {
	if user == "" || ctx.Err() != nil {
		return ""
	}
	result := loginResult(err)
	c.fe.stats().Login(result)
	if result != LoginOK {
		attrs := []any{"user", user, "result", string(result), "err", err.Error()}
		if penalty > 0 {
			attrs = append(attrs, "penalty", penalty)
		}
		c.Logger().Info("login failed", attrs...)
	}
	return result
}

func (c *Conn) connect(ctx context.Context, p Picker, user string, login LoginFunc) (net.Conn, []byte, error) {
	var tried []string
	var lastErr error
	for attempt := 0; attempt <= c.Retries(); attempt++ {
		lease, err := p.Pick(ctx, c.PickRequest(user, tried))
		if err != nil {
			if lastErr == nil {
				lastErr = err
			}
			break
		}
		t := lease.Target()
		tried = append(tried, t.Server)
		c.SetPhase(PhaseLogin)
		began := time.Now()
		srv, err := c.Dial(ctx, t)
		dialed := time.Now()
		var fromServer []byte
		if err == nil {
			fromServer, err = login(ctx, srv, t)
		}
		c.timeServer(dialed.Sub(began), time.Since(dialed))
		switch {
		case err == nil:
			lease.Established()
			c.SetLease(lease)
			return srv, fromServer, nil
		case errors.Is(err, ErrLocalResource):
			if srv != nil {
				srv.Close()
			}
			lease.Release()
			logLocalResource(c.Logger(), time.Now(), err)
			return nil, nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		case errors.Is(err, ErrServerFailed), errors.Is(err, ErrServerBusy):
			if srv != nil {
				srv.Close()
			}
			if ctx.Err() != nil {
				// The engine ended the session (shutdown, kick): not the
				// server's fault, so no passive-health failure.
				lease.Release()
				return nil, nil, ctx.Err()
			}
			if errors.Is(err, ErrServerBusy) {
				lease.Answered() // alive, only busy
				lease.Release()
			} else {
				lease.Failed(err)
			}
			lastErr = err
			c.Logger().Warn("server failed, trying the next one", "server", t.Server, "err", err)
		default:
			srv.Close()
			lease.Answered() // it answered: the refusal is the client's
			lease.Release()
			return nil, nil, err
		}
	}
	return nil, nil, fmt.Errorf("%w: %w", ErrUnavailable, lastErr)
}

// localResourceLog spaces the warnings about local resource limits. It is
// process-wide: descriptor limits are too.
var localResourceLog rateLimit

// logLocalResource logs err at now unless a warning was logged less than
// logEvery before; it reports whether it logged.
func logLocalResource(log *slog.Logger, now time.Time, err error) bool {
	if !localResourceLog.allow(now) {
		return false
	}
	log.Warn("cannot dial servers: local resources exhausted (not the servers' fault)", "err", err)
	return true
}
