package imap

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"

	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
)

const (
	defaultGreeting         = "maildirector ready."
	defaultRetries          = 2
	defaultMaxLoginAttempts = 3
	// maxBadCommands ends a client after this many BAD replies before
	// login, as Dovecot's imap-login does.
	maxBadCommands = 10
	// maxCommands ends a client after this many commands before login, so
	// that a NOOP every minute cannot hold a connection slot forever.
	maxCommands = 100
	// goodbye is what the engine tells a client when it ends the session
	// (shutdown, kick): RFC 9051 section 7.1.5.
	goodbye = "* BYE Server shutting down.\r\n"
)

// Options configure a Frontend. The zero value of every field but Picker
// works.
type Options struct {
	// Picker chooses the server for a login. nil: every login is answered
	// NO [UNAVAILABLE].
	Picker proxy.Picker
	// Retries is how many other servers a login is tried on after a server
	// fails before answering it (HAProxy's retries with redispatch).
	// Zero means 2; negative means none: only the first server is tried.
	Retries int
	// Greeting is the text of the "* OK [CAPABILITY ...]" greeting.
	// Empty means "maildirector ready.".
	Greeting string
	// PlaintextLogin allows LOGIN and AUTHENTICATE on a connection that is
	// not TLS. false (the default, RFC 9051 section 6.2.3 and RFC 8314):
	// they are refused with NO [PRIVACYREQUIRED] until STARTTLS, the
	// capabilities say LOGINDISABLED and no AUTH= mechanism.
	PlaintextLogin bool
	// MaxLoginAttempts is how many logins may fail (the server said NO, no
	// server was available, the login was refused or canceled) before the
	// client is told BYE and disconnected. Zero or negative means 3.
	MaxLoginAttempts int
	// ServerCapabilities, if set, returns what the servers advertise before
	// login (learned by health checks). The harmless ones are merged into
	// the proxy's own CAPABILITY, so that clients see IDLE, ENABLE and the
	// like before logging in; STARTTLS, LOGINDISABLED, SASL-IR, LITERAL+/-,
	// IMAP4rev1 and AUTH= are the proxy's own business and are skipped,
	// except that AUTH=XOAUTH2 and AUTH=OAUTHBEARER, when the servers offer
	// them, make the proxy offer them too. nil: only the proxy's own.
	ServerCapabilities func() []string
	// Logger receives per-command detail at Debug level (never a password
	// or SASL payload). nil: the connection's own logger (conn, proto,
	// remote). The per-session line is the engine's.
	Logger *slog.Logger
}

func (o Options) retries() int {
	switch {
	case o.Retries < 0:
		return 0
	case o.Retries == 0:
		return defaultRetries
	}
	return o.Retries
}

func (o Options) greeting() string {
	if o.Greeting == "" {
		return defaultGreeting
	}
	return o.Greeting
}

func (o Options) maxLoginAttempts() int {
	if o.MaxLoginAttempts <= 0 {
		return defaultMaxLoginAttempts
	}
	return o.MaxLoginAttempts
}

// Frontend is the IMAP [proxy.Handler]. It is safe for concurrent use: each
// connection gets its own session.
type Frontend struct {
	opts Options
}

// New returns a Frontend for opts.
func New(opts Options) *Frontend {
	return &Frontend{opts: opts}
}

// ServeConn runs one client's pre-login session. The engine closes c after
// ServeConn returns, unless the login succeeded and c was handed to the
// relay. The error, if any, says why the session ended.
func (f *Frontend) ServeConn(ctx context.Context, c *proxy.Conn) error {
	c.SetGoodbye(goodbye)
	log := f.opts.Logger
	if log == nil {
		log = c.Logger()
	} else {
		log = log.With("conn", c.ID())
	}
	s := &session{f: f, c: c, ctx: ctx, log: log}
	return s.serve()
}

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
			if err := s.c.Relay(s.server, s.fromServer); err != nil {
				s.server.Close() // not handed over: still ours
				return err
			}
			return nil
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
	line, err := readLineLimit(r, limit, nil)
	if err != nil {
		if errors.Is(err, errLineTooLong) {
			return nil, err
		}
		return nil, s.readError(err)
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// readLineLimit reads up to and including the next LF from r and appends it
// to dst, failing with errLineTooLong past limit bytes (the terminator not
// counted). It holds at most limit plus one buffer of r in memory.
func readLineLimit(r *bufio.Reader, limit int, dst []byte) ([]byte, error) {
	start := len(dst)
	for {
		frag, err := r.ReadSlice('\n')
		if len(dst)-start+len(frag) > limit+2 {
			return nil, errLineTooLong
		}
		dst = append(dst, frag...)
		switch {
		case err == nil:
			return dst, nil
		case !errors.Is(err, bufio.ErrBufferFull):
			return nil, err
		}
	}
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

// handleCapability answers CAPABILITY (RFC 9051 section 6.1.1).
func (s *session) handleCapability(cmd command) error {
	if len(cmd.args) != 0 {
		return syntax("CAPABILITY takes no arguments")
	}
	return s.write("* CAPABILITY " + s.capabilities() + "\r\n" +
		cmd.tag + " OK Pre-login capabilities listed, post-login capabilities have more.\r\n")
}

// capabilities lists what the proxy offers before login on this connection.
func (s *session) capabilities() string {
	caps := []string{"IMAP4rev1", "SASL-IR", "ID", "LITERAL+"}
	if s.c.CanStartTLS() {
		caps = append(caps, "STARTTLS") // RFC 9051 section 6.2.1
	}
	var server []string
	if s.f.opts.ServerCapabilities != nil {
		server = s.f.opts.ServerCapabilities()
	}
	if s.loginAllowed() {
		caps = append(caps, "AUTH=PLAIN")
		for _, mech := range []string{sasl.MechXOAUTH2, sasl.MechOAuthBearer} {
			if hasCap(server, "AUTH="+mech) {
				caps = append(caps, "AUTH="+mech)
			}
		}
	} else {
		caps = append(caps, "LOGINDISABLED") // RFC 9051 section 6.2.3
	}
	for _, c := range server {
		if harmlessCap(c) && !hasCap(caps, c) {
			caps = append(caps, c)
		}
	}
	return strings.Join(caps, " ")
}

// harmlessCap reports whether a server capability may be advertised by the
// proxy as is: a well-formed atom that is not about the pre-login dialogue,
// which the proxy runs itself.
func harmlessCap(c string) bool {
	if c == "" || len(c) > 64 {
		return false
	}
	for i := 0; i < len(c); i++ {
		if !isAtomChar(c[i]) {
			return false
		}
	}
	u := strings.ToUpper(c)
	switch u {
	case "STARTTLS", "LOGINDISABLED", "SASL-IR", "IMAP4REV1", "LITERAL+", "LITERAL-", "ID":
		return false
	}
	return !strings.HasPrefix(u, "AUTH=")
}

func hasCap(caps []string, c string) bool {
	return slices.ContainsFunc(caps, func(x string) bool { return strings.EqualFold(x, c) })
}

// loginAllowed reports whether LOGIN and AUTHENTICATE may run now.
func (s *session) loginAllowed() bool {
	return s.f.opts.PlaintextLogin || s.c.IsTLS()
}

// handleNoop answers NOOP (RFC 9051 section 6.1.2).
func (s *session) handleNoop(cmd command) error {
	if len(cmd.args) != 0 {
		return syntax("NOOP takes no arguments")
	}
	return s.write(cmd.tag + " OK NOOP completed.\r\n")
}

// handleLogout answers LOGOUT (RFC 9051 section 6.1.3): BYE, then OK.
func (s *session) handleLogout(cmd command) error {
	if len(cmd.args) != 0 {
		return syntax("LOGOUT takes no arguments")
	}
	s.state = stateLogout
	return s.write("* BYE Logging out\r\n" + cmd.tag + " OK Logout completed.\r\n")
}

// handleID answers ID (RFC 2971 section 3.1) with the proxy's name. The
// client's parameters are not forwarded.
func (s *session) handleID(cmd command) error {
	a := cmd.args
	nilArg := len(a) == 1 && a[0].kind == tokenAtom && strings.EqualFold(string(a[0].val), "NIL")
	list := len(a) >= 2 && a[0].kind == tokenListStart && a[len(a)-1].kind == tokenListEnd
	if !nilArg && !list {
		return syntax("ID expects NIL or a parameter list")
	}
	return s.write(`* ID ("name" "maildirector")` + "\r\n" + cmd.tag + " OK ID completed.\r\n")
}

// handleStartTLS answers STARTTLS (RFC 9051 section 6.2.1): OK, then the
// handshake. The engine drops whatever the client pipelined after the
// command; the client must ask for CAPABILITY again.
func (s *session) handleStartTLS(cmd command) error {
	switch {
	case len(cmd.args) != 0:
		return syntax("STARTTLS takes no arguments")
	case s.c.IsTLS():
		return errTLSActive
	case !s.c.CanStartTLS():
		return errNoTLS
	}
	if err := s.write(cmd.tag + " OK Begin TLS negotiation now.\r\n"); err != nil {
		return err
	}
	if err := s.c.StartTLS(s.ctx); err != nil {
		return &connError{fmt.Errorf("starttls: %w", err)}
	}
	return nil
}

// handleLogin runs LOGIN (RFC 9051 section 6.2.3): userid and password are
// astrings (atom, quoted or literal).
func (s *session) handleLogin(cmd command) error {
	if len(cmd.args) != 2 || !cmd.args[0].isString() || !cmd.args[1].isString() {
		return syntax("LOGIN expects a user name and a password")
	}
	if !s.loginAllowed() {
		return errPrivacyRequired
	}
	creds, err := sasl.ParseLogin(cmd.args[0].val, cmd.args[1].val)
	if err != nil {
		s.log.Debug("imap login malformed", "err", err)
		return errAuthFailed
	}
	return s.login(cmd.tag, loginRequest{creds: creds})
}

// handleAuthenticate runs AUTHENTICATE (RFC 9051 section 6.2.2) for PLAIN,
// and XOAUTH2 / OAUTHBEARER when the servers offer them. The initial
// response comes with the command (SASL-IR, RFC 4959) or after an empty
// continuation request.
func (s *session) handleAuthenticate(cmd command) error {
	a := cmd.args
	if len(a) < 1 || len(a) > 2 || a[0].kind != tokenAtom || len(a) == 2 && a[1].kind != tokenAtom {
		return syntax("AUTHENTICATE expects a mechanism and an optional initial response")
	}
	mech := strings.ToUpper(string(a[0].val))
	if !s.offersMechanism(mech) {
		return errMechanism
	}
	if !s.loginAllowed() {
		return errPrivacyRequired
	}
	resp := ""
	if len(a) == 2 {
		resp = string(a[1].val)
	}
	if resp == "" || resp == "=" {
		// No initial response, or an empty one ("=", RFC 4959 section 3):
		// ask for it with an empty challenge.
		if err := s.write("+ \r\n"); err != nil {
			return err
		}
		line, err := s.readLine(maxCommandLen)
		if err != nil {
			return err
		}
		resp = string(line)
	}
	msg, err := sasl.DecodeResponse(resp)
	switch {
	case errors.Is(err, sasl.ErrCanceled):
		return err
	case err != nil:
		return syntax("invalid base64 in SASL response")
	}
	var creds sasl.Credentials
	switch mech {
	case sasl.MechPlain:
		creds, err = sasl.ParsePlain(msg)
	case sasl.MechXOAUTH2:
		creds, err = sasl.ParseXOAUTH2(msg)
	case sasl.MechOAuthBearer:
		creds, err = sasl.ParseOAuthBearer(msg)
		if err == nil && creds.User == "" {
			err = errors.New("oauthbearer without a user name")
		}
	}
	if err != nil {
		s.log.Debug("imap authenticate malformed", "mechanism", mech, "err", err)
		return errAuthFailed
	}
	return s.login(cmd.tag, loginRequest{creds: creds, response: resp})
}

// offersMechanism reports whether AUTHENTICATE mech is accepted.
func (s *session) offersMechanism(mech string) bool {
	switch mech {
	case sasl.MechPlain:
		return true
	case sasl.MechXOAUTH2, sasl.MechOAuthBearer:
		return s.f.opts.ServerCapabilities != nil && hasCap(s.f.opts.ServerCapabilities(), "AUTH="+mech)
	}
	return false
}

// login picks a server for the request's user, replays the login there and,
// when the server says OK, moves the session to stateAuthenticated.
func (s *session) login(tag string, req loginRequest) error {
	user := req.creds.RoutingUser()
	s.c.SetUser(user)
	s.log.Debug("imap login", "creds", req.creds)
	if s.f.opts.Picker == nil {
		return fmt.Errorf("no picker configured: %w", proxy.ErrUnavailable)
	}
	server, fromServer, err := s.c.Connect(s.ctx, s.f.opts.Picker, user, s.f.opts.retries(),
		func(ctx context.Context, conn net.Conn, t proxy.Target) ([]byte, error) {
			return replayLogin(ctx, conn, tag, req)
		})
	if err != nil {
		return err
	}
	s.server, s.fromServer = server, fromServer
	s.state = stateAuthenticated
	return nil
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

var _ proxy.Handler = (*Frontend)(nil)
