// Package managesieve is maildirector's ManageSieve frontend (RFC 5804,
// port 4190): it greets the client with the capabilities (IMPLEMENTATION,
// SIEVE and NOTIFY as the servers' health checks learned them; SASL PLAIN,
// STARTTLS and VERSION its own), answers the commands allowed before login
// itself (CAPABILITY, NOOP, LOGOUT, STARTTLS, AUTHENTICATE PLAIN with an
// initial response or after an empty challenge), asks a [proxy.Picker] for
// the user's server (the login name, as IMAP routes it: the server where
// the user's mail is), replays the login there and hands both connections
// to the engine's relay once the server said OK. The server, not the
// proxy, judges the password: a NO goes back to the client, which may try
// again, up to a bounded number of attempts.
//
// It owns the pre-login state machine; the strings and literals of RFC
// 5804 section 4 are read and split by internal/mailwire, which the server
// leg and the health check share. The engine ([proxy.Server]) owns sockets,
// deadlines, TLS, the PROXY header to the server (its SSL TLV tells Dovecot
// the client used TLS), redispatch to the next server and the relay. A
// [Frontend] is a [proxy.Handler]:
//
//	fe := managesieve.New(managesieve.Options{
//		Picker:             picker, // cmd adapts the director to proxy.Picker
//		ServerCapabilities: caps,   // what the managesieve checks learned
//	})
//	err := srv.Configure([]proxy.Frontend{{
//		Name: "sieve", Protocol: "managesieve", Addrs: []string{":4190"},
//		Handler: fe, TLS: tlsConfig,
//	}})
//
// Replies in place of OK are typed errors ([Error]), written in one place:
// NO, or BYE where the session ends, with RFC 5804 section 1.3 response
// codes where they tell the client more (TRYLATER for a temporary failure,
// ENCRYPT-NEEDED for a plaintext login refused before TLS).
//
// Security reflexes: every client read runs under the engine's pre-auth
// deadline; a command with its literals is capped at 4 KiB; a line that
// is not a ManageSieve command (an HTTP request, a TLS ClientHello on the
// plaintext port, binary noise) ends the connection with BYE; ten rejected
// commands or MaxLoginAttempts failed logins end it too. Passwords and
// SASL payloads are never logged.
package managesieve
