// Package rsasign makes the private-key operation of RSA certificates
// cheaper. A full TLS handshake with an RSA certificate is mostly one
// RSA signature by the server (RFC 8446 section 4.4.3, CertificateVerify;
// RFC 5246 section 7.4.3, ServerKeyExchange), and Go's constant-time RSA
// takes about three times OpenSSL's CPU for it (measured on the bench
// machine: 814 µs per RSA-2048 PSS signature in Go 1.26, 282 µs in
// OpenSSL 3.0's `openssl speed rsa2048`), so that HAProxy terminating TLS
// on the same RSA certificate spends less CPU per handshake.
//
// Built with the openssl tag and cgo (`make build-openssl`), Wrap
// returns for an RSA key a crypto.Signer that signs with the system's
// libcrypto, loaded at run time by github.com/golang-fips/openssl (no
// OpenSSL headers at build time; libcrypto.so.3 or .so.1.1 on first use).
// Anything else keeps Go's own implementation: other key types (ECDSA and
// Ed25519 are fast in Go already), a build without the tag, a system
// without libcrypto, Go's FIPS 140-3 mode, and any signature OpenSSL
// refuses; Engine says which is in use. Decryption (the RSA key exchange)
// is always Go's.
//
// rsasign imports only the standard library, plus golang-fips/openssl
// in the tagged build.
package rsasign

import "crypto"

// Wrap returns key, or for an RSA key a signer that uses OpenSSL when this
// build and system have it. The result is a valid tls.Certificate
// PrivateKey: its Public is the key's own *rsa.PublicKey.
func Wrap(key crypto.PrivateKey) crypto.PrivateKey {
	if s := wrap(key); s != nil {
		return s
	}
	return key
}

// Engine says what signs with RSA keys: "go" (a build without the openssl
// tag), libcrypto's version text ("OpenSSL 3.0.17 1 Jul 2025"), or
// "go (<why OpenSSL is not used>)".
func Engine() string { return engine() }
