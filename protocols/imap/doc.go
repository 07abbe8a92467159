// Package imap is maildirector's IMAP frontend (RFC 9051, RFC 3501): it
// greets the client, answers the pre-login commands itself (CAPABILITY,
// ID, NOOP, LOGOUT, STARTTLS, LOGIN, AUTHENTICATE with SASL-IR), extracts
// the user name from the login, asks a [proxy.Picker] for a server, replays
// the client's login there under the client's own tag, and hands both
// connections to the engine's relay once the server said OK. The server,
// not the proxy, judges the password: a NO goes back to the client, which
// may try again.
//
// It owns the pre-login state machine and the command-line tokenizer; the
// engine ([proxy.Server]) owns sockets, deadlines, TLS, the PROXY header,
// redispatch to the next server and the relay. A [Frontend] is a
// [proxy.Handler]:
//
//	fe := imap.New(imap.Options{
//		Picker:         picker, // cmd adapts the director to proxy.Picker
//		Retries:        cfg.Retries,
//		PlaintextLogin: false, // LOGIN only after STARTTLS or on port 993
//		Logger:         logger,
//	})
//	err := srv.Configure([]proxy.Frontend{{
//		Name: "imap", Protocol: "imap", Addrs: []string{":143"},
//		Handler: fe, TLS: tlsConfig,
//	}})
//
// Security reflexes: every client read runs under the engine's pre-auth
// deadline; command lines are capped at 8 KiB and literals at 4 KiB; one
// command that is not IMAP at all (an HTTP request, a TLS ClientHello on the
// plaintext port, binary noise) ends the connection with "* BYE" (the
// cross-protocol defence of RFC 9051 section 11.1's spirit, as Dovecot does);
// ten bad commands or MaxLoginAttempts failed logins end it too. Passwords
// and SASL payloads are never logged.
package imap
