package nginxlab

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestObjectStore: what one instance stores, another serves (one data
// directory), with PUT, GET with Range, HEAD and DELETE as the HTTP
// path's tests use them; a stopped instance refuses connections and
// serves again once started.
func TestObjectStore(t *testing.T) {
	lab := StartT(t, Options{Instances: 2})
	a, b := "http://"+lab.Instances[0].Addr, "http://"+lab.Instances[1].Addr
	do := func(method, url string, body []byte, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, err := http.NewRequest(method, url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		return resp, got
	}
	obj := []byte(strings.Repeat("0123456789", 1000))
	if resp, _ := do("PUT", a+"/ring/a/b/obj", obj); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: got %s, want 201", resp.Status)
	}
	if resp, got := do("GET", b+"/ring/a/b/obj", nil); resp.StatusCode != 200 || !bytes.Equal(got, obj) {
		t.Fatalf("GET from the other instance: got %s, %d bytes", resp.Status, len(got))
	}
	if resp, got := do("GET", b+"/ring/a/b/obj", nil, "Range", "bytes=10-19"); resp.StatusCode != http.StatusPartialContent || string(got) != "0123456789" {
		t.Fatalf("GET with Range: got %s %q", resp.Status, got)
	}
	if resp, _ := do("HEAD", a+"/ring/a/b/obj", nil); resp.StatusCode != 200 || resp.ContentLength != int64(len(obj)) {
		t.Fatalf("HEAD: got %s, length %d", resp.Status, resp.ContentLength)
	}
	if resp, _ := do("DELETE", b+"/ring/a/b/obj", nil); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: got %s, want 204", resp.Status)
	}
	if resp, _ := do("GET", a+"/ring/a/b/obj", nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET after DELETE: got %s, want 404", resp.Status)
	}
	if resp, got := do("GET", a+"/health", nil); resp.StatusCode != 200 || string(got) != "ok\n" {
		t.Fatalf("health: got %s %q", resp.Status, got)
	}

	in := lab.Instances[1]
	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(b + "/health"); err == nil {
		t.Fatalf("stopped instance answered")
	}
	if err := in.Start(); err != nil {
		t.Fatal(err)
	}
	if resp, _ := do("GET", b+"/health", nil); resp.StatusCode != 200 {
		t.Fatalf("restarted instance: got %s", resp.Status)
	}
}
