//go:build openssl && cgo && linux

package rsasign

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/golang-fips/openssl/v2"
)

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func wrapped(t *testing.T, k *rsa.PrivateKey) crypto.Signer {
	t.Helper()
	if e := Engine(); !strings.HasPrefix(e, "OpenSSL ") {
		t.Fatalf("Engine() = %q in the openssl build on a system with libcrypto, want libcrypto's version", e)
	}
	s, ok := Wrap(k).(*signer)
	if !ok {
		t.Fatalf("Wrap(RSA key) = %T, want the OpenSSL signer", Wrap(k))
	}
	if s.Public() != crypto.PublicKey(&k.PublicKey) {
		t.Fatal("the signer's Public is not the key's own public key")
	}
	return s
}

// Every signature crypto/tls asks for verifies with Go's own RSA: PSS with
// the salt as long as the hash (TLS 1.3, and TLS 1.2's rsa_pss_rsae_*),
// PSS with an automatic salt, and PKCS #1 v1.5 (TLS 1.2's rsa_pkcs1_*).
func TestSignaturesVerify(t *testing.T) {
	k := rsaKey(t)
	s := wrapped(t, k)
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		var digest []byte
		switch h {
		case crypto.SHA256:
			d := sha256.Sum256([]byte("maildirector"))
			digest = d[:]
		case crypto.SHA384:
			d := sha512.Sum384([]byte("maildirector"))
			digest = d[:]
		case crypto.SHA512:
			d := sha512.Sum512([]byte("maildirector"))
			digest = d[:]
		}
		for _, salt := range []int{rsa.PSSSaltLengthEqualsHash, rsa.PSSSaltLengthAuto} {
			opts := &rsa.PSSOptions{SaltLength: salt, Hash: h}
			sig, err := s.Sign(rand.Reader, digest, opts)
			if err != nil {
				t.Fatalf("PSS %v salt %d: %v", h, salt, err)
			}
			// Verify with the salt length the signature must have, not
			// auto-detection, so a wrong salt length fails.
			want := salt
			if salt == rsa.PSSSaltLengthAuto {
				want = k.Size() - 2 - h.Size()
			}
			if err := rsa.VerifyPSS(&k.PublicKey, h, digest, sig, &rsa.PSSOptions{SaltLength: want}); err != nil {
				t.Errorf("PSS %v salt %d: Go does not verify OpenSSL's signature: %v", h, salt, err)
			}
		}
		sig, err := s.Sign(rand.Reader, digest, h)
		if err != nil {
			t.Fatalf("PKCS #1 v1.5 %v: %v", h, err)
		}
		if err := rsa.VerifyPKCS1v15(&k.PublicKey, h, digest, sig); err != nil {
			t.Errorf("PKCS #1 v1.5 %v: Go does not verify OpenSSL's signature: %v", h, err)
		}
	}
}

// A key without the CRT values crypto/x509 precomputes, and a multi-prime
// key (RFC 8017 section 3.2), stay in Go.
func TestKeyWithoutPrecomputed(t *testing.T) {
	k := rsaKey(t)
	bare := &rsa.PrivateKey{PublicKey: k.PublicKey, D: k.D, Primes: k.Primes}
	if got := Wrap(bare); got != any(bare) {
		t.Errorf("Wrap(key without CRT values) = %T, want the key itself", got)
	}
	multi, err := rsa.GenerateMultiPrimeKey(rand.Reader, 3, 2048) //nolint:staticcheck // the case under test
	if err != nil {
		t.Fatal(err)
	}
	if got := Wrap(multi); got != any(multi) {
		t.Errorf("Wrap(three-prime key) = %T, want the key itself", got)
	}
}

// A signature OpenSSL refuses is Go's, and still verifies.
func TestFallbackToGo(t *testing.T) {
	k := rsaKey(t)
	s := wrapped(t, k)
	real := signInOpenSSL
	t.Cleanup(func() { signInOpenSSL = real })
	signInOpenSSL = func(*openssl.PrivateKeyRSA, []byte, crypto.SignerOpts) ([]byte, error) {
		return nil, errors.New("refused by policy")
	}
	d := sha256.Sum256([]byte("maildirector"))
	sig, err := s.Sign(rand.Reader, d[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256})
	if err != nil {
		t.Fatalf("Sign with OpenSSL refusing: %v, want Go's signature", err)
	}
	if err := rsa.VerifyPSS(&k.PublicKey, crypto.SHA256, d[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}); err != nil {
		t.Errorf("Go's fallback signature does not verify: %v", err)
	}
}

// A TLS 1.3 and two TLS 1.2 clients each complete a handshake, verifying the
// server's certificate, against a server whose RSA key signs in OpenSSL.
func TestHandshakes(t *testing.T) {
	k := rsaKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mail.test"},
		DNSNames:     []string{"mail.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	s := wrapped(t, k)
	srvCfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: s, Leaf: leaf}}}
	// The third: TLS 1.2 with the RSA key exchange (TLS_RSA_*, which an
	// operator may list for old clients): crypto/tls decrypts with the key.
	rsaKex := []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256}
	for _, c := range []struct {
		v      uint16
		suites []uint16
	}{{tls.VersionTLS13, nil}, {tls.VersionTLS12, nil}, {tls.VersionTLS12, rsaKex}} {
		v := c.v
		srvCfg := srvCfg.Clone()
		srvCfg.CipherSuites = c.suites
		c1, c2 := net.Pipe()
		errc := make(chan error, 1)
		go func() {
			srv := tls.Server(c2, srvCfg)
			errc <- srv.Handshake()
			c2.Close() // not srv.Close: its close_notify would wait on the pipe
		}()
		cl := tls.Client(c1, &tls.Config{RootCAs: roots, ServerName: "mail.test", MinVersion: v, MaxVersion: v, CipherSuites: c.suites})
		if err := cl.Handshake(); err != nil {
			t.Errorf("TLS %x: client handshake: %v", v, err)
		} else if st := cl.ConnectionState(); st.Version != v || (c.suites != nil && st.CipherSuite != c.suites[0]) {
			t.Errorf("negotiated %x %s, want %x %v", st.Version, tls.CipherSuiteName(st.CipherSuite), v, c.suites)
		}
		c1.Close()
		if err := <-errc; err != nil {
			t.Errorf("TLS %x: server handshake: %v", v, err)
		}
	}
}
