package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ClientOptions configures the TLS client side toward backends.
type ClientOptions struct {
	// Verify turns on verification of the backend's certificate chain and
	// name. False (the zero value) accepts any certificate: backends on a
	// private network commonly use self-signed certificates.
	Verify bool
	// CAFile is a PEM file of trusted CA certificates. Empty means the
	// system roots. When set, the file must load even if Verify is false, so
	// a typo is reported at startup rather than when verification is turned on.
	CAFile string
	// ServerName is sent as SNI and checked against the backend certificate.
	// Empty means the name crypto/tls derives from the dialed address when
	// the connection is made with tls.Dialer or tls.Dial; with tls.Client
	// and Verify the caller must set it.
	ServerName string
	// MinVersion is the lowest TLS version offered to backends
	// (tls.VersionTLS10 ... tls.VersionTLS13). Zero means tls.VersionTLS12.
	MinVersion uint16
}

// ErrNoCACertificates is returned (wrapped) by NewClientConfig when the
// CA file holds no PEM certificate.
var ErrNoCACertificates = errors.New("no ca certificates found")

// NewClientConfig returns a tls.Config for connections to backends.
func NewClientConfig(opts ClientOptions) (*tls.Config, error) {
	minVersion := opts.MinVersion
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	if err := checkVersion(minVersion); err != nil {
		return nil, fmt.Errorf("min version: %w", err)
	}
	cfg := &tls.Config{
		MinVersion:         minVersion,
		ServerName:         opts.ServerName,
		InsecureSkipVerify: !opts.Verify, //nolint:gosec // opt-in verification, documented on ClientOptions.Verify
	}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("load ca file %s: %w", opts.CAFile, ErrNoCACertificates)
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}
