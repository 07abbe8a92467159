package imap

import (
	"slices"
	"strings"

	"github.com/maildirector/maildirector/protocols/internal/sasl"
)

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
