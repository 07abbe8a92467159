package tlsutil

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// testTimeout bounds every network step of a test so a broken handshake
// fails the test instead of hanging it. It is not a timing assertion.
const testTimeout = 10 * time.Second

// writeCert writes a self-signed certificate for names into dir and returns
// its files.
func writeCert(t *testing.T, dir string, names ...string) CertFiles {
	t.Helper()
	cert, key, err := WriteSelfSigned(dir, names...)
	if err != nil {
		t.Fatalf("WriteSelfSigned(%v): %v", names, err)
	}
	return CertFiles{Cert: cert, Key: key}
}

// leafOf returns the DER bytes of the leaf in a PEM certificate file.
func leafOf(t *testing.T, f CertFiles) []byte {
	t.Helper()
	c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatalf("load %s: %v", f.Cert, err)
	}
	return c.Certificate[0]
}

// handshakeResult is what one loopback handshake produced.
type handshakeResult struct {
	leaf      *x509.Certificate // certificate the server presented
	serverSNI string            // server name the server saw
	version   uint16
	curve     tls.CurveID // the key exchange group negotiated
}

// handshake accepts one TLS connection on 127.0.0.1 with serverCfg, dials it
// with clientCfg, and returns what the client saw. The server side uses
// Handshake, so every test exercises it.
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) (handshakeResult, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })

	type serverResult struct {
		sni string
		err error
	}
	done := make(chan serverResult, 1)
	go serveOneHandshake(ln, serverCfg, func(sni string, err error) { done <- serverResult{sni, err} })

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	conn := tls.Client(raw, clientCfg)
	cerr := Handshake(ctx, conn, testTimeout)
	if cerr != nil {
		raw.Close() // unblock the server side
	}
	sr := <-done
	if cerr != nil {
		return handshakeResult{}, cerr
	}
	if sr.err != nil {
		return handshakeResult{}, sr.err
	}
	st := conn.ConnectionState()
	return handshakeResult{leaf: st.PeerCertificates[0], serverSNI: sr.sni, version: st.Version, curve: st.CurveID}, nil
}

// serveOneHandshake accepts one connection from ln, runs the server side of
// the TLS handshake and reports the result. It exits after one connection or
// when ln is closed.
func serveOneHandshake(ln net.Listener, cfg *tls.Config, report func(sni string, err error)) {
	c, err := ln.Accept()
	if err != nil {
		report("", err)
		return
	}
	defer c.Close()
	tc := tls.Server(c, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	err = Handshake(ctx, tc, testTimeout)
	report(tc.ConnectionState().ServerName, err)
}

// insecureClient returns a client config that accepts any certificate and
// sends serverName as SNI (none when empty).
func insecureClient(serverName string) *tls.Config {
	return &tls.Config{ServerName: serverName, InsecureSkipVerify: true}
}

func TestServerSNI(t *testing.T) {
	dir := t.TempDir()
	def := writeCert(t, dir, "default.test")
	mail := writeCert(t, dir, "mail.example.com", "imap.example.com")
	wild := writeCert(t, dir, "*.example.com")
	other := writeCert(t, dir, "*.other.test", "exact.other.test")
	srv, err := NewServer(ServerOptions{Certs: []CertFiles{def, mail, wild, other}})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}

	tests := []struct {
		name string
		sni  string
		want CertFiles
	}{
		{"exact first name", "mail.example.com", mail},
		{"exact second name", "imap.example.com", mail},
		{"exact is case-insensitive", "IMAP.Example.COM", mail},
		{"exact beats wildcard", "exact.other.test", other},
		{"wildcard one label", "pop3.example.com", wild},
		{"wildcard in same cert as exact", "any.other.test", other},
		{"wildcard does not match two labels", "a.b.example.com", def},
		{"wildcard does not match apex", "example.com", def},
		{"unknown name gets default", "unknown.test", def},
		{"default by its own name", "default.test", def},
		{"no SNI gets default", "", def},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := handshake(t, srv.Config(), insecureClient(tt.sni))
			if err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if res.serverSNI != tt.sni {
				t.Errorf("server saw SNI %q, want %q", res.serverSNI, tt.sni)
			}
			if !bytes.Equal(res.leaf.Raw, leafOf(t, tt.want)) {
				t.Errorf("got certificate for %v, want %s", res.leaf.DNSNames, tt.want.Cert)
			}
		})
	}
}

// TestServerCurves: with Curves set, a client that offers Go's default
// groups (the post-quantum hybrid first) gets one of the configured ones;
// without, the hybrid.
func TestServerCurves(t *testing.T) {
	dir := t.TempDir()
	cert := writeCert(t, dir, "a.test")
	for _, tt := range []struct {
		curves []tls.CurveID
		want   tls.CurveID
	}{
		{nil, tls.X25519MLKEM768},
		{[]tls.CurveID{tls.X25519, tls.CurveP256}, tls.X25519},
		{[]tls.CurveID{tls.CurveP256}, tls.CurveP256},
	} {
		srv, err := NewServer(ServerOptions{Certs: []CertFiles{cert}, Curves: tt.curves})
		if err != nil {
			t.Fatal(err)
		}
		res, err := handshake(t, srv.Config(), insecureClient("a.test"))
		if err != nil {
			t.Fatalf("curves %v: handshake: %v", tt.curves, err)
		}
		if res.curve != tt.want {
			t.Errorf("curves %v: negotiated %v, want %v", tt.curves, res.curve, tt.want)
		}
	}
}

// writeRSACert writes a self-signed RSA 2048 certificate for names.
func writeRSACert(t *testing.T, dir string, names ...string) CertFiles {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	f := CertFiles{Cert: filepath.Join(dir, names[0]+"-rsa.pem"), Key: filepath.Join(dir, names[0]+"-rsa.key")}
	if err := os.WriteFile(f.Cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Key, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestServerECDSAAndRSA: with an RSA and an ECDSA certificate for the same
// name, listed RSA first, a client that supports ECDSA gets the ECDSA one
// (the cheaper handshake) and a TLS 1.2 client with RSA cipher suites
// only gets the RSA one; a name only the RSA certificate covers gets it.
func TestServerECDSAAndRSA(t *testing.T) {
	dir := t.TempDir()
	rsaCert := writeRSACert(t, dir, "mail.test", "rsa-only.test")
	ecCert := writeCert(t, dir, "mail.test")
	srv, err := NewServer(ServerOptions{Certs: []CertFiles{rsaCert, ecCert}})
	if err != nil {
		t.Fatal(err)
	}
	rsaOnly := insecureClient("mail.test")
	rsaOnly.MaxVersion = tls.VersionTLS12
	rsaOnly.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
	for _, tt := range []struct {
		name   string
		client *tls.Config
		want   CertFiles
	}{
		{"ECDSA-capable client", insecureClient("mail.test"), ecCert},
		{"RSA-only client", rsaOnly, rsaCert},
		{"name of the RSA certificate only", insecureClient("rsa-only.test"), rsaCert},
	} {
		res, err := handshake(t, srv.Config(), tt.client)
		if err != nil {
			t.Fatalf("%s: handshake: %v", tt.name, err)
		}
		if !bytes.Equal(res.leaf.Raw, leafOf(t, tt.want)) {
			t.Errorf("%s: got the certificate of %s, want %s", tt.name, res.leaf.PublicKeyAlgorithm, tt.want.Cert)
		}
	}
}

func TestServerConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	srv, err := NewServer(ServerOptions{Certs: []CertFiles{writeCert(t, dir, "a.test")}})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	cfg := srv.Config()
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion: got %#x, want %#x", cfg.MinVersion, tls.VersionTLS12)
	}
	if len(cfg.NextProtos) != 0 {
		t.Errorf("NextProtos: got %v, want none", cfg.NextProtos)
	}
	if srv.Config() == cfg {
		t.Errorf("Config returned the same *tls.Config twice, want a fresh one per call")
	}

	// A client capped below the minimum is refused.
	client := insecureClient("a.test")
	client.MaxVersion = tls.VersionTLS11
	client.MinVersion = tls.VersionTLS10
	if _, err := handshake(t, cfg, client); err == nil {
		t.Errorf("TLS 1.1 client: got successful handshake, want refusal")
	}

	res, err := handshake(t, cfg, insecureClient("a.test"))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if res.version != tls.VersionTLS13 {
		t.Errorf("negotiated %s, want TLSv1.3", VersionName(res.version))
	}
}

func TestNewServerErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeCert(t, dir, "good.test")
	tests := []struct {
		name    string
		opts    ServerOptions
		wantErr error
	}{
		{"no certificates", ServerOptions{}, ErrNoCertificates},
		{"missing file", ServerOptions{Certs: []CertFiles{{Cert: filepath.Join(dir, "nope.crt"), Key: good.Key}}}, os.ErrNotExist},
		{"cert and key swapped", ServerOptions{Certs: []CertFiles{{Cert: good.Key, Key: good.Cert}}}, nil},
		{"bad min version", ServerOptions{Certs: []CertFiles{good}, MinVersion: 0x0300}, ErrUnknownVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := NewServer(tt.opts)
			if err == nil {
				t.Fatalf("got server %v, want error", srv)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("got error %v, want one wrapping %v", err, tt.wantErr)
			}
		})
	}
}

func TestServerReload(t *testing.T) {
	dir := t.TempDir()
	files := writeCert(t, dir, "mail.test")
	oldLeaf := leafOf(t, files)
	srv, err := NewServer(ServerOptions{Certs: []CertFiles{files}})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	cfg := srv.Config() // taken before the reloads: must follow them

	served := func(t *testing.T) []byte {
		t.Helper()
		res, err := handshake(t, cfg, insecureClient("mail.test"))
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		return res.leaf.Raw
	}

	t.Run("broken file keeps old certificate", func(t *testing.T) {
		if err := os.WriteFile(files.Cert, []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		err := srv.Reload()
		if err == nil {
			t.Fatalf("Reload: got nil error, want one for the broken file")
		}
		if !bytes.Equal(served(t), oldLeaf) {
			t.Errorf("after failed reload: got a different certificate, want the old one")
		}
	})

	t.Run("missing key keeps old certificate", func(t *testing.T) {
		writeCert(t, dir, "mail.test")
		if err := os.Remove(files.Key); err != nil {
			t.Fatal(err)
		}
		if err := srv.Reload(); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("Reload: got %v, want an error wrapping os.ErrNotExist", err)
		}
		if !bytes.Equal(served(t), oldLeaf) {
			t.Errorf("after failed reload: got a different certificate, want the old one")
		}
	})

	t.Run("new files are picked up", func(t *testing.T) {
		fresh := writeCert(t, dir, "mail.test", "new.test")
		newLeaf := leafOf(t, fresh)
		if bytes.Equal(newLeaf, oldLeaf) {
			t.Fatal("test setup: new certificate equals the old one")
		}
		if err := srv.Reload(); err != nil {
			t.Fatalf("Reload: %v", err)
		}
		if got := served(t); !bytes.Equal(got, newLeaf) {
			t.Errorf("after reload: got the old certificate, want the new one")
		}
		res, err := handshake(t, cfg, insecureClient("new.test"))
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if !slices.Contains(res.leaf.DNSNames, "new.test") {
			t.Errorf("after reload: got names %v, want new.test among them", res.leaf.DNSNames)
		}
	})
}

// TestServerReloadConcurrent runs handshakes while reloading, for the race
// detector.
func TestServerReloadConcurrent(t *testing.T) {
	dir := t.TempDir()
	files := writeCert(t, dir, "race.test")
	srv, err := NewServer(ServerOptions{Certs: []CertFiles{files}})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	done := make(chan struct{})
	go reloadLoop(srv, 20, done)
	for range 5 {
		if _, err := handshake(t, srv.Config(), insecureClient("race.test")); err != nil {
			t.Errorf("handshake during reloads: %v", err)
		}
	}
	<-done
}

// reloadLoop reloads srv n times and closes done. It exits after n reloads.
func reloadLoop(srv *Server, n int, done chan<- struct{}) {
	defer close(done)
	for range n {
		_ = srv.Reload()
	}
}

func TestNewClientConfig(t *testing.T) {
	dir := t.TempDir()
	backend := writeCert(t, dir, "backend.test", "127.0.0.1")
	stranger := writeCert(t, filepath.Join(mkdir(t, dir, "stranger")), "backend.test")
	emptyCA := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(emptyCA, []byte("no pem here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := NewServer(ServerOptions{Certs: []CertFiles{backend}})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}

	tests := []struct {
		name          string
		opts          ClientOptions
		wantConfigErr error // from NewClientConfig
		wantHandshake bool
	}{
		{"verify against the right CA", ClientOptions{Verify: true, CAFile: backend.Cert, ServerName: "backend.test"}, nil, true},
		{"verify an IP name", ClientOptions{Verify: true, CAFile: backend.Cert, ServerName: "127.0.0.1"}, nil, true},
		{"verify wrong name", ClientOptions{Verify: true, CAFile: backend.Cert, ServerName: "other.test"}, nil, false},
		{"verify against another CA", ClientOptions{Verify: true, CAFile: stranger.Cert, ServerName: "backend.test"}, nil, false},
		{"no verify accepts any CA", ClientOptions{CAFile: stranger.Cert, ServerName: "backend.test"}, nil, true},
		{"no verify without CA file", ClientOptions{ServerName: "backend.test"}, nil, true},
		{"missing CA file", ClientOptions{Verify: true, CAFile: filepath.Join(dir, "missing.pem")}, os.ErrNotExist, false},
		{"CA file without certificates", ClientOptions{Verify: true, CAFile: emptyCA}, ErrNoCACertificates, false},
		{"bad min version", ClientOptions{MinVersion: 1}, ErrUnknownVersion, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := NewClientConfig(tt.opts)
			if tt.wantConfigErr != nil {
				if !errors.Is(err, tt.wantConfigErr) {
					t.Fatalf("NewClientConfig: got error %v, want one wrapping %v", err, tt.wantConfigErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewClientConfig: %v", err)
			}
			if cfg.MinVersion != tls.VersionTLS12 {
				t.Errorf("MinVersion: got %#x, want %#x", cfg.MinVersion, tls.VersionTLS12)
			}
			_, err = handshake(t, srv.Config(), cfg)
			if got := err == nil; got != tt.wantHandshake {
				t.Errorf("handshake succeeded: got %v (err %v), want %v", got, err, tt.wantHandshake)
			}
		})
	}
}

// mkdir creates dir/name and returns it.
func mkdir(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// deadlineRecorder is a net.Conn that remembers every deadline set on it.
type deadlineRecorder struct {
	net.Conn
	deadlines []time.Time
}

func (d *deadlineRecorder) SetDeadline(t time.Time) error {
	d.deadlines = append(d.deadlines, t)
	return d.Conn.SetDeadline(t)
}

func TestHandshakeDeadlines(t *testing.T) {
	dir := t.TempDir()
	srv, err := NewServer(ServerOptions{Certs: []CertFiles{writeCert(t, dir, "a.test")}})
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	ctxDeadline := time.Now().Add(time.Hour)
	tests := []struct {
		name    string
		ctx     func() (context.Context, context.CancelFunc)
		timeout time.Duration
		// wantCtxDeadline: the handshake deadline is the context one, not now+timeout
		wantCtxDeadline bool
	}{
		{"timeout wins", func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), ctxDeadline)
		}, time.Minute, false},
		{"context deadline wins", func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), ctxDeadline)
		}, 2 * time.Hour, true},
		{"zero timeout is the default", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatalf("listen: %v", err)
			}
			t.Cleanup(func() { ln.Close() })
			done := make(chan error, 1)
			go serveOneHandshake(ln, srv.Config(), func(_ string, err error) { done <- err })
			raw, err := net.DialTimeout("tcp", ln.Addr().String(), testTimeout)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			t.Cleanup(func() { raw.Close() })
			rec := &deadlineRecorder{Conn: raw}
			ctx, cancel := tt.ctx()
			defer cancel()
			timeout := tt.timeout
			if timeout == 0 {
				timeout = DefaultHandshakeTimeout
			}
			before := time.Now()
			if err := Handshake(ctx, tls.Client(rec, insecureClient("a.test")), tt.timeout); err != nil {
				t.Fatalf("Handshake: %v", err)
			}
			after := time.Now()
			if err := <-done; err != nil {
				t.Fatalf("server Handshake: %v", err)
			}
			if len(rec.deadlines) != 2 {
				t.Fatalf("deadlines set: got %v, want two (set, then clear)", rec.deadlines)
			}
			first, last := rec.deadlines[0], rec.deadlines[1]
			if tt.wantCtxDeadline {
				if !first.Equal(ctxDeadline) {
					t.Errorf("handshake deadline: got %v, want the context deadline %v", first, ctxDeadline)
				}
			} else if first.Before(before.Add(timeout)) || first.After(after.Add(timeout)) {
				t.Errorf("handshake deadline: got %v, want now+%v", first, timeout)
			}
			if !last.IsZero() {
				t.Errorf("deadline after handshake: got %v, want cleared (zero)", last)
			}
		})
	}
}

func TestHandshakeDeadline(t *testing.T) {
	// A peer that never speaks: the handshake must end at the deadline. The
	// deadline is past already, so no wall-clock time is waited for.
	cConn, sConn := net.Pipe()
	t.Cleanup(func() { cConn.Close(); sConn.Close() })
	server := tls.Server(sConn, &tls.Config{})
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	err := Handshake(ctx, server, time.Hour)
	if err == nil {
		t.Fatal("Handshake with an expired context: got nil error, want a timeout")
	}
}

func TestHandshakeCanceled(t *testing.T) {
	cConn, sConn := net.Pipe()
	t.Cleanup(func() { cConn.Close(); sConn.Close() })
	server := tls.Server(sConn, &tls.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Handshake(ctx, server, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("Handshake with a canceled context: got %v, want context.Canceled", err)
	}
}

func TestVersionName(t *testing.T) {
	tests := []struct {
		v    uint16
		want string
	}{
		{tls.VersionTLS10, "TLSv1"},
		{tls.VersionTLS11, "TLSv1.1"},
		{tls.VersionTLS12, "TLSv1.2"},
		{tls.VersionTLS13, "TLSv1.3"},
		{tls.VersionSSL30, "unknown"}, //nolint:staticcheck // deprecated constant, still a value we must name
		{0, "unknown"},
		{0x0305, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := VersionName(tt.v); got != tt.want {
				t.Errorf("VersionName(%#x): got %q, want %q", tt.v, got, tt.want)
			}
		})
	}
}

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in      string
		want    uint16
		wantErr bool
	}{
		{"1.0", tls.VersionTLS10, false},
		{"1.1", tls.VersionTLS11, false},
		{"1.2", tls.VersionTLS12, false},
		{"1.3", tls.VersionTLS13, false},
		{"TLSv1", tls.VersionTLS10, false},
		{"TLSv1.3", tls.VersionTLS13, false},
		{"tlsv1.2", tls.VersionTLS12, false},
		{"", 0, true},
		{"1", 0, true},
		{"1.4", 0, true},
		{"TLSv1.0", 0, true}, // OpenSSL never spells it so
		{"SSLv3", 0, true},
		{" 1.2", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseVersion(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrUnknownVersion) {
					t.Errorf("ParseVersion(%q): got (%#x, %v), want ErrUnknownVersion", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ParseVersion(%q): got (%#x, %v), want (%#x, nil)", tt.in, got, err, tt.want)
			}
			if back, err := ParseVersion(VersionName(got)); err != nil || back != got {
				t.Errorf("ParseVersion(VersionName(%#x)): got (%#x, %v), want (%#x, nil)", got, back, err, got)
			}
		})
	}
}

func TestSelfSigned(t *testing.T) {
	certPEM, keyPEM, err := SelfSigned("a.test", "*.b.test", "::1")
	if err != nil {
		t.Fatalf("SelfSigned: %v", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("X509KeyPair: %v", err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		leaf, err = x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
	}
	if got, want := leaf.DNSNames, []string{"a.test", "*.b.test"}; !slices.Equal(got, want) {
		t.Errorf("DNSNames: got %v, want %v", got, want)
	}
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("::1")) {
		t.Errorf("IPAddresses: got %v, want [::1]", leaf.IPAddresses)
	}
	if leaf.Subject.CommonName != "a.test" {
		t.Errorf("CommonName: got %q, want %q", leaf.Subject.CommonName, "a.test")
	}
	if leaf.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("key algorithm: got %v, want ECDSA", leaf.PublicKeyAlgorithm)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 364*24*time.Hour || life > 367*24*time.Hour {
		t.Errorf("lifetime: got %v, want about one year", life)
	}

	_, _, err = SelfSigned()
	if err != nil {
		t.Fatalf("SelfSigned(): %v", err)
	}
}

func TestWriteSelfSigned(t *testing.T) {
	dir := t.TempDir()
	cert, key, err := WriteSelfSigned(dir, "*.example.com")
	if err != nil {
		t.Fatalf("WriteSelfSigned: %v", err)
	}
	if want := filepath.Join(dir, "_.example.com.crt"); cert != want {
		t.Errorf("cert file: got %q, want %q", cert, want)
	}
	if want := filepath.Join(dir, "_.example.com.key"); key != want {
		t.Errorf("key file: got %q, want %q", key, want)
	}
	st, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("key mode: got %v, want 0600", perm)
	}
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		t.Errorf("LoadX509KeyPair: %v", err)
	}
	if _, _, err := WriteSelfSigned(filepath.Join(dir, "missing"), "x.test"); err == nil {
		t.Errorf("WriteSelfSigned into a missing directory: got nil error, want one")
	}
}

// countingSigner signs with the key it wraps and counts its signatures.
type countingSigner struct {
	crypto.Signer
	signs *atomic.Int32
}

func (s countingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	s.signs.Add(1)
	return s.Signer.Sign(r, digest, opts)
}

// ServerOptions.WrapKey replaces every loaded key, at NewServer and at each
// Reload, and the handshake signs with what it returned.
func TestServerWrapKey(t *testing.T) {
	dir := t.TempDir()
	files := writeRSACert(t, dir, "mail.example.org")
	var wrapped, signs atomic.Int32
	srv, err := NewServer(ServerOptions{Certs: []CertFiles{files}, WrapKey: func(k crypto.PrivateKey) crypto.PrivateKey {
		wrapped.Add(1)
		return countingSigner{k.(crypto.Signer), &signs}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, srv.Config(), insecureClient("mail.example.org")); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, srv.Config(), insecureClient("mail.example.org")); err != nil {
		t.Fatalf("handshake after reload: %v", err)
	}
	if wrapped.Load() != 2 || signs.Load() != 2 {
		t.Errorf("got %d keys wrapped and %d signatures by the wrapper, want 2 and 2 (one each at start and reload)", wrapped.Load(), signs.Load())
	}
}
