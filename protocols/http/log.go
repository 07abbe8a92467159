package http

import (
	"context"
	"log/slog"
	"time"
)

// maxLoggedURI caps the request target in the access log.
const maxLoggedURI = 2048

// log writes the request's access line: one Info line per request with
// HAProxy's httplog fields, on the connection's logger (conn, frontend,
// proto, remote: the client; the line's time is HAProxy's date):
//
//	backend, server   the backend and the last server tried ("" when none was)
//	request           the request's headers, from its first byte (HAProxy's TR)
//	queue             waiting for a slot under max_requests (Tw)
//	connect           getting a connection to the server; 0s for a pooled one (Tc)
//	response          from the connection to the response headers (Tr)
//	total             from the request's first byte to the response's last (Ta)
//	status            what the client was answered (499: it left before)
//	bytes_in          request body bytes from the client
//	bytes_out         response body bytes to the client
//	termination       HAProxy's termination state ("--" completed; see termination)
//	retries           servers tried after the first
//	hdr.NAME          each captured request header, cut to its length
//	method, uri       the request line
//	err               why maildirector answered it itself or a transfer broke
func (x *exchange) log(status int, in int64, total time.Duration, term string, p any) {
	if !x.cc.log.Enabled(context.Background(), slog.LevelInfo) {
		return
	}
	backend := x.backend
	if backend == "" {
		backend = x.f.opts.Backend
	}
	attrs := make([]slog.Attr, 0, 20)
	attrs = append(attrs,
		slog.String("backend", backend),
		slog.String("server", x.server),
		slog.Duration("request", x.start.Sub(x.reqStart).Round(time.Microsecond)),
		slog.Duration("queue", x.queued.Round(time.Microsecond)),
		slog.Duration("connect", time.Duration(x.connect.Load()).Round(time.Microsecond)),
		slog.Duration("response", x.response.Round(time.Microsecond)),
		slog.Duration("total", total.Round(time.Microsecond)),
		slog.Int("status", status),
		slog.Int64("bytes_in", in),
		slog.Int64("bytes_out", x.w.n),
		slog.String("termination", term),
		slog.Int("retries", max(x.tried-1, 0)),
	)
	if len(x.f.capture) > 0 {
		hdr := make([]slog.Attr, len(x.f.capture))
		for i, c := range x.f.capture {
			hdr[i] = slog.String(c.Name, x.captured[i])
		}
		attrs = append(attrs, slog.Attr{Key: "hdr", Value: slog.GroupValue(hdr...)})
	}
	attrs = append(attrs, slog.String("method", x.method), slog.String("uri", cut(x.uri, maxLoggedURI)))
	if e := x.errText(p); e != "" {
		attrs = append(attrs, slog.String("err", e))
	}
	x.cc.log.LogAttrs(context.Background(), slog.LevelInfo, "http request", attrs...)
}

// errText is the access line's err: maildirector's own answer's reason,
// else what broke a transfer.
func (x *exchange) errText(p any) string {
	switch {
	case x.answered != "":
		return x.answered
	case x.w.err != nil:
		return "client: " + x.w.err.Error()
	case x.serverErr != nil:
		return "server " + x.server + ": " + x.serverErr.Error()
	case x.body != nil && x.body.clientErr() != nil:
		return "client: " + x.body.clientErr().Error()
	case p != nil:
		return "response aborted"
	}
	return ""
}
