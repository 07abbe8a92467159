package sasl

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"
)

// Mechanism names, as they appear in AUTHENTICATE / AUTH commands and in
// Credentials.Mechanism.
const (
	MechPlain       = "PLAIN"       // RFC 4616
	MechLogin       = "LOGIN"       // draft-murchison-sasl-login
	MechXOAUTH2     = "XOAUTH2"     // Google's XOAUTH2 protocol
	MechOAuthBearer = "OAUTHBEARER" // RFC 7628
)

// The LOGIN mechanism's two server challenges, base64 encoded
// ("Username:" and "Password:", draft-murchison-sasl-login section 2.1).
// Frontends send them as continuation requests and decode each answer with
// DecodeResponse.
const (
	LoginUserPrompt     = "VXNlcm5hbWU6"
	LoginPasswordPrompt = "UGFzc3dvcmQ6"
)

// maxFieldLen caps every identity and password field. RFC 4616 section 2
// requires servers to accept up to 255 octets per PLAIN field; the proxy
// accepts exactly that much and no more, and applies the same cap to the
// user names of the other mechanisms (they are routing keys).
const maxFieldLen = 255

var (
	// ErrCanceled means the client canceled the exchange with "*"
	// (RFC 4954 section 4, RFC 9051 section 6.2.2).
	ErrCanceled = errors.New("sasl exchange canceled by client")
	// ErrMalformed means a client response does not follow its mechanism's
	// grammar. Errors wrapping it name the broken rule, never the content.
	ErrMalformed = errors.New("malformed sasl message")
)

// malformed returns an error wrapping ErrMalformed, prefixed with the
// operation and the broken rule.
func malformed(op, detail string) error {
	return fmt.Errorf("%s: %s: %w", op, detail, ErrMalformed)
}

// Credentials is one parsed client login. Which fields are set depends on
// Mechanism:
//
//	PLAIN       Authzid (may be empty), User (the authcid), Password
//	LOGIN       User, Password
//	XOAUTH2     User, Token
//	OAUTHBEARER User (the gs2 authzid, may be empty), Token
//
// String, GoString and LogValue never include Password or Token, but a
// struct that holds Credentials in an unexported field is printed by fmt
// field by field: keep Credentials out of values that are logged with %v.
type Credentials struct {
	Mechanism string
	// Authzid is the identity to act as (PLAIN); empty means the same as User.
	Authzid string
	// User is the authentication identity: the name the proxy routes on.
	User     string
	Password string
	// Token is the OAuth 2.0 bearer token (XOAUTH2, OAUTHBEARER), without
	// the "Bearer " scheme.
	Token string
}

// String describes c for logs: mechanism, user and authzid, quoted.
// It never includes the password or token.
func (c Credentials) String() string {
	var b strings.Builder
	b.WriteString("mechanism=")
	b.WriteString(c.Mechanism)
	fmt.Fprintf(&b, " user=%q", c.User)
	if c.Authzid != "" {
		fmt.Fprintf(&b, " authzid=%q", c.Authzid)
	}
	return b.String()
}

// GoString is String, so that %#v does not print the secrets either.
func (c Credentials) GoString() string {
	return "sasl.Credentials{" + c.String() + "}"
}

// LogValue implements slog.LogValuer without the password or token.
func (c Credentials) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("mechanism", c.Mechanism), slog.String("user", c.User)}
	if c.Authzid != "" {
		attrs = append(attrs, slog.String("authzid", c.Authzid))
	}
	return slog.GroupValue(attrs...)
}

// DecodeResponse decodes one base64 client response line (RFC 4648 section 4,
// with padding; CR LF, if present, is ignored):
//
//   - "*" means the client canceled: ErrCanceled (RFC 4954 section 4,
//     RFC 9051 section 6.2.2).
//   - "=" is an empty initial response (RFC 4954 section 4, RFC 4959
//     section 3 / RFC 9051 SASL-IR); an empty line is an empty continuation
//     response. Both decode to an empty, non-nil slice.
//   - anything else must be canonical base64 of the standard alphabet;
//     embedded spaces or line breaks are malformed.
func DecodeResponse(line string) ([]byte, error) {
	const op = "decode sasl response"
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	switch line {
	case "*":
		return nil, ErrCanceled
	case "=", "":
		return []byte{}, nil
	}
	// encoding/base64 skips CR and LF anywhere in its input; a response line
	// holds neither, so reject them (and every other non-alphabet byte) here.
	for i := 0; i < len(line); i++ {
		if !isBase64Char(line[i]) {
			return nil, malformed(op, "invalid base64 character")
		}
	}
	b, err := base64.StdEncoding.Strict().DecodeString(line)
	if err != nil {
		return nil, malformed(op, "invalid base64")
	}
	return b, nil
}

func isBase64Char(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '='
}

// checkIdentity validates a user name or authzid: non-empty unless
// allowEmpty, valid UTF-8, at most maxFieldLen octets, no NUL.
func checkIdentity(op, field, s string, allowEmpty bool) error {
	switch {
	case s == "" && !allowEmpty:
		return malformed(op, "empty "+field)
	case len(s) > maxFieldLen:
		return malformed(op, field+" longer than 255 octets")
	case !utf8.ValidString(s):
		return malformed(op, field+" is not valid UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		return malformed(op, "NUL inside "+field)
	}
	return nil
}

// checkPassword validates a password: non-empty, at most maxFieldLen octets,
// no NUL. It does not require UTF-8: RFC 4616 asks for it, but older clients
// send 8-bit passwords in a local charset, and the backend, not the proxy,
// is the judge of a password.
func checkPassword(op, s string) error {
	switch {
	case s == "":
		return malformed(op, "empty password")
	case len(s) > maxFieldLen:
		return malformed(op, "password longer than 255 octets")
	case strings.IndexByte(s, 0) >= 0:
		return malformed(op, "NUL inside password")
	}
	return nil
}

// RoutingUser is the mailbox the login is for, which is what a director
// routes by: the authorization identity when there is one (a Dovecot
// master-user login acts as that user, RFC 4616 section 2), else the
// authentication identity.
func (c Credentials) RoutingUser() string {
	if c.Authzid != "" {
		return c.Authzid
	}
	return c.User
}
