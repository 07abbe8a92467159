// Package lmtp is maildirector's LMTP frontend (RFC 2033), the delivery
// path from the MTA, with a hand-written session in the project's shape:
// session.go (one loop, a typed state, a capped read, a switch on the
// verb), transaction.go (the server legs of one transaction), server.go
// (the LMTP client connections to the servers and their pool), data.go and
// spool.go (the message data), errors.go (where replies meet the wire). The
// engine ([proxy.Server]) owns sockets, deadlines, TLS and the PROXY header.
//
// [Frontend] takes a transaction from the MTA (LHLO, MAIL, RCPT × n, DATA
// or BDAT; PIPELINING, SIZE, 8BITMIME, SMTPUTF8, CHUNKING, DSN, STARTTLS).
// At each RCPT it picks the recipient's server through a [proxy.Picker],
// sends the RCPT to that server (opening or reusing the server's
// connection for the transaction: greeting, LHLO, MAIL with the client's
// parameters that server advertises) and answers the MTA with the server's
// own reply, 2xx, 4xx or 5xx, as Dovecot's own LMTP proxy does: an unknown
// user is refused at RCPT. RCPTs the MTA pipelines (RFC 2920) go to their
// servers together, pipelined per server and all servers in parallel, and
// the replies go back in the MTA's order. A recipient whose server cannot
// be reached or fails before answering gets 451 4.4.1; with
// [ServerDownNext] (shared storage only) it is tried on its next server.
//
// After the data the body is spooled once (memory, then an unlinked
// temporary file, within Options.SpoolBudget over all sessions), with
// every line ending made CRLF, and sent to each server that accepted
// recipients, in parallel. The MTA then gets one reply per accepted RCPT,
// in RCPT order: the server's own reply, 250 only where the server said
// 250 for that message. Every server reply is checked against the command
// it answers (354 before the body, exactly one reply per recipient after
// it); a server that breaks the protocol, is down, times out or drops the
// connection gives its recipients 451 4.4.1 (the MTA retries), and its
// connection is closed, never pooled. A proxy-side failure is never a 5xx
// and never silence. On shutdown a delivery under way finishes; the client
// then gets 421 4.3.2.
//
//	fe := lmtp.New(lmtp.Options{
//		Picker:     picker, // cmd wires the director to it
//		Hostname:   "mx-director.example.org",
//		ServerDown: lmtp.ServerDownTempfail,
//	})
//	defer fe.Close() // idle server connections
//	err := srv.Configure([]proxy.Frontend{{
//		Name: "lmtp", Protocol: "lmtp", Addrs: []string{"10.0.0.5:24"},
//		Handler: fe,
//	}})
package lmtp

import "github.com/maildirector/maildirector/proxy"

var _ proxy.Handler = (*Frontend)(nil)
