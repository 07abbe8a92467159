package http

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/proxy/proxytest"
)

// store is an in-memory object store, as sproxyd or nginx's WebDAV serve:
// PUT stores, GET and HEAD serve (with Range), DELETE removes.
type store struct {
	mu      sync.Mutex
	objects map[string][]byte
	headers []http.Header // every request's headers, in order
}

func (s *store) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.headers = append(s.headers, r.Header.Clone())
	s.mu.Unlock()
	switch r.Method {
	case http.MethodPut:
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.objects[r.URL.Path] = b
		s.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	case http.MethodGet, http.MethodHead:
		s.mu.Lock()
		b, ok := s.objects[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	case http.MethodDelete:
		s.mu.Lock()
		_, ok := s.objects[r.URL.Path]
		delete(s.objects, r.URL.Path)
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *store) seen() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.headers...)
}

// startStore runs a store and returns it with its address.
func startStore(t *testing.T) (*store, string) {
	t.Helper()
	s := &store{objects: make(map[string][]byte)}
	return s, startBackend(t, s)
}

// startBackend runs h on 127.0.0.1 and returns its address.
func startBackend(t testing.TB, h http.Handler) string {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return strings.TrimPrefix(ts.URL, "http://")
}

// recorder is a Recorder that keeps every request.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	server, reason string
	status         int
	in, out        int64
	failed         bool
}

func (r *recorder) Request(_, server, reason string, status int, in, out int64, _ time.Duration, failed bool) {
	r.mu.Lock()
	r.reqs = append(r.reqs, recorded{server, reason, status, in, out, failed})
	r.mu.Unlock()
}

func (r *recorder) all() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

// logBuffer collects JSON log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the decoded lines whose msg is msg.
func (l *logBuffer) lines(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// waitLines waits (bounded) until n lines with msg were logged.
func (l *logBuffer) waitLines(t *testing.T, msg string, n int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := l.lines(t, msg)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// frontend is a running HTTP frontend on the real engine.
type frontend struct {
	addr string
	srv  *proxy.Server
	fe   *Frontend
	log  *logBuffer
	rec  *recorder
}

// serve runs an HTTP frontend with opts (Stats set to a recorder unless
// given) in front of targets, with retries other servers.
func serve(t *testing.T, opts Options, retries int, targets ...proxy.Target) *frontend {
	t.Helper()
	if opts.Picker == nil {
		opts.Picker = &proxytest.Picker{Targets: targets}
	}
	f := &frontend{log: &logBuffer{}, rec: &recorder{}}
	if opts.Stats == nil {
		opts.Stats = f.rec
	}
	f.fe = New(opts)
	f.srv = proxy.New(proxy.Options{Logger: slog.New(slog.NewJSONHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	pfe := proxy.Frontend{Name: "web", Protocol: "http", Addrs: []string{"127.0.0.1:0"}, Handler: f.fe, Retries: retries}
	if err := f.srv.Configure([]proxy.Frontend{pfe}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.srv.Close() })
	f.addr = f.srv.ListenerAddr("web").String()
	return f
}

// client returns an HTTP client with its own keep-alive pool.
func client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// do sends a request and returns the response with its body read.
func do(t *testing.T, c *http.Client, method, url string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, b
}

// resetter reads a request's headers and closes the connection without an
// answer: a server that fails before any response byte.
func resetter(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 512)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				c.Read(buf)
				c.Close()
			}()
		}
	}()
	return ln.Addr().String()
}

// ctx returns a context that ends with the test.
func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return c
}
