//go:build openssl && cgo && linux

package main

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/maildirector/maildirector/config"
)

// writeRSAFiles writes a self-signed RSA 2048 certificate for localhost
// and its PKCS #8 key into dir.
func writeRSAFiles(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "rsa.crt"), filepath.Join(dir, "rsa.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// In the openssl build, the RSA keys of a frontend's certificates and of
// the stats listener's sign in OpenSSL: neither is Go's *rsa.PrivateKey.
func TestRSAKeysSignInOpenSSL(t *testing.T) {
	certFile, keyFile := writeRSAFiles(t, t.TempDir())
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
[frontend.imaps]
protocol = "imap"
bind = ["127.0.0.1:1993"]
backend = "d"
[frontend.imaps.tls]
mode = "implicit"
[[frontend.imaps.tls.cert]]
cert = %q
key = %q
[backend.d]
[[backend.d.server]]
name = "s"
address = "127.0.0.1"
`, certFile, keyFile)))
	if err != nil {
		t.Fatal(err)
	}
	fe, err := frontendOptions(cfg.Frontends["imaps"], 0)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := fe.TLS.GetCertificate(&tls.ClientHelloInfo{ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cert.PrivateKey.(*rsa.PrivateKey); ok {
		t.Error("the frontend's RSA key is Go's *rsa.PrivateKey, want the OpenSSL signer")
	}
	st, err := statsTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.Certificates[0].PrivateKey.(*rsa.PrivateKey); ok {
		t.Error("the stats listener's RSA key is Go's *rsa.PrivateKey, want the OpenSSL signer")
	}
}
