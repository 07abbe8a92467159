// Package http is maildirector's HTTP frontend, HAProxy's "mode http", for
// the HTTP traffic of Dovecot backends that keep mail in object storage
// (Scality sproxyd, S3-like stores): HTTP/1.1 with keep-alive to clients, a
// reverse proxy ([httputil.ReverseProxy] with Rewrite) to servers the
// backend's balance algorithm picks per request (roundrobin, leastconn,
// source: the picker is asked with an empty user name), pooled keep-alive
// connections to every server, X-Forwarded-For (HAProxy's option
// forwardfor, with its except networks), retries with redispatch, a queue
// in front of the servers, one access log line per request with captured
// request headers (by default Dovecot's X-Dovecot-Reason, -Username and
// -Session-Id), and per-reason statistics.
//
// # How it fits the engine
//
// The engine (proxy.Server) accepts the connection, holds its maxconn
// slot, registers it, reads a trusted PROXY header and does implicit TLS,
// exactly as for the mail frontends; then it calls [Frontend.ServeConn].
// ServeConn wraps the proxy.Conn as a net.Conn (reads through its reader,
// writes through its Write, so the engine's byte counters and session line
// stay right) and hands it to the frontend's one [http.Server] through a
// listener that yields just that connection: net/http parses requests,
// keeps the connection alive between them and closes it; ServeConn
// returns when it has, and the engine ends the session (one session line
// per connection; one access line per request). Timeouts net/http does not
// have (client and server inactivity while a body streams) are deadlines
// set through the proxy.Conn and on the server connections.
//
// Each connection drains itself at a graceful shutdown (proxy.Conn.SetDrain):
// an idle keep-alive connection is closed at once and a busy one after the
// response it is sending ("Connection: close"); a reload's [Frontend.Close]
// does the same to the connections of the frontend it replaces and closes
// its idle server connections. The engine ends a connection at once on a
// kick or when the shutdown grace is over.
//
// A request goes through: the queue (Options.MaxRequests requests in
// flight, the rest wait up to Timeouts.Queue), Rewrite (X-Forwarded-For),
// then [Frontend.RoundTrip]: pick a server, send on a pooled connection to
// it; on a connection failure, or for an idempotent request whose body can
// be sent again (none, or no more than Options.ReplayBuffer read so far) on
// any error before the response, report the server failed and try the
// next one, up to the frontend's retries. Bodies stream both ways and are
// never held whole. A request that gets no response is answered 502, 503
// or 504 with the reason in its body (errors.go).
//
//	fe := proxy.Frontend{
//		Name: "scality", Protocol: "http", Addrs: []string{"[::]:81"},
//		Handler: http.New(http.Options{Picker: picker, ForwardFor: true}),
//	}
package http
