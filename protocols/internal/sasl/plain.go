package sasl

import (
	"bytes"
	"encoding/base64"
)

// ParsePlain parses a PLAIN message (RFC 4616 section 2):
//
//	message = [authzid] UTF8NUL authcid UTF8NUL passwd
//
// The authcid becomes Credentials.User. authcid and passwd must not be empty;
// no field may hold a NUL (so the message has exactly two) or exceed 255
// octets; authzid and authcid must be valid UTF-8 (see checkPassword for why
// the password need not be).
func ParsePlain(msg []byte) (Credentials, error) {
	const op = "parse plain"
	fields := bytes.Split(msg, []byte{0})
	switch {
	case len(fields) < 3:
		return Credentials{}, malformed(op, "missing NUL separator")
	case len(fields) > 3:
		return Credentials{}, malformed(op, "NUL inside a field")
	}
	c := Credentials{
		Mechanism: MechPlain,
		Authzid:   string(fields[0]),
		User:      string(fields[1]),
		Password:  string(fields[2]),
	}
	if err := checkIdentity(op, "authzid", c.Authzid, true); err != nil {
		return Credentials{}, err
	}
	if err := checkIdentity(op, "authcid", c.User, false); err != nil {
		return Credentials{}, err
	}
	if err := checkPassword(op, c.Password); err != nil {
		return Credentials{}, err
	}
	return c, nil
}

// EncodePlain returns the base64 PLAIN message for authzid, user and
// password, ready to send to a backend as an AUTHENTICATE / AUTH initial
// response. It does not validate its arguments: pass values that came from
// ParsePlain or ParseLogin.
func EncodePlain(authzid, user, password string) string {
	msg := make([]byte, 0, len(authzid)+len(user)+len(password)+2)
	msg = append(msg, authzid...)
	msg = append(msg, 0)
	msg = append(msg, user...)
	msg = append(msg, 0)
	msg = append(msg, password...)
	return base64.StdEncoding.EncodeToString(msg)
}

// ParseLogin validates the two decoded answers of the LOGIN mechanism
// (the responses to LoginUserPrompt and LoginPasswordPrompt) with the same
// field rules as PLAIN. The result can be replayed to the backend with
// EncodePlain("", c.User, c.Password).
func ParseLogin(user, password []byte) (Credentials, error) {
	const op = "parse login"
	c := Credentials{Mechanism: MechLogin, User: string(user), Password: string(password)}
	if err := checkIdentity(op, "user", c.User, false); err != nil {
		return Credentials{}, err
	}
	if err := checkPassword(op, c.Password); err != nil {
		return Credentials{}, err
	}
	return c, nil
}
