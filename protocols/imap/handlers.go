package imap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
)

// handleCapability answers CAPABILITY (RFC 9051 section 6.1.1).
func (s *session) handleCapability(cmd command) error {
	if len(cmd.args) != 0 {
		return syntax("CAPABILITY takes no arguments")
	}
	return s.write("* CAPABILITY " + s.capabilities() + "\r\n" +
		cmd.tag + " OK Pre-login capabilities listed, post-login capabilities have more.\r\n")
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

// login picks a server for the request's user, replays the login there and,
// when the server says OK, moves the session to stateAuthenticated.
func (s *session) login(tag string, req loginRequest) error {
	user := req.creds.RoutingUser()
	s.c.SetUser(user)
	s.log.Debug("imap login", "creds", req.creds)
	if s.f.opts.Picker == nil {
		return fmt.Errorf("no picker configured: %w", proxy.ErrUnavailable)
	}
	if s.f.opts.ForwardID {
		req.forward = &forwarded{Session: s.c.SessionID(), Remote: s.c.RemoteAddr(), Local: s.c.LocalAddr()}
	}
	server, fromServer, err := s.c.Connect(s.ctx, s.f.opts.Picker, user,
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
