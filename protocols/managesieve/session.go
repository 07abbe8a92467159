package managesieve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
)

// state is where a session is in RFC 5804's dialogue, as far as the proxy
// sees it: it hands the connection over once a login succeeded.
type state int

const (
	stateNotAuthenticated state = iota // before a successful AUTHENTICATE (section 2.1)
	stateAuthenticated                 // logged in on a server: the relay takes over
	stateLogout                        // LOGOUT answered (section 2.3)
)

// command is one client command: its name in upper case and its arguments.
type command struct {
	verb string
	args []mailwire.SieveToken
}

// session is one client before login.
type session struct {
	f     *Frontend
	c     *proxy.Conn
	ctx   context.Context
	log   *slog.Logger
	state state

	bad        int // rejected commands so far
	loginFails int // failed logins so far

	server     net.Conn // the logged-in server, once stateAuthenticated
	fromServer []byte   // server bytes the client has not seen yet
}

// serve is the session loop: greet, then read one command at a time and
// dispatch it, until the client logs in (relay), logs out, or is sent away.
func (s *session) serve() error {
	// RFC 5804 section 1.7: the server greets with its capabilities and OK.
	if err := s.write(s.capabilities() + s.f.greeting); err != nil {
		return err
	}
	for n := 0; ; n++ {
		if n == maxCommands {
			s.write(ErrTooManyCommands.Line())
			return ErrTooManyCommands
		}
		cmd, err := s.readCommand()
		if err == nil {
			s.log.Debug("managesieve command", "verb", cmd.verb)
			err = s.dispatch(cmd)
		}
		switch s.state {
		case stateAuthenticated:
			return s.c.Relay(s.server, s.fromServer) // takes the server leg, whatever happens
		case stateLogout:
			return nil
		}
		if err != nil {
			if end := s.respond(err); end != nil {
				return end
			}
		}
	}
}

// dispatch runs the handler for cmd.verb: the commands RFC 5804 allows
// before login (sections 2.1 to 2.4 and 2.13).
func (s *session) dispatch(cmd command) error {
	switch cmd.verb {
	case "CAPABILITY":
		return s.handleCapability(cmd)
	case "NOOP":
		return s.handleNoop(cmd)
	case "LOGOUT":
		return s.handleLogout(cmd)
	case "STARTTLS":
		return s.handleStartTLS(cmd)
	case "AUTHENTICATE":
		return s.handleAuthenticate(cmd)
	}
	return ErrNotLoggedIn
}

// knownVerbs are the commands of RFC 5804 section 2. A line that names
// none of them is not ManageSieve.
var knownVerbs = map[string]bool{
	"AUTHENTICATE": true, "STARTTLS": true, "LOGOUT": true, "CAPABILITY": true, "NOOP": true,
	"HAVESPACE": true, "PUTSCRIPT": true, "LISTSCRIPTS": true, "SETACTIVE": true, "GETSCRIPT": true,
	"DELETESCRIPT": true, "RENAMESCRIPT": true, "CHECKSCRIPT": true, "UNAUTHENTICATE": true,
}

// maxVerb is the longest command name (UNAUTHENTICATE).
const maxVerb = len("UNAUTHENTICATE")

// respond tells the client about err, counts it, and returns non-nil when
// the session must end (the error for the session's log line).
func (s *session) respond(err error) error {
	var ce *connError
	if errors.As(err, &ce) {
		return ce.err
	}
	if ctxErr := s.ctx.Err(); ctxErr != nil {
		return ctxErr // shutdown or kick: the engine says goodbye
	}
	reply, e, unexpected := render(err)
	if unexpected != nil {
		s.log.Warn("managesieve login failed unexpectedly", "err", unexpected)
	} else {
		s.log.Debug("managesieve reply", "err", err)
	}
	var end error
	switch {
	case e.Bye:
		end = err
	case e.Login:
		s.loginFails++
		if s.loginFails >= s.f.opts.maxLoginAttempts() {
			reply += ErrTooManyLogins.Line()
			end = fmt.Errorf("%w (%d): %w", ErrTooManyLogins, s.loginFails, err)
		}
	default:
		s.bad++
		if s.bad >= maxBadCommands {
			reply += ErrTooManyCommands.Line()
			end = ErrTooManyCommands
		}
	}
	if werr := s.write(reply); werr != nil {
		return werr
	}
	return end
}

// write sends str to the client. It renews the pre-login deadline first,
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
// and parses it. A line that does not start with a command name of RFC
// 5804 is ErrUnknownCommand; a known command whose arguments do not parse
// is ErrSyntax.
func (s *session) readCommand() (command, error) {
	if err := s.sniff(); err != nil {
		return command{}, err
	}
	line, err := s.readLine()
	if err != nil {
		return command{}, err
	}
	word, _, _ := strings.Cut(line, " ")
	verb := strings.ToUpper(word)
	switch {
	case line == "":
		return command{}, ErrSyntax
	case !knownVerbs[verb]:
		return command{}, ErrUnknownCommand
	}
	toks, err := mailwire.ParseSieveLine(line)
	if err != nil {
		return command{verb: verb}, ErrSyntax
	}
	return command{verb: verb, args: toks[1:]}, nil
}

// sniff waits for the start of the next command and looks at what has
// arrived so far, so that a TLS ClientHello or binary noise without a line
// end is sent away now rather than at the deadline (peek, do not consume):
// a command starts with up to maxVerb letters, then a space or the line end.
func (s *session) sniff() error {
	r := s.c.Reader()
	s.c.SetPhase(proxy.PhasePreAuth)
	if _, err := r.Peek(1); err != nil {
		return s.readError(err)
	}
	b, _ := r.Peek(r.Buffered())
	i := 0
	for i < len(b) && i <= maxVerb && (b[i]|0x20 >= 'a' && b[i]|0x20 <= 'z') {
		i++
	}
	if i < len(b) && (i > maxVerb || b[i] != ' ' && b[i] != '\r' && b[i] != '\n') {
		return ErrUnknownCommand
	}
	return nil
}

// readLine reads one line with its literals (mailwire.ReadSieveLine) under
// the pre-login deadline.
func (s *session) readLine() (string, error) {
	s.c.SetPhase(proxy.PhasePreAuth)
	line, err := mailwire.ReadSieveLine(s.c.Reader(), maxCommandLen)
	switch {
	case errors.Is(err, mailwire.ErrLineTooLong):
		return "", ErrLineTooLong
	case err != nil:
		return "", s.readError(err)
	}
	return line, nil
}

// readError classifies a failed client read: the pre-login deadline is
// ErrInactive (the client is told BYE), anything else ends the session
// quietly.
func (s *session) readError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && s.ctx.Err() == nil {
		return fmt.Errorf("%w: %w", ErrInactive, err)
	}
	return &connError{fmt.Errorf("read: %w", err)}
}

// stringArgs returns the arguments as strings, ok false when one is not a
// string (RFC 5804 section 4: the commands before login take strings
// only).
func stringArgs(args []mailwire.SieveToken) ([]string, bool) {
	out := make([]string, len(args))
	for i, a := range args {
		if a.Kind != mailwire.SieveKindString {
			return nil, false
		}
		out[i] = a.Value
	}
	return out, true
}

// handleCapability answers CAPABILITY (RFC 5804 section 2.4).
func (s *session) handleCapability(cmd command) error {
	if len(cmd.args) != 0 {
		return ErrSyntax
	}
	return s.write(s.capabilities() + `OK "Capability completed."` + "\r\n")
}

// handleNoop answers NOOP (RFC 5804 section 2.13): with a string
// argument, OK carries it back in a TAG response code.
func (s *session) handleNoop(cmd command) error {
	args, ok := stringArgs(cmd.args)
	switch {
	case !ok || len(args) > 1:
		return ErrSyntax
	case len(args) == 1:
		return s.write(response("OK", "TAG "+mailwire.SieveString(args[0], false), "Done"))
	}
	return s.write(`OK "NOOP completed."` + "\r\n")
}

// handleLogout answers LOGOUT (RFC 5804 section 2.3: OK, then the server
// closes the connection).
func (s *session) handleLogout(cmd command) error {
	if len(cmd.args) != 0 {
		return ErrSyntax
	}
	s.state = stateLogout
	return s.write(`OK "Logout completed."` + "\r\n")
}

// handleStartTLS answers STARTTLS (RFC 5804 section 2.2): OK, the
// handshake, then the capabilities again and OK, which the client reads
// before its next command. The engine drops whatever the client pipelined
// after the command.
func (s *session) handleStartTLS(cmd command) error {
	switch {
	case len(cmd.args) != 0:
		return ErrSyntax
	case s.c.IsTLS():
		return ErrTLSActive
	case !s.c.CanStartTLS():
		return ErrTLSUnavailable
	}
	if err := s.write(`OK "Begin TLS negotiation now."` + "\r\n"); err != nil {
		return err
	}
	if err := s.c.StartTLS(s.ctx); err != nil {
		return &connError{fmt.Errorf("starttls: %w", err)}
	}
	return s.write(s.capabilities() + `OK "TLS negotiation successful."` + "\r\n")
}

// handleAuthenticate runs AUTHENTICATE (RFC 5804 section 2.1) for PLAIN,
// the one mechanism the proxy can replay: the initial response comes with
// the command, or as the client's string answer to an empty challenge.
func (s *session) handleAuthenticate(cmd command) error {
	args, ok := stringArgs(cmd.args)
	if !ok || len(args) < 1 || len(args) > 2 {
		return ErrSyntax
	}
	if !strings.EqualFold(args[0], sasl.MechPlain) {
		return ErrMechanism
	}
	if !s.loginAllowed() {
		return ErrEncryptNeeded
	}
	var resp string
	if len(args) == 2 {
		resp = args[1]
	} else {
		// Section 2.1: a server challenge is a string; PLAIN's is empty.
		if err := s.write("\"\"\r\n"); err != nil {
			return err
		}
		line, err := s.readLine()
		if err != nil {
			return err
		}
		toks, err := mailwire.ParseSieveLine(line)
		if err != nil || len(toks) != 1 || toks[0].Kind != mailwire.SieveKindString {
			return ErrSyntax
		}
		resp = toks[0].Value
	}
	msg, err := sasl.DecodeResponse(resp)
	switch {
	case errors.Is(err, sasl.ErrCanceled):
		// Section 2.1: "*" cancels, and the server answers NO.
		return ErrAuthCanceled
	case err != nil:
		return ErrInvalidBase64
	}
	creds, err := sasl.ParsePlain(msg)
	if err != nil {
		s.log.Debug("managesieve authenticate malformed", "err", err)
		return ErrAuthFailed
	}
	return s.login(creds)
}

// login picks a server for the user, replays the login there and, when the
// server says OK, moves the session to stateAuthenticated. The routing name
// is the login's, as IMAP's: a ManageSieve session lands on the server
// where the user's IMAP sessions and deliveries do.
func (s *session) login(creds sasl.Credentials) error {
	user := creds.RoutingUser() // a master-user login goes where its target user lives
	s.c.SetUser(user)
	s.log.Debug("managesieve login", "creds", creds)
	if s.f.opts.Picker == nil {
		return fmt.Errorf("no picker configured: %w", proxy.ErrUnavailable)
	}
	server, fromServer, err := s.c.Connect(s.ctx, s.f.opts.Picker, user, serverLogin(creds))
	if err != nil {
		return err
	}
	s.server, s.fromServer = server, fromServer
	s.state = stateAuthenticated
	return nil
}
