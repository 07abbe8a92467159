package checks

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"

	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// fakeServer is a tiny scripted mail server on 127.0.0.1:0. It records every
// line clients send and the PROXY header, if it demands one.
type fakeServer struct {
	t      *testing.T
	ln     net.Listener
	serve  func(*fakeConn)
	proxy  bool        // demand a PROXY header first, as Dovecot's haproxy = yes
	tlsCfg *tls.Config // implicit TLS after the header

	wg      sync.WaitGroup
	mu      sync.Mutex
	lines   []string
	headers []*proxyproto.Header
	remotes []netip.AddrPort
}

// fakeConn is one accepted connection.
type fakeConn struct {
	srv  *fakeServer
	conn net.Conn
	r    *bufio.Reader
}

type fakeOption func(*fakeServer)

func withProxy() fakeOption { return func(f *fakeServer) { f.proxy = true } }

func withTLS(cfg *tls.Config) fakeOption { return func(f *fakeServer) { f.tlsCfg = cfg } }

// startFake listens and serves every connection with serve until the test
// ends; Cleanup closes the listener and waits for the handlers.
func startFake(t *testing.T, serve func(*fakeConn), opts ...fakeOption) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	f := &fakeServer{t: t, ln: ln, serve: serve}
	for _, o := range opts {
		o(f)
	}
	f.wg.Add(1)
	go f.acceptLoop()
	t.Cleanup(func() {
		ln.Close()
		f.wg.Wait()
	})
	return f
}

// acceptLoop runs until the listener is closed.
func (f *fakeServer) acceptLoop() {
	defer f.wg.Done()
	for {
		conn, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.wg.Add(1)
		go f.handle(conn)
	}
}

// handle serves one connection; it returns when serve does, closing conn.
func (f *fakeServer) handle(conn net.Conn) {
	defer f.wg.Done()
	defer conn.Close()
	// Bound every fake conversation so a stuck test fails instead of hanging.
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	if f.proxy {
		h, err := proxyproto.Read(r)
		if err != nil {
			// What Dovecot does: no header, no conversation.
			return
		}
		f.mu.Lock()
		f.headers = append(f.headers, h)
		f.remotes = append(f.remotes, conn.RemoteAddr().(*net.TCPAddr).AddrPort())
		f.mu.Unlock()
	}
	var c net.Conn = conn
	if f.tlsCfg != nil {
		// Bytes buffered after the header belong to the TLS handshake.
		tc := tls.Server(&bufferedConn{Conn: conn, r: r}, f.tlsCfg)
		if err := tc.Handshake(); err != nil {
			return
		}
		defer tc.Close()
		c, r = tc, bufio.NewReader(tc)
	}
	f.serve(&fakeConn{srv: f, conn: c, r: r})
}

// bufferedConn reads through r, which may hold bytes read past the header.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (f *fakeServer) addr() string { return f.ln.Addr().String() }

// saw reports whether a client sent exactly line.
func (f *fakeServer) saw(line string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.lines {
		if l == line {
			return true
		}
	}
	return false
}

func (f *fakeServer) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lines...)
}

func (f *fakeServer) header(i int) *proxyproto.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= len(f.headers) {
		return nil
	}
	return f.headers[i]
}

// send writes each line with CRLF.
func (c *fakeConn) send(lines ...string) {
	for _, l := range lines {
		if _, err := io.WriteString(c.conn, l+"\r\n"); err != nil {
			return
		}
	}
}

// readLine reads and records one line; ok is false at EOF or error.
func (c *fakeConn) readLine() (string, bool) {
	line, err := c.r.ReadString('\n')
	if err != nil {
		return "", false
	}
	line = strings.TrimRight(line, "\r\n")
	c.srv.mu.Lock()
	c.srv.lines = append(c.srv.lines, line)
	c.srv.mu.Unlock()
	return line, true
}

// hang reads (recording) until the client closes: a server that never answers.
func (c *fakeConn) hang() {
	for {
		if _, ok := c.readLine(); !ok {
			return
		}
	}
}

// step is one exchange of a script: the client line must start with want,
// and reply is sent back. A hangReply line stops answering; a closeReply line
// closes the connection.
type step struct {
	want  string
	reply []string
}

const (
	hangReply  = "<hang>"
	closeReply = "<close>"
)

// script serves a fixed conversation: greeting, then steps in order, then
// waits for the client to close. A mismatch fails the test.
func script(t *testing.T, greeting []string, steps ...step) func(*fakeConn) {
	return func(c *fakeConn) {
		if len(greeting) == 1 && greeting[0] == hangReply {
			c.hang()
			return
		}
		c.send(greeting...)
		for _, s := range steps {
			line, ok := c.readLine()
			if !ok {
				t.Errorf("fake: connection ended, want %q", s.want)
				return
			}
			if !strings.HasPrefix(line, s.want) {
				t.Errorf("fake: got %q, want a line starting %q", line, s.want)
				return
			}
			for _, r := range s.reply {
				switch r {
				case hangReply:
					c.hang()
					return
				case closeReply:
					return
				}
				c.send(r)
			}
		}
		c.hang() // until the client closes
	}
}

// selfSigned returns a server config and a client pool for 127.0.0.1.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "fake"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}, pool
}

// refusedAddr returns a loopback address nobody listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
