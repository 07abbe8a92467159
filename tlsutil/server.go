package tlsutil

import (
	"cmp"
	"crypto"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
)

// CertFiles names one PEM certificate chain and its private key.
type CertFiles struct {
	// Cert is the path of the PEM certificate chain, leaf first.
	Cert string
	// Key is the path of the PEM private key matching the leaf.
	Key string
}

// ServerOptions configures a Server.
type ServerOptions struct {
	// Certs lists the certificates to serve. It must not be empty.
	// The first one is the default: it is served to clients that send no
	// SNI or a name no certificate covers (or the first listed that the
	// client supports). When several certificates cover the same name (an
	// ECDSA and an RSA one, as HAProxy's multi-cert bundles), a client that
	// supports an ECDSA or Ed25519 one gets it, else the first listed it
	// supports.
	Certs []CertFiles
	// MinVersion is the lowest TLS version accepted from clients
	// (tls.VersionTLS10 ... tls.VersionTLS13). Zero means tls.VersionTLS12.
	MinVersion uint16
	// Curves are the key exchange groups accepted (crypto/tls chooses
	// among them in its own order); nil means crypto/tls's defaults.
	Curves []tls.CurveID
	// WrapKey, if set, replaces each private key once it is loaded (on
	// every Reload too): cmd/maildirector passes rsasign.Wrap, which signs
	// with OpenSSL for RSA keys in the openssl build. Its result must be a
	// crypto.Signer for the same public key.
	WrapKey func(crypto.PrivateKey) crypto.PrivateKey
}

// ErrNoCertificates is returned by NewServer when ServerOptions.Certs is empty.
var ErrNoCertificates = errors.New("no certificates configured")

// Server holds the loaded listener certificates and hands out tls.Configs
// that choose among them by SNI. It is safe for concurrent use: Reload swaps
// the certificate set atomically, and every Config returned before or after
// a Reload sees the new set on its next handshake.
type Server struct {
	files      []CertFiles
	minVersion uint16
	curves     []tls.CurveID
	wrapKey    func(crypto.PrivateKey) crypto.PrivateKey
	set        atomic.Pointer[certSet]
}

// certSet is one immutable generation of loaded certificates.
type certSet struct {
	certs    []*tls.Certificate            // in ServerOptions.Certs order; certs[0] is the default
	exact    map[string][]*tls.Certificate // lower-case DNS name → certificates, ECDSA/Ed25519 keys first
	wildcard map[string][]*tls.Certificate // "example.com" for a "*.example.com" name → certificates, likewise
}

// NewServer loads every certificate in opts and returns a Server serving them.
func NewServer(opts ServerOptions) (*Server, error) {
	if len(opts.Certs) == 0 {
		return nil, ErrNoCertificates
	}
	minVersion := opts.MinVersion
	if minVersion == 0 {
		minVersion = tls.VersionTLS12
	}
	if err := checkVersion(minVersion); err != nil {
		return nil, fmt.Errorf("min version: %w", err)
	}
	s := &Server{
		files:      append([]CertFiles(nil), opts.Certs...),
		minVersion: minVersion,
		curves:     append([]tls.CurveID(nil), opts.Curves...),
		wrapKey:    opts.WrapKey,
	}
	set, err := loadCertSet(s.files, s.wrapKey)
	if err != nil {
		return nil, err
	}
	s.set.Store(set)
	return s, nil
}

// Config returns a new tls.Config for a listener or a STARTTLS upgrade.
// The certificate is chosen per handshake by SNI: an exact name first, then a
// wildcard (*.example.com covers exactly one more label, as in RFC 6125
// section 6.4.3), else the default certificate. No ALPN protocols are set:
// the mail protocols do not negotiate one, and a forwarded ALPN that does not
// match the service makes Dovecot drop the connection.
//
// The caller may modify the returned Config; it is not shared.
func (s *Server) Config() *tls.Config {
	return &tls.Config{
		MinVersion:       s.minVersion,
		CurvePreferences: append([]tls.CurveID(nil), s.curves...),
		GetCertificate:   s.getCertificate,
	}
}

// Reload reads all certificate files again. If any file fails to load, the
// certificates in use stay unchanged and the error says which file failed.
// Handshakes in progress finish with the set they started with.
func (s *Server) Reload() error {
	set, err := loadCertSet(s.files, s.wrapKey)
	if err != nil {
		return fmt.Errorf("reload certificates: %w", err)
	}
	s.set.Store(set)
	return nil
}

// getCertificate is the tls.Config.GetCertificate callback.
func (s *Server) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.set.Load().choose(hello), nil
}

// choose returns the certificate for an SNI server name ("" when the client
// sent none).
func (cs *certSet) choose(hello *tls.ClientHelloInfo) *tls.Certificate {
	candidates := cs.certs
	if name := strings.TrimSuffix(strings.ToLower(hello.ServerName), "."); name != "" {
		if list, ok := cs.exact[name]; ok {
			candidates = list
		} else if _, parent, ok := strings.Cut(name, "."); ok && parent != "" {
			// RFC 6125 section 6.4.3: the wildcard stands for the
			// left-most label only.
			if list, ok := cs.wildcard[parent]; ok {
				candidates = list
			}
		}
	}
	if len(candidates) > 1 {
		for _, c := range candidates {
			if hello.SupportsCertificate(c) == nil {
				return c
			}
		}
	}
	return candidates[0]
}

// loadCertSet loads every file pair, passes each key through wrapKey (if
// set), and indexes the certificates by the DNS names of their leaves.
func loadCertSet(files []CertFiles, wrapKey func(crypto.PrivateKey) crypto.PrivateKey) (*certSet, error) {
	cs := &certSet{
		exact:    make(map[string][]*tls.Certificate),
		wildcard: make(map[string][]*tls.Certificate),
	}
	for _, f := range files {
		c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("load certificate %s with key %s: %w", f.Cert, f.Key, err)
		}
		if c.Leaf == nil {
			leaf, err := x509.ParseCertificate(c.Certificate[0])
			if err != nil {
				return nil, fmt.Errorf("parse certificate %s: %w", f.Cert, err)
			}
			c.Leaf = leaf
		}
		if wrapKey != nil {
			c.PrivateKey = wrapKey(c.PrivateKey)
		}
		cert := &c
		cs.certs = append(cs.certs, cert)
		for _, n := range leafNames(c.Leaf) {
			n = strings.TrimSuffix(strings.ToLower(n), ".")
			if parent, ok := strings.CutPrefix(n, "*."); ok {
				if parent != "" {
					cs.wildcard[parent] = append(cs.wildcard[parent], cert)
				}
				continue
			}
			if n != "" {
				cs.exact[n] = append(cs.exact[n], cert)
			}
		}
	}
	// Several certificates for one name (HAProxy's multi-cert bundles): a
	// client that can verify an ECDSA or Ed25519 one gets it, a cheaper
	// handshake than RSA's; the others get the first they support.
	for _, m := range []map[string][]*tls.Certificate{cs.exact, cs.wildcard} {
		for _, list := range m {
			slices.SortStableFunc(list, func(a, b *tls.Certificate) int { return cmp.Compare(keyRank(a), keyRank(b)) })
		}
	}
	return cs, nil
}

// keyRank orders certificates for one name: ECDSA and Ed25519 keys first.
func keyRank(c *tls.Certificate) int {
	if _, ok := c.Leaf.PublicKey.(*rsa.PublicKey); ok {
		return 1
	}
	return 0
}

// leafNames returns the DNS names a leaf certificate is valid for: its DNS
// subject alternative names, or its common name when it has none (older
// certificates; RFC 6125 section 6.4.4).
func leafNames(leaf *x509.Certificate) []string {
	if len(leaf.DNSNames) > 0 {
		return leaf.DNSNames
	}
	if leaf.Subject.CommonName != "" {
		return []string{leaf.Subject.CommonName}
	}
	return nil
}
