package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// selfSignedLifetime is how long a SelfSigned certificate is valid.
const selfSignedLifetime = 365 * 24 * time.Hour

// SelfSigned returns a new self-signed ECDSA P-256 certificate and its
// PKCS #8 private key, both PEM encoded, valid for one year. Each name
// becomes a DNS subject alternative name, or an IP one if it parses as an IP
// address; the first name is also the subject common name. No names means
// "localhost". The certificate is its own CA, so its PEM also works as a
// ClientOptions.CAFile in tests. It is meant for tests and `make demo`.
func SelfSigned(names ...string) (certPEM, keyPEM []byte, err error) {
	if len(names) == 0 {
		names = []string{"localhost"}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("generate serial: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0], Organization: []string{"maildirector self-signed"}},
		NotBefore:             now.Add(-time.Hour), // tolerate clock skew between test hosts
		NotAfter:              now.Add(selfSignedLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return certPEM, keyPEM, nil
}

// WriteSelfSigned writes a SelfSigned certificate into dir as <name>.crt and
// <name>.key (mode 0600), where <name> is the first name with characters
// other than letters, digits, '.', '-' and '_' replaced by '_' (so
// "*.example.com" gives "_.example.com.crt"). Existing files are replaced.
func WriteSelfSigned(dir string, names ...string) (certFile, keyFile string, err error) {
	certPEM, keyPEM, err := SelfSigned(names...)
	if err != nil {
		return "", "", err
	}
	base := "localhost"
	if len(names) > 0 {
		base = fileSafe(names[0])
	}
	certFile = filepath.Join(dir, base+".crt")
	keyFile = filepath.Join(dir, base+".key")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		return "", "", fmt.Errorf("write key: %w", err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		return "", "", fmt.Errorf("write certificate: %w", err)
	}
	return certFile, keyFile, nil
}

// fileSafe maps a host name to a file name component.
func fileSafe(name string) string {
	s := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '_'
	}, name)
	if s == "" || s == "." || s == ".." {
		return "cert"
	}
	return s
}
