// Package proxy is maildirector's connection engine: listeners and their
// accept loops, one [Conn] per client with its logger, peek/replay reader,
// counters and phase deadlines, the dial to a server with a PROXY v2 header
// ([Conn.Dial]) and the byte relay between client and server.
//
// Every frontend is a [Handler]. The engine owns the client connection: it
// closes it after ServeConn returns, unless ServeConn handed it to the relay
// with [Conn.Relay], in which case the relay closes both legs when the
// session ends. Either way the engine writes one log line per session.
//
//	srv := proxy.New(proxy.Options{Logger: logger, MaxConn: 10000})
//	err := srv.Configure([]proxy.Frontend{{
//		Name: "imap", Protocol: "imap", Addrs: []string{"0.0.0.0:143"},
//		Handler: imapFrontend, TLS: tlsConfig,
//	}})
//	...
//	srv.Shutdown(ctx) // stop accepting, end each session at a clean point, force-close at ctx's end
//
// # Relay and memory
//
// An idle proxied session (an IMAP IDLE that lasts hours is the normal case)
// holds no goroutine, no buffer and no pipe: both sockets wait in one epoll
// set, and only when one becomes readable does a short-lived pump goroutine
// move the bytes (through a pooled buffer; by splice(2) through a pooled
// pipe when both legs are plain TCP and the frontend says Splice) and go
// away again. That keeps
// an idle session at 2 file descriptors and well under 4 KiB of memory,
// where io.Copy in two goroutines would hold two stacks and, through
// net.TCPConn.ReadFrom, a splice pipe (2 fds) per direction for the whole
// life of the session.
//
// # Platform
//
// The relay is Linux only (epoll and splice). Building for another system
// fails on purpose with "undefined: maildirector_requires_linux"
// (relay_other.go) rather than with a missing relay.
package proxy
