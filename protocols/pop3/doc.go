// Package pop3 is maildirector's POP3 frontend (RFC 1939): it answers the
// AUTHORIZATION state itself — greeting, CAPA (RFC 2449), STLS (RFC 2595),
// USER/PASS and AUTH PLAIN (RFC 5034) — learns the user name, lets the
// picker choose a server, replays the login there as AUTH PLAIN with an
// initial response, and hands the session to the engine's relay once the
// server said +OK. A rejected login (-ERR) is passed to the client, which
// may try again, up to a bounded number of attempts.
//
// The frontend authenticates no one: the server judges the password. It
// only refuses plaintext logins on unencrypted connections unless
// [Options.PlaintextLogin] allows them, and it closes the connection on the
// first command it does not know before login (a defence against
// cross-protocol attacks: an HTTP request or a TLS ClientHello sent to the
// POP3 port).
//
// Replies in place of +OK are typed errors ([Error]), written to the client
// in one place; RFC 3206 response codes ([AUTH], [SYS/TEMP]) tell clients
// whether to ask the user for a new password or to retry later.
//
// Usage, from cmd:
//
//	fe := proxy.Frontend{
//		Name: "pop3", Protocol: "pop3", Addrs: []string{":110"}, TLS: tlsConfig,
//		Handler: pop3.New(pop3.Options{Picker: picker, Retries: 2, Greeting: "Dovecot ready."}),
//	}
//	err := srv.Configure([]proxy.Frontend{fe})
package pop3
