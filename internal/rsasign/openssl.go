//go:build openssl && cgo && linux

package rsasign

import (
	"crypto"
	"crypto/fips140"
	"crypto/rsa"
	"io"
	"math/big"
	"runtime"
	"sync"

	"github.com/golang-fips/openssl/v2"
	"github.com/golang-fips/openssl/v2/bbig"
)

// libcryptos are the libcrypto sonames tried, newest first.
var libcryptos = []string{"libcrypto.so.3", "libcrypto.so.1.1"}

var load = sync.OnceValue(func() error {
	for _, name := range libcryptos {
		// openssl.Init takes effect once, failing or not: ask first
		// whether the library can be opened at all.
		if ok, _ := openssl.CheckVersion(name); ok {
			return openssl.Init(name)
		}
	}
	return errNoLibcrypto
})

type loadError string

func (e loadError) Error() string { return string(e) }

const errNoLibcrypto = loadError("no libcrypto.so.3 or libcrypto.so.1.1 could be loaded")

func engine() string {
	if fips140.Enabled() {
		return "go (Go's FIPS 140-3 mode is on: signatures stay in its module)"
	}
	if err := load(); err != nil {
		return "go (" + err.Error() + ")"
	}
	return openssl.VersionText()
}

// signer signs with key's copy in OpenSSL, and keeps key for what
// OpenSSL is not asked to do.
type signer struct {
	key  *rsa.PrivateKey
	priv *openssl.PrivateKeyRSA
}

// inOpenSSL bounds the signatures in OpenSSL at once to GOMAXPROCS: each
// holds an OS thread in cgo for its whole length (300 µs for RSA 2048),
// and a burst of handshakes would otherwise grow a thread per signature.
var inOpenSSL = make(chan struct{}, runtime.GOMAXPROCS(0))

func wrap(key crypto.PrivateKey) crypto.Signer {
	k, ok := key.(*rsa.PrivateKey)
	if !ok || len(k.Primes) != 2 || fips140.Enabled() || load() != nil {
		// Multi-prime keys (RFC 8017 section 3.2) and Go's FIPS mode
		// (whose module must make the signatures) stay in Go.
		return nil
	}
	p, q := k.Primes[0], k.Primes[1]
	dp, dq, qinv := k.Precomputed.Dp, k.Precomputed.Dq, k.Precomputed.Qinv
	if dp == nil || dq == nil || qinv == nil {
		// Not a key crypto/x509 parsed (it precomputes them): without
		// the CRT values OpenSSL would sign four times slower than with.
		return nil
	}
	priv, err := openssl.NewPrivateKeyRSA(bbig.Enc(k.N), bbig.Enc(big.NewInt(int64(k.E))), bbig.Enc(k.D),
		bbig.Enc(p), bbig.Enc(q), bbig.Enc(dp), bbig.Enc(dq), bbig.Enc(qinv))
	if err != nil {
		return nil
	}
	return &signer{key: k, priv: priv}
}

func (s *signer) Public() crypto.PublicKey { return &s.key.PublicKey }

// Sign signs digest as crypto/tls asks: RSASSA-PSS when opts is
// *rsa.PSSOptions (TLS 1.3 always, RFC 8446 section 4.2.3), PKCS #1 v1.5
// otherwise (RFC 8017 sections 8.1 and 8.2). The salt length keeps Go's
// meaning: rsa.PSSSaltLengthEqualsHash (-1) is OpenSSL's
// RSA_PSS_SALTLEN_DIGEST, and the library maps rsa.PSSSaltLengthAuto. The
// randomness is OpenSSL's own (rand is ignored), as crypto/tls's default
// rand would be the system's anyway. What OpenSSL refuses (a policy that
// forbids SHA-1 or TLS 1.0's MD5+SHA1, say) Go signs, as it would without
// this package.
func (s *signer) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	inOpenSSL <- struct{}{}
	sig, err := signInOpenSSL(s.priv, digest, opts)
	<-inOpenSSL
	if err != nil {
		return s.key.Sign(rand, digest, opts)
	}
	return sig, nil
}

// signInOpenSSL is the signature by OpenSSL (a variable for the test of
// the fallback).
var signInOpenSSL = func(priv *openssl.PrivateKeyRSA, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if pss, ok := opts.(*rsa.PSSOptions); ok {
		return openssl.SignRSAPSS(priv, pss.HashFunc(), digest, pss.SaltLength)
	}
	return openssl.SignRSAPKCS1v15(priv, opts.HashFunc(), digest)
}

// Decrypt is Go's: crypto/tls decrypts with the key for the RSA key
// exchange of TLS_RSA_* suites (RFC 5246 section 7.4.7.1), which an
// operator may turn on for old clients, and needs a crypto.Decrypter.
func (s *signer) Decrypt(rand io.Reader, msg []byte, opts crypto.DecrypterOpts) ([]byte, error) {
	return s.key.Decrypt(rand, msg, opts)
}
