package http

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"

	"github.com/maildirector/maildirector/proxy"
)

// statusClientClosed is the status logged for a request whose client left
// before it was answered (nginx's 499; HAProxy logs -1).
const statusClientClosed = 499

// answerError is where a request that got no server's response meets the
// wire: ReverseProxy's ErrorHandler, and the queue's. The client gets a
// status and the reason in plain text, never a hang:
//
//   - 503 when no server could take it: none usable, all tried failed to
//     connect, the queue's timeout, this host out of descriptors;
//   - 504 when the server did not answer in time (timeouts.server);
//   - 502 when the server failed otherwise (reset, closed, a malformed
//     response);
//   - 408 when the client's body stalled (timeouts.client);
//   - nothing when the client has left or its body broke off (logged as 499).
func (f *Frontend) answerError(w http.ResponseWriter, r *http.Request, err error) {
	x := exchangeOf(r.Context())
	if x == nil {
		http.Error(w, "maildirector: "+err.Error(), http.StatusBadGateway)
		return
	}
	status, term, reason := x.classify(r.Context(), err)
	x.term, x.answered = term, reason
	if status == 0 || status == statusClientClosed {
		return // the client left: nobody to answer
	}
	if x.w.status != 0 {
		return // a 1xx went out already and the connection is in doubt: net/http ends it
	}
	if x.body != nil && !x.body.complete() {
		// The rest of the body is still on the connection: close it after
		// the answer rather than read it.
		w.Header().Set("Connection", "close")
	}
	http.Error(w, "maildirector: "+reason, status)
}

// classify maps the error that ended a request without a server's response
// to the client's status (0: the client left), HAProxy's termination state
// and the reason the client and the log are told.
func (x *exchange) classify(ctx context.Context, err error) (status int, term, reason string) {
	var (
		noServer *noServerError
		dial     *dialError
	)
	phase := "H" // waiting for the response headers
	if x.server == "" {
		phase = "Q" // still before any server
	}
	switch {
	case errors.Is(err, errQueueTimeout):
		return http.StatusServiceUnavailable, "sQ", err.Error()
	case x.body != nil && x.body.clientErr() != nil:
		// Before the context: net/http cancels it on the client's read error.
		cerr := x.body.clientErr()
		if isTimeout(cerr) {
			return http.StatusRequestTimeout, "cD", "client sent its body too slowly (timeouts.client)"
		}
		return statusClientClosed, "CD", "client's body broke off: " + cerr.Error()
	case ctx.Err() != nil:
		return 0, "C" + phase, "client closed the connection before the response"
	case errors.As(err, &noServer):
		return http.StatusServiceUnavailable, "SC", err.Error()
	case errors.Is(err, proxy.ErrLocalResource):
		return http.StatusServiceUnavailable, "RC", err.Error()
	case errors.As(err, &dial):
		term = "SC"
		if isTimeout(dial.err) {
			term = "sC"
		}
		return http.StatusServiceUnavailable, term, "no server available: " + err.Error()
	case isTimeout(err):
		return http.StatusGatewayTimeout, "sH", err.Error() + " (timeouts.server)"
	}
	return http.StatusBadGateway, "SH", err.Error()
}

// isTimeout reports whether err is a deadline or timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}
