package http

import (
	"net/netip"
	"testing"

	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/proxy/proxytest"
)

// TestPickRequestRoutes: each request's pick names the client and the
// address it connected to (what routing rules on local and client match),
// and the access line and the statistics name the backend of the server
// the picker chose, not the frontend's own.
func TestPickRequestRoutes(t *testing.T) {
	_, addr := startStore(t)
	p := &proxytest.Picker{Targets: []proxy.Target{{Backend: "objects-b", Server: "s1", Address: addr}}}
	f := serve(t, Options{Picker: p, Backend: "objects-a"}, 0)
	resp, _ := do(t, client(t), "GET", "http://"+f.addr+"/obj", nil, nil)
	resp.Body.Close()
	reqs := p.Requests()
	if len(reqs) != 1 {
		t.Fatalf("got %d picks, want 1", len(reqs))
	}
	if r := reqs[0]; r.Local != netip.MustParseAddrPort(f.addr) || !r.Client.IsValid() || r.User != "" {
		t.Errorf("pick: got %+v, want local %s, a client and no user", r, f.addr)
	}
	lines := f.log.waitLines(t, "http request", 1)
	if got := lines[0]["backend"]; got != "objects-b" {
		t.Errorf("access line backend: got %v, want objects-b", got)
	}
}
