package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestHTTPReferences runs both reference servers in-process: go-server
// answers the 4 KiB object, go-revproxy forwards to its upstream with
// X-Forwarded-For set.
func TestHTTPReferences(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "upstream "+r.URL.Path+" xff="+r.Header.Get("X-Forwarded-For"))
	}))
	defer up.Close()
	for _, tc := range []struct {
		mode string
		want func(string) bool
	}{
		{pathGoServer, func(b string) bool { return len(b) == 4<<10 }},
		{pathGoRevProxy, func(b string) bool { return b == "upstream /ring/small xff=127.0.0.1" }},
	} {
		addr, err := freeAddr()
		if err != nil {
			t.Fatal(err)
		}
		go serveHTTPReference([]string{tc.mode, addr, up.Listener.Addr().String()})
		var body string
		for deadline := time.Now().Add(5 * time.Second); ; {
			resp, err := http.Get("http://" + addr + smallObject)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				body = string(b)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v", tc.mode, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !tc.want(body) {
			t.Errorf("%s answered %.80q", tc.mode, body)
		}
	}
	if err := serveHTTPReference([]string{"nonsense", "127.0.0.1:0"}); err == nil {
		t.Error("an unknown reference mode was accepted")
	}
}
