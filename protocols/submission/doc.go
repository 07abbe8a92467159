// Package submission is maildirector's SMTP submission frontend (RFC 6409):
// it answers the part of the session before AUTH itself — greeting,
// EHLO/HELO, STARTTLS (RFC 3207), AUTH PLAIN and LOGIN (RFC 4954), RSET,
// NOOP, QUIT — learns the user name, lets the picker choose a server,
// replays the client's EHLO and login there (after a Postfix XCLIENT when
// the server wants one), and hands the session to the engine's relay once
// the server answered 235. From then on the client talks to the server:
// MAIL, RCPT, DATA and a re-EHLO (which then shows the server's own
// capabilities) go through untouched.
//
// It is written by hand, like the IMAP frontend, rather than on go-smtp's
// server: that server is built to consume mail (its Backend gets MAIL, RCPT
// and the message), and has no way to hand the raw connection to a relay
// after AUTH, which is all a proxy wants from it.
//
// Failures on the proxy's side are always 4xx (421 4.3.0, 454 4.7.0): the
// client retries later and never bounces a message because a server was
// down. A 535 from the server is relayed and the client may try again.
//
// Usage, from cmd:
//
//	fe := proxy.Frontend{
//		Name: "submission", Protocol: "submission", Addrs: []string{":587"}, TLS: tlsConfig,
//		Handler: submission.New(submission.Options{Picker: picker, Hostname: "mx.example.org"}),
//	}
//	err := srv.Configure([]proxy.Frontend{fe})
package submission
