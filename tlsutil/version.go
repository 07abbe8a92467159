package tlsutil

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownVersion is returned (wrapped) for a TLS version this package does
// not know.
var ErrUnknownVersion = errors.New("unknown tls version")

// versions maps each supported TLS version to the name OpenSSL's
// SSL_get_version returns for it. HAProxy copies that string into the PROXY
// v2 PP2_SUBTYPE_SSL_VERSION TLV, and Dovecot logs it as is, so maildirector
// uses the same spelling (note "TLSv1", not "TLSv1.0").
var versions = []struct {
	v       uint16
	openssl string
	short   string
}{
	{tls.VersionTLS10, "TLSv1", "1.0"},
	{tls.VersionTLS11, "TLSv1.1", "1.1"},
	{tls.VersionTLS12, "TLSv1.2", "1.2"},
	{tls.VersionTLS13, "TLSv1.3", "1.3"},
}

// VersionName returns the OpenSSL name of a TLS version ("TLSv1.2",
// "TLSv1.3"), as sent in the PROXY v2 SSL version TLV. Versions OpenSSL would
// not name give "unknown", as SSL_get_version does.
func VersionName(v uint16) string {
	for _, e := range versions {
		if e.v == v {
			return e.openssl
		}
	}
	return "unknown"
}

// ParseVersion parses a configured TLS version: "1.0", "1.1", "1.2" or
// "1.3". The OpenSSL names VersionName returns ("TLSv1.2") are accepted too.
func ParseVersion(s string) (uint16, error) {
	for _, e := range versions {
		if s == e.short || strings.EqualFold(s, e.openssl) {
			return e.v, nil
		}
	}
	return 0, fmt.Errorf("parse tls version %q: %w", s, ErrUnknownVersion)
}

// checkVersion reports whether v is a TLS version this package supports.
func checkVersion(v uint16) error {
	for _, e := range versions {
		if e.v == v {
			return nil
		}
	}
	return fmt.Errorf("%#04x: %w", v, ErrUnknownVersion)
}
