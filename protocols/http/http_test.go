package http

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/proxy/proxytest"
)

func TestObjectMethodsRoundTrip(t *testing.T) {
	st, addr := startStore(t)
	f := serve(t, Options{}, 0, proxy.Target{Server: "s1", Address: addr})
	c := client(t)
	base := "http://" + f.addr
	obj := make([]byte, 3<<20+17)
	rand.Read(obj)

	if resp, _ := do(t, c, "PUT", base+"/obj/a", bytes.NewReader(obj), nil); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: got %s, want 201", resp.Status)
	}
	if got := st.objects["/obj/a"]; !bytes.Equal(got, obj) {
		t.Fatalf("stored object: got %d bytes, want the %d sent", len(got), len(obj))
	}
	resp, body := do(t, c, "GET", base+"/obj/a", nil, nil)
	if resp.StatusCode != http.StatusOK || sha256.Sum256(body) != sha256.Sum256(obj) {
		t.Fatalf("GET: got %s with %d bytes, want 200 and the object", resp.Status, len(body))
	}
	resp, body = do(t, c, "GET", base+"/obj/a", nil, map[string]string{"Range": "bytes=1000-1999"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, obj[1000:2000]) {
		t.Fatalf("GET with Range: got %s with %d bytes, want 206 and bytes 1000-1999", resp.Status, len(body))
	}
	if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes 1000-1999/%d", len(obj)); got != want {
		t.Errorf("Content-Range: got %q, want %q", got, want)
	}
	resp, body = do(t, c, "HEAD", base+"/obj/a", nil, nil)
	if resp.StatusCode != http.StatusOK || len(body) != 0 || resp.ContentLength != int64(len(obj)) {
		t.Fatalf("HEAD: got %s, %d body bytes, length %d; want 200, none, %d", resp.Status, len(body), resp.ContentLength, len(obj))
	}
	if resp, _ := do(t, c, "DELETE", base+"/obj/a", nil, nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: got %s, want 204", resp.Status)
	}
	if resp, _ := do(t, c, "GET", base+"/obj/a", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET after DELETE: got %s, want 404", resp.Status)
	}
	if resp, _ := do(t, c, "PUT", base+"/obj/empty", bytes.NewReader(nil), nil); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT of 0 bytes: got %s, want 201", resp.Status)
	}
	if got, ok := st.objects["/obj/empty"]; !ok || len(got) != 0 {
		t.Errorf("empty object: got %q (stored %v), want stored empty", got, ok)
	}

	// One client connection served all of them (keep-alive), and each
	// request has its access line and its statistics.
	lines := f.log.waitLines(t, "http request", 7)
	if len(lines) != 7 {
		t.Fatalf("access lines: got %d, want 7", len(lines))
	}
	conns := map[any]bool{}
	for _, l := range lines {
		conns[l["conn"]] = true
	}
	if len(conns) != 1 {
		t.Errorf("client connections: got %d, want 1 (keep-alive)", len(conns))
	}
	recs := f.rec.all()
	if len(recs) != 7 || recs[0].in != int64(len(obj)) || recs[1].out != int64(len(obj)) || recs[2].out != 1000 {
		t.Errorf("recorded: got %+v, want 7 requests, the PUT's bytes in, the GETs' bytes out", recs)
	}
}

func TestStreamsBothWays(t *testing.T) {
	// The server answers with the first chunk of the request body and
	// then waits: the client must see it while its own body is still
	// being written, so neither side is held whole.
	release := make(chan struct{})
	addr := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return
		}
		w.WriteHeader(http.StatusOK)
		w.Write(buf)
		w.(http.Flusher).Flush()
		<-release
		io.Copy(w, r.Body)
	}))
	defer close(release)
	f := serve(t, Options{}, 0, proxy.Target{Server: "s1", Address: addr})
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("PUT", "http://"+f.addr+"/x", pr)
	req.ContentLength = -1
	go io.WriteString(pw, "hello")
	resp, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != "hello" {
		t.Fatalf("first chunk while the request body is open: got %q, %v", got, err)
	}
	release <- struct{}{}
	go func() { io.WriteString(pw, " world"); pw.Close() }()
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != " world" {
		t.Errorf("rest: got %q, want %q", rest, " world")
	}
}

func TestForwardFor(t *testing.T) {
	tests := []struct {
		name   string
		opts   Options
		prior  string
		want   string
		exists bool
	}{
		{"off: the client's header passes", Options{}, "192.0.2.1", "192.0.2.1", true},
		{"off, none sent: none", Options{}, "", "", false},
		{"on: the client appended", Options{ForwardFor: true}, "192.0.2.1", "192.0.2.1, 127.0.0.1", true},
		{"on, none sent: the client", Options{ForwardFor: true}, "", "127.0.0.1", true},
		{"on, client in except: unchanged", Options{ForwardFor: true, ForwardForExcept: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, "", "", false},
		{"on, client not in except: the client", Options{ForwardFor: true, ForwardForExcept: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, "", "127.0.0.1", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, addr := startStore(t)
			f := serve(t, tt.opts, 0, proxy.Target{Server: "s1", Address: addr})
			hdr := map[string]string{"Host": "objects.example"}
			if tt.prior != "" {
				hdr["X-Forwarded-For"] = tt.prior
			}
			req, _ := http.NewRequest("GET", "http://"+f.addr+"/x", nil)
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			req.Host = "objects.example"
			resp, err := client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			seen := st.seen()
			if len(seen) != 1 {
				t.Fatalf("requests at the server: got %d, want 1", len(seen))
			}
			got, ok := seen[0]["X-Forwarded-For"]
			if ok != tt.exists || strings.Join(got, ",") != tt.want {
				t.Errorf("X-Forwarded-For: got %q (present %v), want %q (present %v)", got, ok, tt.want, tt.exists)
			}
		})
	}
}

func TestRetriesAndRedispatch(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 256<<10)
	tests := []struct {
		name       string
		method     string
		body       []byte
		first      func(t testing.TB) string // the first server's address
		retries    int
		wantStatus int
		wantServer string // the server that answered; "" none
		wantFailed []string
		wantTerm   string
	}{
		{"connect refused: next server", "GET", nil, proxytest.DeadAddr, 2, http.StatusNotFound, "good", []string{"bad"}, "--"},
		{"connect refused, POST too: nothing was sent", "POST", []byte("data"), proxytest.DeadAddr, 2, http.StatusMethodNotAllowed, "good", []string{"bad"}, "--"},
		{"reset before the answer, GET: retried", "GET", nil, resetter, 2, http.StatusNotFound, "good", []string{"bad"}, "--"},
		{"reset, PUT with a small body: replayed", "PUT", []byte("small body"), resetter, 2, http.StatusCreated, "good", []string{"bad"}, "--"},
		{"reset, POST: never retried", "POST", []byte("data"), resetter, 2, http.StatusBadGateway, "", []string{"bad"}, "SH"},
		{"reset, PUT past the replay buffer: not retried", "PUT", big, resetter, 2, http.StatusBadGateway, "", []string{"bad"}, "SH"},
		{"reset, no retries left", "GET", nil, resetter, -1, http.StatusBadGateway, "", []string{"bad"}, "SH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, good := startStore(t)
			p := &proxytest.Picker{Targets: []proxy.Target{{Server: "bad", Address: tt.first(t)}, {Server: "good", Address: good}}}
			f := serve(t, Options{Picker: p, ReplayBuffer: 1 << 10}, tt.retries)
			var body io.Reader
			if tt.body != nil {
				body = bytes.NewReader(tt.body)
			}
			resp, _ := do(t, client(t), tt.method, "http://"+f.addr+"/obj", body, nil)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status: got %s, want %d", resp.Status, tt.wantStatus)
			}
			if got := p.Failures(); !slices.Equal(got, tt.wantFailed) {
				t.Errorf("servers reported failed: got %q, want %q", got, tt.wantFailed)
			}
			if tt.method == "PUT" && tt.wantServer == "good" && !bytes.Equal(st.objects["/obj"], tt.body) {
				t.Errorf("replayed body at the next server: got %q, want %q", st.objects["/obj"], tt.body)
			}
			lines := f.log.waitLines(t, "http request", 1)
			if len(lines) != 1 {
				t.Fatalf("access lines: got %d, want 1", len(lines))
			}
			if got := lines[0]["termination"]; got != tt.wantTerm {
				t.Errorf("termination: got %v, want %s", got, tt.wantTerm)
			}
			if tt.wantServer != "" && lines[0]["server"] != tt.wantServer {
				t.Errorf("logged server: got %v, want %s", lines[0]["server"], tt.wantServer)
			}
		})
	}
}

func TestFailedRequestsAreAnswered(t *testing.T) {
	slow := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	tests := []struct {
		name       string
		targets    func(t *testing.T) []proxy.Target
		timeouts   Timeouts
		wantStatus int
		wantBody   string
		wantTerm   string
	}{
		{"no server at all", func(*testing.T) []proxy.Target { return nil }, Timeouts{}, http.StatusServiceUnavailable, "no usable server", "SC"},
		{"every server refuses", func(t *testing.T) []proxy.Target {
			return []proxy.Target{{Server: "a", Address: proxytest.DeadAddr(t)}, {Server: "b", Address: proxytest.DeadAddr(t)}}
		}, Timeouts{}, http.StatusServiceUnavailable, "no server available: server b: connect to", "SC"},
		{"the server is silent past timeouts.server", func(*testing.T) []proxy.Target {
			return []proxy.Target{{Server: "slow", Address: slow}}
		}, Timeouts{Server: 300 * time.Millisecond}, http.StatusGatewayTimeout, "timeouts.server", "sH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := serve(t, Options{Timeouts: tt.timeouts}, -1, tt.targets(t)...)
			if len(tt.targets(t)) > 1 {
				f = serve(t, Options{Timeouts: tt.timeouts}, 1, tt.targets(t)...)
			}
			resp, body := do(t, client(t), "GET", "http://"+f.addr+"/obj", nil, nil)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("got %s %q, want %d with %q", resp.Status, body, tt.wantStatus, tt.wantBody)
			}
			lines := f.log.waitLines(t, "http request", 1)
			if len(lines) != 1 || lines[0]["termination"] != tt.wantTerm || lines[0]["err"] == nil {
				t.Errorf("access line: got %v, want termination %s and an err", lines, tt.wantTerm)
			}
			if recs := f.rec.all(); len(recs) != 1 || !recs[0].failed || recs[0].status != tt.wantStatus {
				t.Errorf("recorded: got %+v, want one failed request with %d", recs, tt.wantStatus)
			}
		})
	}
}

func TestCaptureInAccessLog(t *testing.T) {
	_, addr := startStore(t)
	f := serve(t, Options{Backend: "ring"}, 0, proxy.Target{Server: "s1", Address: addr})
	reason := "Mailbox sync: cache file update; " + strings.Repeat("r", 20) // 53 bytes: cut at 40
	user := "alice@example.org"
	session := strings.Repeat("S", 80) // cut at 70
	resp, _ := do(t, client(t), "GET", "http://"+f.addr+"/obj/1?x=y", nil, map[string]string{
		"X-Dovecot-Reason": reason, "X-Dovecot-Username": user, "X-Dovecot-Session-Id": session,
	})
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("got %s, want 404 from the store", resp.Status)
	}
	lines := f.log.waitLines(t, "http request", 1)
	if len(lines) != 1 {
		t.Fatalf("access lines: got %d, want 1", len(lines))
	}
	l := lines[0]
	hdr, _ := l["hdr"].(map[string]any)
	want := map[string]any{"X-Dovecot-Reason": reason[:40], "X-Dovecot-Username": user, "X-Dovecot-Session-Id": session[:70]}
	for k, v := range want {
		if hdr[k] != v {
			t.Errorf("hdr.%s: got %q, want %q", k, hdr[k], v)
		}
	}
	for k, v := range map[string]any{"backend": "ring", "server": "s1", "status": 404.0, "termination": "--", "method": "GET", "uri": "/obj/1?x=y", "proto": "http", "retries": 0.0} {
		if l[k] != v {
			t.Errorf("%s: got %v, want %v", k, l[k], v)
		}
	}
	for _, k := range []string{"time", "remote", "frontend", "request", "queue", "connect", "response", "total", "bytes_in", "bytes_out"} {
		if _, ok := l[k]; !ok {
			t.Errorf("access line lacks %s: %v", k, l)
		}
	}
	if recs := f.rec.all(); len(recs) != 1 || recs[0].reason != reason[:40] || recs[0].server != "s1" || recs[0].failed {
		t.Errorf("recorded: got %+v, want the cut reason, server s1, not failed", recs)
	}
}

func TestQueue(t *testing.T) {
	tests := []struct {
		name       string
		queue      time.Duration
		unblock    bool
		wantStatus int
		wantTerm   string
	}{
		{"waits for the slot", 5 * time.Second, true, http.StatusOK, "--"},
		{"queue timeout", 200 * time.Millisecond, false, http.StatusServiceUnavailable, "sQ"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			block := make(chan struct{})
			var once sync.Once
			unblock := func() { once.Do(func() { close(block) }) }
			t.Cleanup(unblock)
			entered := make(chan struct{}, 4)
			addr := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				entered <- struct{}{}
				if r.URL.Path == "/block" {
					<-block
				}
			}))
			f := serve(t, Options{MaxRequests: 1, Timeouts: Timeouts{Queue: tt.queue}}, 0, proxy.Target{Server: "s1", Address: addr})
			first := make(chan int, 1)
			go func() {
				resp, err := client(t).Get("http://" + f.addr + "/block")
				if err != nil {
					first <- 0
					return
				}
				resp.Body.Close()
				first <- resp.StatusCode
			}()
			<-entered // the first request holds the one slot
			if tt.unblock {
				time.AfterFunc(300*time.Millisecond, unblock)
			}
			resp, body := do(t, client(t), "GET", "http://"+f.addr+"/next", nil, nil)
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("queued request: got %s %q, want %d", resp.Status, body, tt.wantStatus)
			}
			unblock()
			<-first
			var next map[string]any
			for _, l := range f.log.waitLines(t, "http request", 2) {
				if l["uri"] == "/next" {
					next = l
				}
			}
			if next == nil || next["termination"] != tt.wantTerm {
				t.Errorf("queued request's access line: got %v, want termination %s", next, tt.wantTerm)
			}
		})
	}
}

func TestShutdownDrains(t *testing.T) {
	entered := make(chan struct{}, 1)
	addr := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			time.Sleep(300 * time.Millisecond)
		}
		io.WriteString(w, "answer")
	}))
	f := serve(t, Options{}, 0, proxy.Target{Server: "s1", Address: addr})
	// An idle keep-alive connection and a busy one.
	idle, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idleR := bufio.NewReader(idle)
	fmt.Fprintf(idle, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(idleR, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("idle connection's first request: %v", err)
	} else {
		io.ReadAll(resp.Body)
	}
	time.Sleep(100 * time.Millisecond) // net/http has moved it to idle by now
	busy, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	fmt.Fprintf(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered
	done := make(chan error, 1)
	shutdownCtx, cancel := context.WithTimeout(ctx(t), 3*time.Second)
	defer cancel()
	go func() { done <- f.srv.Shutdown(shutdownCtx) }()

	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := idleR.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("idle connection at shutdown: got %d bytes, %v; want it closed", n, err)
	}
	busy.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(busy)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("busy connection at shutdown: %v, want its response", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "answer" || !resp.Close {
		t.Errorf("busy connection's response: got %q (close %v), want the answer with Connection: close", b, resp.Close)
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestCloseEndsKeepAlive(t *testing.T) {
	_, addr := startStore(t)
	f := serve(t, Options{}, 0, proxy.Target{Server: "s1", Address: addr})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	get := func() *http.Response {
		fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("response: %v", err)
		}
		io.ReadAll(resp.Body)
		return resp
	}
	if resp := get(); resp.Close {
		t.Fatalf("before Close: got Connection: close, want keep-alive")
	}
	f.fe.Close() // a reload replaced the frontend
	fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(r, nil); err == nil {
		io.ReadAll(resp.Body)
		if !resp.Close {
			t.Errorf("after Close: got keep-alive, want Connection: close or the connection closed")
		}
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("after Close: got %v, want the connection closed", err)
	}
}

func TestClientTimeouts(t *testing.T) {
	_, addr := startStore(t)
	tests := []struct {
		name     string
		timeouts Timeouts
		send     string // what the client sends, then it goes silent
		wantLine string // the start of what it reads; "" the connection closed without a word
		wantEnd  string // the session line's end
	}{
		{"request headers too slow", Timeouts{Request: 200 * time.Millisecond}, "GET /x HTTP/1.1\r\nHost:", "", "timeout"},
		{"idle past keep-alive", Timeouts{KeepAlive: 200 * time.Millisecond}, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 404", "done"},
		{"body stalls past timeouts.client", Timeouts{Client: 200 * time.Millisecond}, "PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", "HTTP/1.1 408", "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := serve(t, Options{Timeouts: tt.timeouts}, 0, proxy.Target{Server: "s1", Address: addr})
			c, err := net.Dial("tcp", f.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, tt.send)
			all, _ := io.ReadAll(c) // returns when maildirector closes
			if !strings.HasPrefix(string(all), tt.wantLine) || tt.wantLine == "" && len(all) != 0 {
				t.Errorf("client read: got %q, want it to start with %q", all, tt.wantLine)
			}
			lines := f.log.waitLines(t, "session", 1)
			if len(lines) != 1 || lines[0]["end"] != tt.wantEnd {
				t.Errorf("session line: got %v, want end %q", lines, tt.wantEnd)
			}
		})
	}
}

func TestDrainAfterKickStopsAtOnce(t *testing.T) {
	// A kick ends a connection at once, even one waiting for a slow server.
	addr := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	f := serve(t, Options{}, 0, proxy.Target{Server: "s1", Address: addr})
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	deadline := time.Now().Add(5 * time.Second)
	for len(f.srv.Sessions()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	began := time.Now()
	if n := f.srv.Kick(func(proxy.Info) bool { return true }, proxy.EndKicked); n != 1 {
		t.Fatalf("kicked %d sessions, want 1", n)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(c)
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("kicked connection closed after %v, want at once", d)
	}
	lines := f.log.waitLines(t, "session", 1)
	if len(lines) != 1 || lines[0]["end"] != proxy.EndKicked {
		t.Errorf("session line: got %v, want end kicked", lines)
	}
}

func TestTLSBothWays(t *testing.T) {
	// The client speaks HTTPS to the frontend (implicit TLS by the engine)
	// and the frontend speaks HTTPS to the server, verifying it.
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "secret object")
	}))
	t.Cleanup(ts.Close)
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	target := proxy.Target{Server: "s1", Address: strings.TrimPrefix(ts.URL, "https://"), TLS: &tls.Config{RootCAs: pool, ServerName: "example.com"}}
	fe := New(Options{Picker: &proxytest.Picker{Targets: []proxy.Target{target}}})
	addr := proxytest.Serve(t, proxy.Frontend{Name: "web", Protocol: "http", Handler: fe, TLS: proxytest.ServerTLS(t), ImplicitTLS: true})
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second}
	resp, err := c.Get("https://" + addr + "/obj")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(body) != "secret object" || resp.TLS == nil {
		t.Errorf("got %s %q (TLS %v), want the object over TLS", resp.Status, body, resp.TLS != nil)
	}

	// A server whose certificate does not verify is a failed connect: 503.
	bad := target
	bad.TLS = &tls.Config{ServerName: "example.com"} // the system roots: the test CA is not one
	fe2 := New(Options{Picker: &proxytest.Picker{Targets: []proxy.Target{bad}}})
	addr2 := proxytest.Serve(t, proxy.Frontend{Name: "web2", Protocol: "http", Handler: fe2, Retries: -1})
	resp2, err := http.Get("http://" + addr2 + "/obj")
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	body2, _ := io.ReadAll(resp2.Body)
	if resp2.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body2), "tls") {
		t.Errorf("unverified server: got %s %q, want 503 naming TLS", resp2.Status, body2)
	}
}

func TestRefusedConnectionGets503(t *testing.T) {
	// A per-client limit of the engine refuses the second connection: the
	// client reads a 503 with the reason as the answer to its request.
	_, addr := startStore(t)
	fe := New(Options{Picker: &proxytest.Picker{Targets: []proxy.Target{{Server: "s1", Address: addr}}}})
	front := proxytest.Serve(t, proxy.Frontend{Name: "web", Protocol: "http", Handler: fe, Limits: proxy.Limits{MaxPerClient: 1}})
	first, err := net.Dial("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	io.WriteString(first, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	first.SetReadDeadline(time.Now().Add(5 * time.Second))
	if resp, err := http.ReadResponse(bufio.NewReader(first), nil); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("first connection: got %v, %v; want the store's 404", resp, err)
	}
	second, err := net.Dial("tcp", front)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	io.WriteString(second, "GET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(second), nil)
	if err != nil {
		t.Fatalf("second connection: %v, want a 503", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(string(body), "maildirector: ") || !resp.Close {
		t.Errorf("second connection: got %s %q (close %v), want 503 with the reason and Connection: close", resp.Status, body, resp.Close)
	}
}
