package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"
)

// echoServer accepts connections, optionally reads a PROXY header (recorded),
// and echoes everything back.
type echoServer struct {
	ln      net.Listener
	mu      sync.Mutex
	headers []*proxyproto.Header
}

func startEcho(t *testing.T, wantProxy bool) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echoServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go e.serve(c, wantProxy)
		}
	}()
	return e
}

func (e *echoServer) serve(c net.Conn, wantProxy bool) {
	defer c.Close()
	br := bufio.NewReader(c)
	if wantProxy {
		h, err := proxyproto.Read(br)
		if err != nil {
			return
		}
		e.mu.Lock()
		e.headers = append(e.headers, h)
		e.mu.Unlock()
	}
	io.Copy(c, br)
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

type fixedLease struct{ t Target }

func (l fixedLease) Target() Target { return l.t }
func (fixedLease) User() string     { return "" }
func (fixedLease) Established()     {}
func (fixedLease) Answered()        {}
func (fixedLease) Failed(error)     {}
func (fixedLease) Release()         {}

type fixedPicker struct{ t Target }

func (p fixedPicker) Pick(context.Context, PickRequest) (Lease, error) {
	return fixedLease{p.t}, nil
}

// relayHandler reads one line (the "login"), connects and relays.
func relayHandler(p Picker) Handler {
	return HandlerFunc(func(ctx context.Context, c *Conn) error {
		line, err := c.Reader().ReadString('\n')
		if err != nil {
			return err
		}
		c.SetUser(strings.TrimSpace(line))
		srv, from, err := c.Connect(ctx, p, strings.TrimSpace(line), func(ctx context.Context, s net.Conn, t Target) ([]byte, error) {
			return []byte("ok\n"), nil
		})
		if err != nil {
			return err
		}
		return c.Relay(srv, from)
	})
}

func startServer(t *testing.T, fe Frontend) (*Server, string) {
	t.Helper()
	s := New(Options{})
	fe.Addrs = []string{"127.0.0.1:0"}
	if fe.Name == "" {
		fe.Name = "test"
	}
	if err := s.Configure([]Frontend{fe}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, s.ListenerAddr(fe.Name).String()
}

func TestRelayRoundTrip(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	cert := ts.TLS.Certificates[0]
	ts.Close()

	tests := []struct {
		name     string
		implicit bool
		mode     ProxyMode
	}{
		{name: "plain both legs", mode: ProxyV2},
		{name: "tls client leg", implicit: true, mode: ProxyV2SSL},
		{name: "no proxy header", mode: ProxyNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			echo := startEcho(t, tt.mode != ProxyNone)
			fe := Frontend{
				Handler:     relayHandler(fixedPicker{Target{Server: "echo", Address: echo.ln.Addr().String(), Proxy: tt.mode}}),
				ImplicitTLS: tt.implicit,
			}
			if tt.implicit {
				fe.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
			}
			srv, addr := startServer(t, fe)
			var c net.Conn
			var err error
			if tt.implicit {
				c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, ServerName: "mail.example.org", NextProtos: []string{"h2", "imap"}})
			} else {
				c, err = net.Dial("tcp", addr)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			payload := make([]byte, 3<<20)
			rand.Read(payload)
			go func() {
				c.Write([]byte("alice\n"))
				c.Write(payload)
			}()
			br := bufio.NewReader(c)
			line, err := br.ReadString('\n')
			if err != nil || line != "ok\n" {
				t.Fatalf("got %q, %v; want ok", line, err)
			}
			got := make([]byte, len(payload))
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.ReadFull(br, got); err != nil {
				t.Fatalf("read echo: %v", err)
			}
			if !bytes.Equal(got, payload) {
				t.Fatal("echoed payload differs")
			}
			if n := len(srv.Sessions()); n != 1 {
				t.Errorf("got %d live sessions, want 1", n)
			}
			if tt.mode != ProxyNone {
				echo.mu.Lock()
				h := echo.headers[0]
				echo.mu.Unlock()
				src, _, _ := h.TCPAddrs()
				if src.String() != c.LocalAddr().String() {
					t.Errorf("PROXY source: got %s, want %s", src, c.LocalAddr())
				}
				tlvs, _ := h.TLVs()
				ssl, found := tlvparse.FindSSL(tlvs)
				if found != tt.implicit {
					t.Errorf("SSL TLV present: got %v, want %v", found, tt.implicit)
				}
				if found && !ssl.ClientSSL() {
					t.Error("SSL TLV without the client bit")
				}
				if found {
					if v, _ := ssl.SSLVersion(); v != "TLSv1.3" {
						t.Errorf("SSL version sub-TLV: got %q, want TLSv1.3", v)
					}
					var authority string
					for _, tlv := range tlvs {
						if tlv.Type == proxyproto.PP2_TYPE_AUTHORITY {
							authority = string(tlv.Value)
						}
						if tlv.Type == proxyproto.PP2_TYPE_ALPN {
							t.Errorf("ALPN TLV sent (%q): Dovecot drops connections whose ALPN is not the service's", tlv.Value)
						}
					}
					if authority != "mail.example.org" {
						t.Errorf("AUTHORITY TLV: got %q, want the client's SNI mail.example.org", authority)
					}
				}
			}
			// Half-close from the client ends the session once the echo closes too.
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			if _, err := io.Copy(io.Discard, br); err != nil {
				t.Fatalf("drain: %v", err)
			}
			waitFor(t, func() bool { return len(srv.Sessions()) == 0 })
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met in 5s")
}
