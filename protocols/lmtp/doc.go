// Package lmtp is maildirector's LMTP frontend (RFC 2033), the delivery
// path from the MTA, built on go-smtp's server in LMTP mode. It owns the
// transaction with the MTA, the spool, and delivery to the servers; the
// engine ([proxy.Server]) owns sockets, deadlines, TLS and the PROXY header.
//
// LMTP is store-and-forward, not a relay. [Frontend] takes a whole transaction
// from the MTA (LHLO, MAIL, RCPT × n, DATA or BDAT; PIPELINING, SIZE,
// 8BITMIME, SMTPUTF8, CHUNKING), choosing each recipient's server at RCPT
// through a [proxy.Picker]. After the data it spools the body once (memory,
// then an unlinked temporary file), with every line ending made CRLF, and
// delivers it to each server in parallel over pooled LMTP client
// connections opened by the engine (PROXY header, TLS). The MTA then gets
// one reply per RCPT, in RCPT order: the server's own reply for that
// recipient, 250 only where the server said 250. A server that is down,
// times out or drops the connection gives its recipients 451 4.4.1 (the MTA
// retries); a proxy-side failure is never a 5xx and never silence.
//
// A recipient with no usable server is answered 451 4.4.1 at RCPT; servers
// hear of recipients only after the data, so a server's refusal at RCPT
// (550 unknown user) becomes that recipient's reply after the data. With
// [ServerDownNext] (shared storage only), recipients of a server that
// failed before accepting any of them go to their next server. On shutdown
// a delivery under way finishes; the client then gets 421 4.3.2.
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
