package tcp

import (
	"bufio"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/proxy/proxytest"
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

func startFrontend(t *testing.T, p proxy.Picker, retries int) string {
	t.Helper()
	return proxytest.Serve(t, proxy.Frontend{Name: "tcp", Protocol: "tcp", Handler: New(Options{Picker: p}), Retries: retries})
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
				{Server: "dead", Address: proxytest.DeadAddr(t)},
				{Server: "b", Address: startGreeter(t, "b", false, h)},
			}
		}, "hello b", []string{"dead"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			headers := make(chan *proxyproto.Header, 1)
			p := &proxytest.Picker{Targets: tt.targets(t, headers)}
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
			if got := p.Failures(); !slices.Equal(got, tt.failed) {
				t.Errorf("failed servers: got %q, want %q", got, tt.failed)
			}
			if slices.ContainsFunc(p.Users(), func(u string) bool { return u != "" }) {
				t.Errorf("picked for users %q, want only empty", p.Users())
			}
		})
	}
}

func TestNoServerCloses(t *testing.T) {
	p := &proxytest.Picker{Targets: []proxy.Target{{Server: "dead", Address: proxytest.DeadAddr(t)}}}
	_, br := dial(t, startFrontend(t, p, 2))
	if got, err := br.ReadString('\n'); err == nil {
		t.Fatalf("got %q, want the connection closed", got)
	}
}
