package sasl

import (
	"encoding/base64"
	"strings"
	"unicode/utf8"
)

// kvsep separates the key/value pairs of XOAUTH2 and OAUTHBEARER messages
// (RFC 7628 section 3.1).
const kvsep = "\x01"

// ParseXOAUTH2 parses an XOAUTH2 initial client response (Google's XOAUTH2
// protocol; it predates RFC 7628 and has no RFC):
//
//	"user=" user ^A "auth=Bearer " token ^A ^A
//
// Both pairs are required, in any order; other well-formed pairs are ignored,
// a repeated key is malformed. The token must be an RFC 6750 section 2.1
// b64token; the auth scheme is matched case-insensitively (RFC 7235
// section 2.1).
func ParseXOAUTH2(msg []byte) (Credentials, error) {
	const op = "parse xoauth2"
	pairs, err := parsePairs(op, string(msg))
	if err != nil {
		return Credentials{}, err
	}
	user, ok := pairs["user"]
	if !ok {
		return Credentials{}, malformed(op, "missing user")
	}
	if err := checkIdentity(op, "user", user, false); err != nil {
		return Credentials{}, err
	}
	auth, ok := pairs["auth"]
	if !ok {
		return Credentials{}, malformed(op, "missing auth")
	}
	token, err := parseBearer(op, auth)
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{Mechanism: MechXOAUTH2, User: user, Token: token}, nil
}

// EncodeXOAUTH2 returns the base64 XOAUTH2 initial response for user and
// token, for replay to a backend. It does not validate its arguments.
func EncodeXOAUTH2(user, token string) string {
	return base64.StdEncoding.EncodeToString([]byte("user=" + user + kvsep + "auth=Bearer " + token + kvsep + kvsep))
}

// ParseOAuthBearer parses an OAUTHBEARER initial client response
// (RFC 7628 section 3.1):
//
//	client-resp = gs2-header kvsep *kvpair kvsep
//	gs2-header  = gs2-cb-flag "," [ "a=" saslname ] ","   ; RFC 5801 section 4
//	kvpair      = key "=" value kvsep
//
// for example "n,a=user@example.com,^Ahost=imap.example.com^Aport=993^Aauth=Bearer vF9dft4qmTc2^A^A".
// The gs2 authzid, with its =2C and =3D escapes decoded, becomes
// Credentials.User; it is optional in the grammar, so User may be empty and
// the frontend decides whether it can route without one. The auth pair is
// required and must hold "Bearer" and an RFC 6750 b64token; host, port and
// other pairs are checked against the grammar and dropped. The lone-kvsep
// response a client sends to acknowledge a server error is not an initial
// response and is malformed here.
func ParseOAuthBearer(msg []byte) (Credentials, error) {
	const op = "parse oauthbearer"
	s := string(msg)
	if s == kvsep {
		return Credentials{}, malformed(op, "error acknowledgement instead of an initial response")
	}
	header, rest, ok := strings.Cut(s, kvsep)
	if !ok {
		return Credentials{}, malformed(op, "missing kvsep after gs2 header")
	}
	user, err := parseGS2Header(op, header)
	if err != nil {
		return Credentials{}, err
	}
	if rest == kvsep {
		return Credentials{}, malformed(op, "missing auth")
	}
	pairs, err := parsePairs(op, rest)
	if err != nil {
		return Credentials{}, err
	}
	for k, v := range pairs {
		if !validKVValue(v) {
			return Credentials{}, malformed(op, "invalid character in value of "+k)
		}
	}
	auth, ok := pairs["auth"]
	if !ok {
		return Credentials{}, malformed(op, "missing auth")
	}
	token, err := parseBearer(op, auth)
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{Mechanism: MechOAuthBearer, User: user, Token: token}, nil
}

// saslNameEscaper escapes a saslname (RFC 5801 section 4).
var saslNameEscaper = strings.NewReplacer("=", "=3D", ",", "=2C")

// EncodeOAuthBearer returns the base64 OAUTHBEARER initial response for user
// (sent as the gs2 authzid, omitted when empty) and token, for replay to a
// backend. It sends no host or port pair; a frontend that wants the client's
// own pairs forwarded can replay the client's response line unchanged.
// It does not validate its arguments.
func EncodeOAuthBearer(user, token string) string {
	header := "n,,"
	if user != "" {
		header = "n,a=" + saslNameEscaper.Replace(user) + ","
	}
	return base64.StdEncoding.EncodeToString([]byte(header + kvsep + "auth=Bearer " + token + kvsep + kvsep))
}

// parseGS2Header parses an OAUTHBEARER gs2-header and returns the decoded
// authzid ("" when absent).
func parseGS2Header(op, header string) (string, error) {
	body, ok := strings.CutSuffix(header, ",")
	if !ok {
		return "", malformed(op, "gs2 header does not end with a comma")
	}
	cbFlag, authz, ok := strings.Cut(body, ",")
	if !ok || strings.Contains(authz, ",") {
		// Also catches RFC 5801's optional "F," non-standard flag, which
		// OAUTHBEARER does not use.
		return "", malformed(op, "gs2 header needs exactly a channel binding flag and an authzid")
	}
	switch {
	case cbFlag == "n", cbFlag == "y":
	case strings.HasPrefix(cbFlag, "p="):
		// RFC 7628 defines no channel binding type to use with "p=".
		return "", malformed(op, "channel binding not supported")
	default:
		return "", malformed(op, "invalid gs2 channel binding flag")
	}
	if authz == "" {
		return "", nil
	}
	name, ok := strings.CutPrefix(authz, "a=")
	if !ok {
		return "", malformed(op, "gs2 authzid does not start with a=")
	}
	user, err := decodeSASLName(op, name)
	if err != nil {
		return "", err
	}
	if err := checkIdentity(op, "authzid", user, false); err != nil {
		return "", err
	}
	return user, nil
}

// decodeSASLName decodes an RFC 5801 section 4 saslname:
//
//	saslname = 1*(UTF8-char-safe / "=2C" / "=3D")
//
// where UTF8-char-safe is any UTF-8 character but NUL, "=" and ",".
// ABNF literals are case-insensitive, so "=2c" and "=3d" are accepted too.
func decodeSASLName(op, s string) (string, error) {
	if s == "" {
		return "", malformed(op, "empty gs2 authzid")
	}
	if !utf8.ValidString(s) {
		return "", malformed(op, "gs2 authzid is not valid UTF-8")
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0, ',':
			return "", malformed(op, "invalid character in gs2 authzid")
		case '=':
			if i+2 >= len(s) {
				return "", malformed(op, "truncated escape in gs2 authzid")
			}
			switch strings.ToUpper(s[i+1 : i+3]) {
			case "2C":
				b.WriteByte(',')
			case "3D":
				b.WriteByte('=')
			default:
				return "", malformed(op, "invalid escape in gs2 authzid")
			}
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// parsePairs parses key/value pairs terminated by a final kvsep:
//
//	1*(key "=" value kvsep) kvsep
//
// Keys are 1*ALPHA (RFC 7628 section 3.1); a repeated key is malformed.
// Values are not checked here.
func parsePairs(op, s string) (map[string]string, error) {
	body, ok := strings.CutSuffix(s, kvsep+kvsep)
	if !ok {
		return nil, malformed(op, "missing terminating kvsep kvsep")
	}
	pairs := make(map[string]string)
	for kv := range strings.SplitSeq(body, kvsep) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, malformed(op, "key/value pair without =")
		}
		if !validKey(k) {
			return nil, malformed(op, "invalid key")
		}
		if _, dup := pairs[k]; dup {
			return nil, malformed(op, "repeated key "+k)
		}
		pairs[k] = v
	}
	return pairs, nil
}

// validKey reports whether k is 1*ALPHA.
func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// validKVValue reports whether v is *(VCHAR / SP / HTAB / CR / LF)
// (RFC 7628 section 3.1).
func validKVValue(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 0x20 && c <= 0x7e || c == '\t' || c == '\r' || c == '\n') {
			return false
		}
	}
	return true
}

// parseBearer parses an auth value, "Bearer" 1*SP b64token (RFC 6750
// section 2.1), and returns the token.
func parseBearer(op, v string) (string, error) {
	scheme, token, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", malformed(op, "auth is not a Bearer credential")
	}
	token = strings.TrimLeft(token, " ")
	if !validB64Token(token) {
		return "", malformed(op, "invalid bearer token")
	}
	return token, nil
}

// validB64Token reports whether t is an RFC 6750 section 2.1 b64token:
//
//	1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
func validB64Token(t string) bool {
	body := strings.TrimRight(t, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return false
		}
	}
	return true
}
