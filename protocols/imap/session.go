package imap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/proxy"
)

// state is the RFC 9051 section 3 connection state, as far as the proxy
// sees it: it hands the connection over on entering Authenticated.
type state int

const (
	stateNotAuthenticated state = iota
	stateAuthenticated          // logged in on a server: hand over to the relay
	stateLogout                 // LOGOUT answered: close
)

// session is one client before login.
type session struct {
	f     *Frontend
	c     *proxy.Conn
	ctx   context.Context
	log   *slog.Logger
	state state

	buf        []byte // the command being read
	bad        int    // BAD replies so far
	loginFails int    // failed logins so far

	server     net.Conn // the logged-in server, once stateAuthenticated
	fromServer []byte   // server bytes the client has not seen yet
}

// serve is the session loop: greet, then read one command at a time and
// dispatch it, until the client logs in (relay), logs out, or is sent away.
func (s *session) serve() error {
	if err := s.write("* OK [CAPABILITY " + s.capabilities() + "] " + s.f.opts.greeting() + "\r\n"); err != nil {
		return err
	}
	for n := 0; ; n++ {
		if n == maxCommands {
			s.write("* BYE Too many commands before login.\r\n")
			return errTooManyCommands
		}
		cmd, err := s.readCommand()
		if err == nil {
			s.log.Debug("imap command", "tag", cmd.tag, "verb", cmd.verb)
			err = s.dispatch(cmd)
		}
		switch s.state {
		case stateAuthenticated:
			return s.c.Relay(s.server, s.fromServer) // takes the server leg, whatever happens
		case stateLogout:
			return nil
		}
		if err != nil {
			if end := s.respond(cmd.tag, err); end != nil {
				return end
			}
		}
	}
}

// dispatch runs the handler for cmd.verb (RFC 9051 section 6.1 and 6.2:
// the commands valid in the not-authenticated state).
func (s *session) dispatch(cmd command) error {
	switch cmd.verb {
	case "CAPABILITY":
		return s.handleCapability(cmd)
	case "NOOP":
		return s.handleNoop(cmd)
	case "LOGOUT":
		return s.handleLogout(cmd)
	case "ID":
		return s.handleID(cmd)
	case "STARTTLS":
		return s.handleStartTLS(cmd)
	case "LOGIN":
		return s.handleLogin(cmd)
	case "AUTHENTICATE":
		return s.handleAuthenticate(cmd)
	}
	return errNotPermitted
}

// respond tells the client about err, counts it, and returns non-nil when
// the session must end (the error for the session's log line).
func (s *session) respond(tag string, err error) error {
	var ce *connError
	if errors.As(err, &ce) {
		return ce.err
	}
	if ctxErr := s.ctx.Err(); ctxErr != nil {
		return ctxErr // shutdown or kick: the engine says goodbye
	}
	if tag == "" {
		tag = "*"
	}
	reply, oc, unexpected := render(tag, err)
	if unexpected != nil {
		s.log.Warn("imap login failed unexpectedly", "err", unexpected)
	} else {
		s.log.Debug("imap reply", "err", err)
	}
	end := error(nil)
	switch oc {
	case outcomeClose:
		end = err
	case outcomeBadCommand:
		s.bad++
		if s.bad >= maxBadCommands {
			reply += "* BYE Too many invalid IMAP commands.\r\n"
			end = errTooManyBad
		}
	case outcomeFailedLogin:
		s.loginFails++
		if s.loginFails >= s.f.opts.maxLoginAttempts() {
			reply += "* BYE Too many invalid authentication attempts.\r\n"
			end = errTooManyLogins
		}
	}
	if werr := s.write(reply); werr != nil {
		return werr
	}
	return end
}

// write sends s to the client. It renews the pre-login deadline first,
// which also covers the write: the read that just failed on the deadline
// must not make the BYE fail too.
func (s *session) write(str string) error {
	s.c.SetPhase(proxy.PhasePreAuth)
	if err := s.c.WriteString(str); err != nil {
		return &connError{fmt.Errorf("write: %w", err)}
	}
	return nil
}

// readCommand reads one command with its literals, within maxCommandLen,
// and parses it. For a synchronising literal it sends the continuation
// request (RFC 9051 section 4.3) only when the command is one the session
// will run; otherwise it answers BAD at once and the client, which waits for
// the continuation, sends no data (RFC 9051 section 7.5).
func (s *session) readCommand() (command, error) {
	if err := s.sniff(); err != nil {
		return command{}, err
	}
	line, err := s.readLine(maxCommandLen)
	if err != nil {
		return command{}, err
	}
	if len(line) == 0 {
		return command{}, errEmptyLine
	}
	tag, verb, _, ok := parseTagVerb(line)
	if !ok || !knownVerbs[verb] {
		return command{}, errUnknownCommand
	}
	cmd := command{tag: tag, verb: verb}
	s.buf = append(s.buf[:0], line...)
	for range maxCommandLen { // each turn consumes at least one byte of the cap
		size, nonSync, ok := literalAtEnd(line)
		if !ok {
			if brokenNonSyncLiteralAtEnd(line) {
				return cmd, errLiteralInvalid
			}
			break
		}
		if size > maxLiteralLen || len(s.buf)+size > maxCommandLen {
			return cmd, errLiteralTooBig
		}
		if !nonSync {
			if !preLoginVerbs[verb] {
				return cmd, errNotPermitted
			}
			if err := s.write("+ Ready for literal data\r\n"); err != nil {
				return cmd, err
			}
		}
		s.buf = append(s.buf, "\r\n"...)
		n := len(s.buf)
		s.buf = append(s.buf, make([]byte, size)...)
		s.c.SetPhase(proxy.PhasePreAuth)
		if _, err := io.ReadFull(s.c.Reader(), s.buf[n:]); err != nil {
			return cmd, s.readError(err)
		}
		if line, err = s.readLine(maxCommandLen - len(s.buf)); err != nil {
			return cmd, err
		}
		s.buf = append(s.buf, line...)
	}
	parsed, err := parseCommand(s.buf)
	if err != nil {
		return cmd, err
	}
	return parsed, nil
}

// sniff waits for the start of the next command and looks at what has
// arrived so far, so that a TLS ClientHello or binary noise without a line
// end is sent away now rather than at the deadline (peek, do not consume).
func (s *session) sniff() error {
	r := s.c.Reader()
	s.c.SetPhase(proxy.PhasePreAuth)
	if _, err := r.Peek(1); err != nil {
		return s.readError(err)
	}
	b, _ := r.Peek(r.Buffered())
	if looksLikeGarbage(b) {
		return errUnknownCommand
	}
	return nil
}

// readLine reads one line of at most limit bytes and returns it without its
// CRLF (a bare LF is accepted too).
func (s *session) readLine(limit int) ([]byte, error) {
	r := s.c.Reader()
	s.c.SetPhase(proxy.PhasePreAuth)
	line, err := mailwire.ReadLine(r, limit+len("\r\n"))
	if err != nil {
		if errors.Is(err, mailwire.ErrLineTooLong) {
			return nil, errLineTooLong
		}
		return nil, s.readError(err)
	}
	return []byte(mailwire.TrimEOL(line)), nil
}

// readError classifies a failed client read: the pre-login deadline is
// errInactive (the client is told BYE), anything else ends the session
// quietly.
func (s *session) readError(err error) error {
	if isTimeout(err) && s.ctx.Err() == nil {
		return fmt.Errorf("%w: %w", errInactive, err)
	}
	return &connError{fmt.Errorf("read: %w", err)}
}

// knownVerbs are the IMAP command names (RFC 9051 and the extensions
// Dovecot implements). A command line that names none of them is not IMAP.
var knownVerbs = map[string]bool{
	"CAPABILITY": true, "NOOP": true, "LOGOUT": true, "STARTTLS": true,
	"AUTHENTICATE": true, "LOGIN": true, "ID": true,
	"ENABLE": true, "SELECT": true, "EXAMINE": true, "CREATE": true, "DELETE": true,
	"RENAME": true, "SUBSCRIBE": true, "UNSUBSCRIBE": true, "LIST": true, "LSUB": true,
	"NAMESPACE": true, "STATUS": true, "APPEND": true, "IDLE": true, "CHECK": true,
	"CLOSE": true, "UNSELECT": true, "EXPUNGE": true, "SEARCH": true, "FETCH": true,
	"STORE": true, "COPY": true, "MOVE": true, "UID": true, "SORT": true, "THREAD": true,
	"GETQUOTA": true, "GETQUOTAROOT": true, "SETQUOTA": true, "GETACL": true,
	"SETACL": true, "DELETEACL": true, "LISTRIGHTS": true, "MYRIGHTS": true,
	"GETMETADATA": true, "SETMETADATA": true, "COMPRESS": true, "NOTIFY": true,
	"UNAUTHENTICATE": true, "REPLACE": true, "XLIST": true, "CANCELUPDATE": true,
	"ESEARCH": true, "CONTEXT": true, "UPDATE": true, "XAPPLEPUSHSERVICE": true,
}

// preLoginVerbs are the commands valid in the not-authenticated state
// (RFC 9051 sections 6.1 and 6.2, RFC 2971).
var preLoginVerbs = map[string]bool{
	"CAPABILITY": true, "NOOP": true, "LOGOUT": true, "STARTTLS": true,
	"AUTHENTICATE": true, "LOGIN": true, "ID": true,
}
