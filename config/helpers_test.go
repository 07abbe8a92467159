package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate and its key into a temporary
// directory and returns their paths.
func writeCert(t testing.TB) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mail.example.com"},
		DNSNames:     []string{"mail.example.com"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "mail.pem"), filepath.Join(dir, "mail.key")
	writeFile(t, certPath, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, keyPath, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
	return certPath, keyPath
}

func writeFile(t testing.TB, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatalf("write %s: %v", name, err)
	}
}

// withCert replaces the CERT and KEY placeholders of a test config.
func withCert(t testing.TB, text string) string {
	t.Helper()
	cert, key := writeCert(t)
	return strings.NewReplacer(`"CERT"`, `"`+cert+`"`, `"KEY"`, `"`+key+`"`).Replace(text)
}

// mustParse parses text and fails the test on error.
func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := Parse([]byte(text))
	if err != nil {
		t.Fatalf("Parse: got error\n%v\nwant none", err)
	}
	return c
}

// keyErrors returns the KeyErrors of err by key path.
func keyErrors(t *testing.T, err error) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, e := range Problems(err) {
		var ke *KeyError
		if !errors.As(e, &ke) {
			t.Errorf("problem %q: got %T, want *KeyError", e, e)
			continue
		}
		out[ke.Key] = append(out[ke.Key], ke.Err.Error())
	}
	return out
}
