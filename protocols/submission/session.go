package submission

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/maildirector/maildirector/internal/mailwire"
	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
)

// state is where a submission session is before AUTH, or how it
// left that part.
type state int

const (
	stateGreeted state = iota // no EHLO yet, or forgotten after STARTTLS
	stateHelo                 // HELO: no service extensions (RFC 5321 section 4.1.1.1)
	stateEhlo                 // EHLO: AUTH and STARTTLS may follow
	stateRelayed              // logged in: the relay owns the session
	stateQuit                 // QUIT before AUTH
)

// session is one client before AUTH.
type session struct {
	f     *Frontend
	c     *proxy.Conn
	log   *slog.Logger
	state state
	helo  string // the client's EHLO name, replayed to the server

	errors   int // rejected commands
	failures int // failed AUTHs
}

// serve writes the greeting and reads commands until the session is handed
// to the relay, the client quits, or it fails.
func (s *session) serve(ctx context.Context) error {
	// RFC 5321 section 4.3.1: the greeting is 220 <domain>.
	if err := s.c.WriteString("220 " + s.f.hostname + " ESMTP maildirector\r\n"); err != nil {
		return fmt.Errorf("write greeting: %w", err)
	}
	for range maxCommands {
		s.c.SetPhase(proxy.PhasePreAuth)
		line, err := mailwire.ReadLine(s.c.Reader(), maxLine)
		if errors.Is(err, errLineTooLong) {
			return s.fail(errLineTooLongReply)
		}
		if err != nil {
			return fmt.Errorf("read command: %w", err)
		}
		if err := s.handle(ctx, line); err != nil {
			if err := s.fail(err); err != nil {
				return err
			}
		}
		if s.state == stateRelayed || s.state == stateQuit {
			return nil
		}
	}
	return s.fail(errTooManyErrors)
}

// handle parses one line and runs its command.
func (s *session) handle(ctx context.Context, line string) error {
	if strings.TrimRight(line, "\r\n") == "*" {
		// A cancel outside an AUTH exchange: clients (go-smtp among them)
		// send it after a 535 to close an exchange they think is still
		// open. Answer as to a cancel (RFC 4954 section 4) and go on, as
		// Dovecot does, instead of treating it as a foreign protocol.
		return errAuthCanceled
	}
	cmd, err := parseCommand(line)
	if err != nil {
		return errUnknownCommand
	}
	s.log.Debug("command", "verb", cmd.Verb)
	switch cmd.Verb {
	case "EHLO":
		return s.handleEhlo(cmd)
	case "HELO":
		return s.handleHelo(cmd)
	case "STARTTLS":
		return s.handleStartTLS(ctx, cmd)
	case "AUTH":
		return s.handleAuth(ctx, cmd)
	case "RSET":
		return s.handleRset(cmd)
	case "NOOP":
		return s.write("250 2.0.0 OK\r\n") // RFC 5321 section 4.1.1.9
	case "QUIT":
		return s.handleQuit()
	case "MAIL", "RCPT", "DATA", "BDAT", "VRFY", "EXPN", "ETRN":
		return errAuthRequired
	case "HELP":
		return errNotImplemented
	}
	return errUnknownCommand
}

// fail is the one place a negative reply is written. It returns nil when
// the session goes on, else the error that ends it.
func (s *session) fail(err error) error {
	var end *endSession
	if errors.As(err, &end) {
		return err
	}
	var e *replyError
	var rej *rejectedError
	var reply string
	closeConn := false
	switch {
	case errors.As(err, &e):
		reply, closeConn = e.Line(), e.Close
	case errors.As(err, &rej):
		reply = rej.reply.Raw()
	case errors.Is(err, proxy.ErrUnavailable):
		s.log.Warn("no server for login", "err", err)
		reply = errUnavailable.Line()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	default:
		s.log.Warn("login failed", "err", err)
		reply = errTempAuth.Line()
	}
	if werr := s.c.WriteString(reply); werr != nil {
		return fmt.Errorf("write reply: %w", werr)
	}
	if closeConn {
		return err
	}
	s.errors++
	var last *replyError
	switch {
	case s.failures >= s.f.maxLoginAttempts():
		last = errTooManyLogins
	case s.errors >= maxErrors:
		last = errTooManyErrors
	default:
		return nil
	}
	if werr := s.c.WriteString(last.Line()); werr != nil {
		return fmt.Errorf("write reply: %w", werr)
	}
	return fmt.Errorf("%w after %w", last, err)
}

func (s *session) write(reply string) error {
	if err := s.c.WriteString(reply); err != nil {
		return &endSession{fmt.Errorf("write reply: %w", err)}
	}
	return nil
}

// loginAllowed: AUTH needs TLS unless the frontend allows plaintext
// logins (RFC 4954 section 4, RFC 3207 section 4).
func (s *session) loginAllowed() bool {
	return s.c.IsTLS() || s.f.opts.PlaintextLogin
}

// heloName checks an EHLO/HELO argument: a domain or address literal
// (RFC 5321 section 4.1.1.1), printable ASCII without spaces.
func heloName(args string) (string, bool) {
	name := strings.TrimRight(args, " ")
	if name == "" || len(name) > 255 {
		return "", false
	}
	for i := 0; i < len(name); i++ {
		if name[i] <= ' ' || name[i] > '~' {
			return "", false
		}
	}
	return name, true
}

// handleEhlo answers EHLO (RFC 5321 section 4.1.1.1) with the extensions
// the proxy itself honours before AUTH and every Dovecot submission server
// honours after it. The client may EHLO again after AUTH; the server
// answers then, with its own list.
func (s *session) handleEhlo(cmd command) error {
	name, ok := heloName(cmd.Args)
	if !ok {
		return errSyntax
	}
	s.state, s.helo = stateEhlo, name
	lines := []string{s.f.hostname, "PIPELINING"} // RFC 2920
	switch size := s.f.opts.MaxMessageSize; {     // RFC 1870
	case size > 0:
		lines = append(lines, "SIZE "+strconv.FormatInt(size, 10))
	case size == 0:
		lines = append(lines, "SIZE")
	}
	lines = append(lines, "8BITMIME", "ENHANCEDSTATUSCODES") // RFC 6152, RFC 2034
	if s.c.CanStartTLS() {
		lines = append(lines, "STARTTLS") // RFC 3207
	}
	if s.loginAllowed() {
		lines = append(lines, "AUTH PLAIN LOGIN") // RFC 4954
	}
	var b strings.Builder
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		b.WriteString("250" + sep + l + "\r\n")
	}
	return s.write(b.String())
}

// handleHelo answers HELO (RFC 5321 section 4.1.1.1); AUTH needs EHLO.
func (s *session) handleHelo(cmd command) error {
	name, ok := heloName(cmd.Args)
	if !ok {
		return errSyntax
	}
	s.state, s.helo = stateHelo, name
	return s.write("250 " + s.f.hostname + "\r\n")
}

// handleStartTLS upgrades to TLS (RFC 3207 section 4). The engine discards
// anything pipelined after the command, and the session forgets the EHLO
// (section 4.2): the client must EHLO again.
func (s *session) handleStartTLS(ctx context.Context, cmd command) error {
	switch {
	case cmd.Args != "":
		return errSyntax
	case s.c.IsTLS():
		return errTLSActive
	case !s.c.CanStartTLS():
		return errTLSUnavailable
	}
	if err := s.write("220 2.0.0 Ready to start TLS\r\n"); err != nil {
		return err
	}
	if err := s.c.StartTLS(ctx); err != nil {
		return &endSession{err}
	}
	s.state, s.helo = stateGreeted, ""
	return nil
}

// handleRset answers RSET (RFC 5321 section 4.1.1.5): no transaction can
// exist before AUTH.
func (s *session) handleRset(cmd command) error {
	if cmd.Args != "" {
		return errSyntax
	}
	return s.write("250 2.0.0 OK\r\n")
}

// handleQuit ends the session (RFC 5321 section 4.1.1.10).
func (s *session) handleQuit() error {
	if err := s.write("221 2.0.0 Bye\r\n"); err != nil {
		return err
	}
	s.state = stateQuit
	return nil
}

// handleAuth runs AUTH PLAIN or LOGIN (RFC 4954 section 4), with or
// without an initial response, then logs in on a server.
func (s *session) handleAuth(ctx context.Context, cmd command) error {
	switch {
	case s.state != stateEhlo:
		return errEhloFirst
	case !s.loginAllowed():
		return errTLSRequired
	}
	mech, ir, hasIR := strings.Cut(cmd.Args, " ")
	var creds sasl.Credentials
	var err error
	switch strings.ToUpper(mech) {
	case "":
		return errSyntax
	case sasl.MechPlain:
		creds, err = s.authPlain(ir, hasIR)
	case sasl.MechLogin:
		creds, err = s.authLogin(ir, hasIR)
	default:
		return errMechanism
	}
	if err != nil {
		return err
	}
	return s.login(ctx, creds)
}

// authPlain reads the PLAIN message (RFC 4616) from the initial response
// or after an empty 334 challenge.
func (s *session) authPlain(ir string, hasIR bool) (sasl.Credentials, error) {
	var msg []byte
	var err error
	if hasIR {
		msg, err = s.decode(ir)
	} else {
		msg, err = s.challenge("")
	}
	if err != nil {
		return sasl.Credentials{}, err
	}
	creds, err := sasl.ParsePlain(msg)
	if err != nil {
		s.failures++
		return sasl.Credentials{}, errAuthFailed
	}
	return creds, nil
}

// authLogin runs the LOGIN mechanism: "334 Username:" (unless the user
// came as initial response), "334 Password:", base64 each.
func (s *session) authLogin(ir string, hasIR bool) (sasl.Credentials, error) {
	var user []byte
	var err error
	if hasIR {
		user, err = s.decode(ir)
	} else {
		user, err = s.challenge(sasl.LoginUserPrompt)
	}
	if err != nil {
		return sasl.Credentials{}, err
	}
	pass, err := s.challenge(sasl.LoginPasswordPrompt)
	if err != nil {
		return sasl.Credentials{}, err
	}
	creds, err := sasl.ParseLogin(user, pass)
	if err != nil {
		s.failures++
		return sasl.Credentials{}, errAuthFailed
	}
	return creds, nil
}

// challenge sends a 334 continuation (RFC 4954 section 4) and decodes the
// client's answer.
func (s *session) challenge(prompt string) ([]byte, error) {
	if err := s.write("334 " + prompt + "\r\n"); err != nil {
		return nil, err
	}
	s.c.SetPhase(proxy.PhasePreAuth)
	line, err := mailwire.ReadLine(s.c.Reader(), maxLine)
	if errors.Is(err, errLineTooLong) {
		return nil, errLineTooLongReply
	}
	if err != nil {
		return nil, &endSession{fmt.Errorf("read auth response: %w", err)}
	}
	return s.decode(mailwire.TrimEOL(line))
}

// decode decodes one base64 response; "*" cancels (RFC 4954 section 4).
func (s *session) decode(resp string) ([]byte, error) {
	msg, err := sasl.DecodeResponse(resp)
	switch {
	case errors.Is(err, sasl.ErrCanceled):
		s.failures++
		return nil, errAuthCanceled
	case err != nil:
		s.failures++
		return nil, errInvalidBase64
	}
	return msg, nil
}

// login sends the session to a server and, once the server answered 235
// (relayed to the client), to the relay.
func (s *session) login(ctx context.Context, creds sasl.Credentials) error {
	user := creds.RoutingUser() // a master-user login goes where its target user lives
	s.c.SetUser(user)
	s.log.Debug("login", "creds", creds)
	l := &serverLogin{creds: creds, helo: s.helo, client: s.c.RemoteAddr(), viaXClient: s.f.opts.XClient}
	srv, fromServer, err := s.c.Connect(ctx, s.f.opts.Picker, user, l.run)
	if err != nil {
		s.failures++
		return err
	}
	if err := s.c.Relay(srv, fromServer); err != nil { // Relay closes srv on error
		return &endSession{fmt.Errorf("hand off to relay: %w", err)}
	}
	s.state = stateRelayed
	return nil
}
