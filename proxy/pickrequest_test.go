package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// requestPicker records the requests it is asked with and picks nothing.
type requestPicker struct {
	mu   sync.Mutex
	reqs []PickRequest
}

func (p *requestPicker) Pick(_ context.Context, req PickRequest) (Lease, error) {
	p.mu.Lock()
	p.reqs = append(p.reqs, req)
	p.mu.Unlock()
	return nil, errors.New("no server")
}

// TestPickRequest: a pick names the user, the client, the address the
// client connected to and, on TLS, the SNI name in lower case: what
// routing rules match on.
func TestPickRequest(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	cert := ts.TLS.Certificates[0]
	ts.Close()
	for _, tc := range []struct {
		name string
		sni  string // "" for plaintext
		want string
	}{
		{"plaintext", "", ""},
		{"tls with sni", "Mail.Example.ORG", "mail.example.org"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &requestPicker{}
			fe := Frontend{Handler: relayHandler(p)}
			if tc.sni != "" {
				fe.ImplicitTLS, fe.TLS = true, &tls.Config{Certificates: []tls.Certificate{cert}}
			}
			_, addr := startServer(t, fe)
			var c net.Conn
			var err error
			if tc.sni != "" {
				c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: tc.sni})
			} else {
				c, err = net.Dial("tcp", addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("alice\n"))
			var b [1]byte
			c.Read(b[:]) // the handler's error ends the connection
			p.mu.Lock()
			defer p.mu.Unlock()
			if len(p.reqs) != 1 {
				t.Fatalf("got %d picks, want 1", len(p.reqs))
			}
			r := p.reqs[0]
			local := netip.MustParseAddrPort(addr)
			client := netip.MustParseAddrPort(c.LocalAddr().String())
			if r.User != "alice" || r.SNI != tc.want || r.Local != local || r.Client != client || len(r.Exclude) != 0 {
				t.Errorf("got %+v, want user alice, SNI %q, local %s, client %s", r, tc.want, local, client)
			}
		})
	}
}

// TestInfoBackend: a session's Info names the backend of its lease's
// server, not the frontend's; LMTP names its servers' backends.
func TestInfoBackend(t *testing.T) {
	c := &Conn{fe: &Frontend{Name: "imap"}}
	c.SetLease(fixedLease{Target{Backend: "mail-b", Server: "s1"}})
	if i := c.Info(); i.Backend != "mail-b" || i.Server != "s1" {
		t.Errorf("got backend %q server %q, want mail-b s1", i.Backend, i.Server)
	}
	c.SetServers([]string{"mail-a", "mail-b"}, []string{"mail-a/s1", "mail-b/s1"})
	if i := c.Info(); i.Backend != "mail-a,mail-b" || !strings.Contains(i.Server, "mail-b/s1") {
		t.Errorf("got backend %q server %q, want mail-a,mail-b and both servers", i.Backend, i.Server)
	}
}
