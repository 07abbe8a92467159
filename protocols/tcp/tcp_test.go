package tcp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/maildirector/maildirector/proxy"
)

// startGreeter runs a server that reads an optional PROXY header, greets
// with "hello <name>", then echoes lines until EOF.
func startGreeter(t *testing.T, name string, wantProxy bool, headers chan<- *proxyproto.Header) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go greetLoop(ln, name, wantProxy, headers)
	return ln.Addr().String()
}

// greetLoop accepts until the listener is closed.
func greetLoop(ln net.Listener, name string, wantProxy bool, headers chan<- *proxyproto.Header) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go greet(c, name, wantProxy, headers)
	}
}

// greet serves one connection until EOF.
func greet(c net.Conn, name string, wantProxy bool, headers chan<- *proxyproto.Header) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if wantProxy {
		h, err := proxyproto.Read(br)
		if err != nil {
			return
		}
		headers <- h
	}
	io.WriteString(c, "hello "+name+"\n")
	io.Copy(c, br)
}

type testPicker struct {
	targets []proxy.Target
	mu      sync.Mutex
	failed  []string
	users   []string
}

func (p *testPicker) Pick(_ context.Context, user string, _ netip.AddrPort, exclude []string) (proxy.Lease, error) {
	p.mu.Lock()
	p.users = append(p.users, user)
	p.mu.Unlock()
	for _, t := range p.targets {
		if !slices.Contains(exclude, t.Server) {
			return &testLease{p: p, t: t}, nil
		}
	}
	return nil, errors.New("no usable server")
}

type testLease struct {
	p *testPicker
	t proxy.Target
}

func (l *testLease) Target() proxy.Target { return l.t }
func (l *testLease) Established()         {}
func (l *testLease) Release()             {}
func (l *testLease) Failed(error) {
	l.p.mu.Lock()
	l.p.failed = append(l.p.failed, l.t.Server)
	l.p.mu.Unlock()
}

func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func startFrontend(t *testing.T, p proxy.Picker, retries int) string {
	t.Helper()
	srv := proxy.New(proxy.Options{})
	fe := proxy.Frontend{
		Name: "tcp", Protocol: "tcp", Addrs: []string{"127.0.0.1:0"},
		Handler: New(Options{Picker: p, Retries: retries}),
	}
	if err := srv.Configure([]proxy.Frontend{fe}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.ListenerAddr("tcp").String()
}

func dial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func TestRelay(t *testing.T) {
	tests := []struct {
		name    string
		targets func(t *testing.T, headers chan *proxyproto.Header) []proxy.Target
		want    string
		failed  []string
		proxied bool
	}{
		{"one server with PROXY v2", func(t *testing.T, h chan *proxyproto.Header) []proxy.Target {
			return []proxy.Target{{Server: "a", Address: startGreeter(t, "a", true, h), Proxy: proxy.ProxyV2}}
		}, "hello a", nil, true},
		{"first down, next one", func(t *testing.T, h chan *proxyproto.Header) []proxy.Target {
			return []proxy.Target{
				{Server: "dead", Address: deadAddr(t)},
				{Server: "b", Address: startGreeter(t, "b", false, h)},
			}
		}, "hello b", []string{"dead"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			headers := make(chan *proxyproto.Header, 1)
			p := &testPicker{targets: tt.targets(t, headers)}
			c, br := dial(t, startFrontend(t, p, 1))
			io.WriteString(c, "early bytes\n") // sent before the server is connected
			if got, _ := br.ReadString('\n'); strings.TrimSpace(got) != tt.want {
				t.Fatalf("greeting: got %q, want %q", got, tt.want)
			}
			if got, _ := br.ReadString('\n'); got != "early bytes\n" {
				t.Fatalf("echo: got %q, want the early bytes", got)
			}
			if tt.proxied {
				h := <-headers // sent before the greeting, so already there
				src, _, _ := h.TCPAddrs()
				if src.String() != c.LocalAddr().String() {
					t.Errorf("PROXY source: got %s, want %s", src, c.LocalAddr())
				}
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if !slices.Equal(p.failed, tt.failed) {
				t.Errorf("failed servers: got %q, want %q", p.failed, tt.failed)
			}
			if slices.ContainsFunc(p.users, func(u string) bool { return u != "" }) {
				t.Errorf("picked for users %q, want only empty", p.users)
			}
		})
	}
}

func TestNoServerCloses(t *testing.T) {
	p := &testPicker{targets: []proxy.Target{{Server: "dead", Address: deadAddr(t)}}}
	_, br := dial(t, startFrontend(t, p, 2))
	if got, err := br.ReadString('\n'); err == nil {
		t.Fatalf("got %q, want the connection closed", got)
	}
}
