package pop3

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"

	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
)

// state is where a session is in RFC 1939's AUTHORIZATION state, or how it
// left it.
type state int

const (
	stateAuthorization state = iota // RFC 1939 section 4: waiting for a login
	stateUser                       // USER accepted, PASS expected (section 7)
	stateRelayed                    // logged in: the relay owns the session
	stateLogout                     // QUIT before login
)

// session is one client before login.
type session struct {
	f     *Frontend
	c     *proxy.Conn
	log   *slog.Logger
	state state
	user  string // from USER, until PASS

	errors   int // rejected commands
	failures int // failed logins
}

// serve writes the greeting and reads commands until the session is handed
// to the relay, the client quits, or it fails.
func (s *session) serve(ctx context.Context) error {
	if err := s.c.WriteString("+OK " + s.f.greeting + "\r\n"); err != nil {
		return fmt.Errorf("write greeting: %w", err)
	}
	for n := 0; n < maxCommands; n++ {
		s.c.SetPhase(proxy.PhasePreAuth)
		line, err := mailwire.ReadLine(s.c.Reader(), maxLine)
		if errors.Is(err, errLineTooLong) {
			return s.fail(ErrLineTooLong)
		}
		if err != nil {
			return fmt.Errorf("read command: %w", err)
		}
		if err := s.handle(ctx, line); err != nil {
			if err := s.fail(err); err != nil {
				return err
			}
		}
		if s.state == stateRelayed || s.state == stateLogout {
			return nil
		}
	}
	return s.fail(ErrTooManyErrors)
}

// handle parses one line and runs its command.
func (s *session) handle(ctx context.Context, line string) error {
	cmd, err := parseCommand(line)
	if err != nil {
		return ErrUnknownCommand
	}
	s.log.Debug("command", "verb", cmd.Verb)
	switch cmd.Verb {
	case "CAPA":
		return s.handleCapa()
	case "STLS":
		return s.handleStls(ctx)
	case "USER":
		return s.handleUser(cmd)
	case "PASS":
		return s.handlePass(ctx, cmd)
	case "AUTH":
		return s.handleAuth(ctx, cmd)
	case "QUIT":
		return s.handleQuit()
	case "STAT", "LIST", "RETR", "DELE", "NOOP", "RSET", "TOP", "UIDL", "LAST":
		return ErrNotLoggedIn
	}
	return ErrUnknownCommand
}

// fail is the one place a negative reply is written. It returns nil when
// the session goes on, else the error that ends it.
func (s *session) fail(err error) error {
	var end *endSession
	if errors.As(err, &end) {
		return err
	}
	var e *Error
	var rej *rejectedError
	line := ""
	switch {
	case errors.As(err, &e):
		line = e.Line()
	case errors.As(err, &rej):
		line = rej.reply
	case errors.Is(err, proxy.ErrUnavailable):
		s.log.Warn("no server for login", "err", err)
		e = ErrUnavailable
		line = e.Line()
	case isCanceled(err):
		return err
	default:
		s.log.Warn("login failed", "err", err)
		e = ErrInternal
		line = e.Line()
	}
	if werr := s.c.WriteString(line); werr != nil {
		return fmt.Errorf("write reply: %w", werr)
	}
	s.errors++
	switch {
	case e != nil && e.Close:
		return err
	case s.failures >= s.f.maxLoginAttempts():
		return fmt.Errorf("%w (%d): %w", errTooManyFailures, s.failures, err)
	case s.errors >= maxErrors:
		if werr := s.c.WriteString(ErrTooManyErrors.Line()); werr != nil {
			return fmt.Errorf("write reply: %w", werr)
		}
		return ErrTooManyErrors
	}
	return nil
}

func isCanceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// loginAllowed: plaintext logins need TLS unless the frontend allows them
// (RFC 2595 section 2.3).
func (s *session) loginAllowed() bool {
	return s.c.IsTLS() || s.f.opts.PlaintextLogin
}

func (s *session) write(reply string) error {
	if err := s.c.WriteString(reply); err != nil {
		return end(fmt.Errorf("write reply: %w", err))
	}
	return nil
}

// handleCapa lists the capabilities (RFC 2449 section 5) that hold now.
func (s *session) handleCapa() error {
	var b strings.Builder
	b.WriteString("+OK Capability list follows\r\n")
	for _, c := range s.capabilities() {
		b.WriteString(c)
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return s.write(b.String())
}

// harmless are the capabilities learned from servers that the frontend
// may advertise before login: they describe the TRANSACTION state the
// server provides after the relay takes over. STLS, USER and SASL belong to
// the frontend; IMPLEMENTATION would reveal the server's version.
var harmless = map[string]bool{
	"TOP": true, "UIDL": true, "EXPIRE": true, "LOGIN-DELAY": true, "UTF8": true,
}

// capabilities returns the CAPA lines, in the order Dovecot uses.
func (s *session) capabilities() []string {
	var caps []string
	seen := make(map[string]bool)
	add := func(c string) {
		key, _, _ := strings.Cut(c, " ")
		if !seen[key] {
			seen[key] = true
			caps = append(caps, c)
		}
	}
	var learned []string
	if s.f.opts.ServerCapabilities != nil {
		learned = s.f.opts.ServerCapabilities()
	}
	if len(learned) == 0 {
		learned = []string{"TOP", "UIDL"}
	}
	for _, c := range learned {
		key, _, _ := strings.Cut(c, " ")
		if harmless[strings.ToUpper(key)] && printable(c) && len(c) <= 80 {
			add(c)
		}
	}
	add("RESP-CODES")     // RFC 2449 section 6.4
	add("AUTH-RESP-CODE") // RFC 3206 section 4
	add("PIPELINING")     // RFC 2449 section 6.6
	if s.c.CanStartTLS() {
		add("STLS") // RFC 2595 section 4
	}
	if s.loginAllowed() {
		add("USER")       // RFC 2449 section 6.8
		add("SASL PLAIN") // RFC 2449 section 6.3, RFC 5034
	}
	return caps
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}

// handleStls upgrades to TLS (RFC 2595 section 4). The engine discards
// anything the client pipelined after STLS, and the session forgets a USER
// given before it.
func (s *session) handleStls(ctx context.Context) error {
	switch {
	case s.c.IsTLS():
		return ErrTLSActive
	case !s.c.CanStartTLS():
		return ErrTLSUnavailable
	}
	if err := s.write("+OK Begin TLS negotiation now.\r\n"); err != nil {
		return err
	}
	if err := s.c.StartTLS(ctx); err != nil {
		return end(err)
	}
	s.state, s.user = stateAuthorization, ""
	return nil
}

// handleUser records the user name (RFC 1939 section 7).
func (s *session) handleUser(cmd command) error {
	if !s.loginAllowed() {
		return ErrPlaintextDisallowed
	}
	name := strings.TrimRight(cmd.Args, " ")
	if name == "" || len(name) > 255 || !utf8.ValidString(name) {
		return ErrSyntax
	}
	s.state, s.user = stateUser, name
	return s.write("+OK\r\n")
}

// handlePass logs in with the USER name and this password (RFC 1939
// section 7). The password is the whole rest of the line: it may hold
// spaces.
func (s *session) handlePass(ctx context.Context, cmd command) error {
	if !s.loginAllowed() {
		return ErrPlaintextDisallowed
	}
	if s.state != stateUser {
		return ErrNoUsername
	}
	user := s.user
	s.state, s.user = stateAuthorization, ""
	creds, err := sasl.ParseLogin([]byte(user), []byte(cmd.Args))
	if err != nil {
		s.failures++
		return ErrAuthFailed
	}
	return s.login(ctx, creds)
}

// handleAuth runs AUTH (RFC 5034 section 4): PLAIN, with an initial
// response or after a "+ " continuation. AUTH without arguments lists the
// mechanisms, as Dovecot and the older RFC 1734 clients expect.
func (s *session) handleAuth(ctx context.Context, cmd command) error {
	if cmd.Args == "" {
		if s.loginAllowed() {
			return s.write("+OK\r\nPLAIN\r\n.\r\n")
		}
		return s.write("+OK\r\n.\r\n")
	}
	mech, ir, hasIR := strings.Cut(cmd.Args, " ")
	if !strings.EqualFold(mech, sasl.MechPlain) {
		return ErrUnsupportedMechanism
	}
	if !s.loginAllowed() {
		return ErrPlaintextDisallowed
	}
	if !hasIR {
		if err := s.write("+ \r\n"); err != nil {
			return err
		}
		s.c.SetPhase(proxy.PhasePreAuth)
		line, err := mailwire.ReadLine(s.c.Reader(), maxLine)
		if errors.Is(err, errLineTooLong) {
			return ErrLineTooLong
		}
		if err != nil {
			return end(fmt.Errorf("read auth response: %w", err))
		}
		ir = mailwire.TrimEOL(line)
	}
	msg, err := sasl.DecodeResponse(ir)
	switch {
	case errors.Is(err, sasl.ErrCanceled):
		s.failures++
		return ErrAuthCanceled
	case err != nil:
		s.failures++
		return ErrInvalidBase64
	}
	creds, err := sasl.ParsePlain(msg)
	if err != nil {
		s.failures++
		return ErrAuthFailed
	}
	return s.login(ctx, creds)
}

// login sends the session to a server and, once the server said +OK
// (relayed to the client with whatever followed it), to the relay.
func (s *session) login(ctx context.Context, creds sasl.Credentials) error {
	user := creds.RoutingUser() // a master-user login goes where its target user lives
	s.c.SetUser(user)
	s.log.Debug("login", "creds", creds)
	var fwd *forwarded
	if s.f.opts.ForwardID {
		fwd = &forwarded{Session: s.c.SessionID(), Remote: s.c.RemoteAddr()}
	}
	srv, fromServer, err := s.c.Connect(ctx, s.f.opts.Picker, user, serverLogin(creds, fwd))
	if err != nil {
		s.failures++
		return err
	}
	if err := s.c.Relay(srv, fromServer); err != nil { // Relay closes srv on error
		return end(fmt.Errorf("hand off to relay: %w", err))
	}
	s.state = stateRelayed
	return nil
}

// handleQuit ends the session (RFC 1939 section 6: no UPDATE state before
// login).
func (s *session) handleQuit() error {
	if err := s.write("+OK Logging out.\r\n"); err != nil {
		return err
	}
	s.state = stateLogout
	return nil
}
