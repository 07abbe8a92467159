//go:build openssl && cgo && linux

package rsasign

import (
	"crypto"
	"crypto/rsa"
	"io"
	"math/big"
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
	if err := load(); err != nil {
		return "go (" + err.Error() + ")"
	}
	return openssl.VersionText()
}

// signer signs with key's copy in OpenSSL.
type signer struct {
	pub  *rsa.PublicKey
	priv *openssl.PrivateKeyRSA
}

func wrap(key crypto.PrivateKey) crypto.Signer {
	k, ok := key.(*rsa.PrivateKey)
	if !ok || len(k.Primes) != 2 || load() != nil {
		return nil // multi-prime keys (RFC 8017 section 3.2) stay in Go
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
	return &signer{pub: &k.PublicKey, priv: priv}
}

func (s *signer) Public() crypto.PublicKey { return s.pub }

// Sign signs digest as crypto/tls asks: RSASSA-PSS when opts is
// *rsa.PSSOptions (TLS 1.3 always, RFC 8446 section 4.2.3), PKCS #1 v1.5
// otherwise (RFC 8017 sections 8.1 and 8.2). The salt length keeps Go's
// meaning: rsa.PSSSaltLengthEqualsHash (-1) is OpenSSL's
// RSA_PSS_SALTLEN_DIGEST, and the library maps rsa.PSSSaltLengthAuto. The
// randomness is OpenSSL's own (rand is ignored), as crypto/tls's default
// rand would be the system's anyway.
func (s *signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if pss, ok := opts.(*rsa.PSSOptions); ok {
		return openssl.SignRSAPSS(s.priv, pss.HashFunc(), digest, pss.SaltLength)
	}
	return openssl.SignRSAPKCS1v15(s.priv, opts.HashFunc(), digest)
}
