// Package sasl parses the SASL client responses maildirector's frontends see
// before login (PLAIN, LOGIN, XOAUTH2, OAUTHBEARER) and re-encodes a login
// for replay to the backend. It owns only the message formats: the
// AUTHENTICATE / AUTH command syntax, prompts and replies belong to the
// frontends (protocols/imap, protocols/pop3, protocols/submission).
//
// The proxy does not authenticate anyone: it extracts the user name to pick a
// backend, then replays the same credentials to that backend, which decides.
//
// The package imports only the standard library, as the architecture requires
// of protocols/internal/sasl. github.com/emersion/go-sasl was considered and
// not used: it is a callback-driven server state machine (Next(response)
// returning challenges), while the proxy needs to parse one initial response
// and re-encode it for the backend.
//
// Credentials carry passwords and tokens. Their String, GoString and
// LogValue methods leave the secrets out, and no error of this package
// quotes any part of a client message.
//
// Usage, for IMAP "AUTHENTICATE PLAIN <initial response>" (RFC 9051 section
// 6.2.2, SASL-IR):
//
//	msg, err := sasl.DecodeResponse(initialResponse)
//	if errors.Is(err, sasl.ErrCanceled) {
//		return replyBad(tag, "authentication canceled")
//	}
//	if err != nil {
//		return replyBad(tag, "invalid base64")
//	}
//	creds, err := sasl.ParsePlain(msg)
//	if err != nil { // errors.Is(err, sasl.ErrMalformed)
//		return replyNo(tag, "[AUTHENTICATIONFAILED] invalid credentials")
//	}
//	logger.Debug("login", "creds", creds) // no password in the log
//	server, err := picker.Pick(ctx, creds.User, client)
//	// ...
//	backend.Writef("A1 AUTHENTICATE PLAIN %s\r\n", sasl.EncodePlain(creds.Authzid, creds.User, creds.Password))
package sasl
