package stats

import (
	"bytes"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"io"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

//go:embed dashboard.html
var dashboardHTML []byte

// HandlerOptions configure the stats listener's handler.
type HandlerOptions struct {
	// Users are the accepted basic-auth credentials, user → password;
	// empty: no authentication.
	Users map[string]string
	// Realm is the basic-auth realm. Default "maildirector".
	Realm string
	// Pprof serves net/http/pprof's profiles at /debug/pprof/.
	Pprof bool
	// Control, when set, also takes the control socket's commands: POST
	// /ctl with one command line as the body; the answer is the socket's.
	// Only behind Users.
	Control *Control
}

// Handler serves the views of s:
//
//	/                      the dashboard (one page, no external assets)
//	/stats.json, /stats;json   the snapshot as JSON
//	/stats.csv, /stats;csv     HAProxy-style CSV
//	/metrics               Prometheus text format
func (s *Stats) Handler(opts HandlerOptions) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src 'self' data:")
		w.Write(dashboardHTML)
	})
	serveJSON := func(w http.ResponseWriter, r *http.Request) {
		snap, err := s.Snapshot()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		enc.Encode(snap)
	}
	serveCSV := func(w http.ResponseWriter, r *http.Request) {
		snap, err := s.Snapshot()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		WriteCSV(w, snap)
	}
	mux.HandleFunc("GET /stats.json", serveJSON)
	mux.HandleFunc("GET /stats;json", serveJSON)
	mux.HandleFunc("GET /stats.csv", serveCSV)
	mux.HandleFunc("GET /stats;csv", serveCSV)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	if opts.Pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	if opts.Control != nil && len(opts.Users) > 0 {
		mux.HandleFunc("POST /ctl", func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, maxCommandLine+1))
			if err != nil || len(body) > maxCommandLine || bytes.ContainsAny(bytes.TrimRight(body, "\r\n"), "\r\n") {
				http.Error(w, "error: want one command line of at most 4096 bytes", http.StatusBadRequest)
				return
			}
			answer, failed := opts.Control.Do(string(body))
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if failed {
				w.WriteHeader(http.StatusUnprocessableEntity)
			}
			io.WriteString(w, answer+"\n")
		})
	}
	if len(opts.Users) == 0 {
		return mux
	}
	realm := opts.Realm
	if realm == "" {
		realm = "maildirector"
	}
	return basicAuth(mux, opts.Users, realm)
}

// basicAuth lets through requests with one of users' credentials (RFC
// 7617), compared in constant time; others get 401 with the realm.
func basicAuth(next http.Handler, users map[string]string, realm string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if ok {
			want, known := users[u]
			if subtle.ConstantTimeCompare([]byte(p), []byte(want)) == 1 && known {
				next.ServeHTTP(w, r)
				return
			}
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`", charset="UTF-8"`)
		http.Error(w, "authentication required", http.StatusUnauthorized)
	})
}
