package integration

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/maildirector/maildirector/internal/dovecotlab"
	"github.com/maildirector/maildirector/tlsutil"
)

// sniNames are the two certificates of the SNI frontend; the first is the default.
var sniNames = []string{"a.sni.test", "b.sni.test"}

// sniEnv starts maildirector with an implicit-TLS IMAP frontend "imaps"
// holding one certificate per sniNames entry (each its own CA), and
// returns the certificate files by name.
func sniEnv(t *testing.T) (*env, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	certs := make(map[string]string)
	var tables strings.Builder
	tables.WriteString("[frontend.imaps.tls]\nmode = \"implicit\"\n")
	for _, name := range sniNames {
		cert, key, err := tlsutil.WriteSelfSigned(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		certs[name] = cert
		fmt.Fprintf(&tables, "[[frontend.imaps.tls.cert]]\ncert = %q\nkey = %q\n", cert, key)
	}
	e := startEnv(t, setupSpec{
		Frontends: []frontendSpec{{Name: "imaps", Protocol: "imap", Extra: tables.String()}},
		// See dovecotlab.Options.LoginProcessPerConnection: local_name.
		Lab: dovecotlab.Options{LoginProcessPerConnection: true},
	})
	return e, certs
}

// fingerprint is the SHA-256 of a certificate's DER.
func fingerprint(der []byte) string { return fmt.Sprintf("%x", sha256.Sum256(der)) }

// fileFingerprint is the fingerprint of the first certificate in a PEM file.
func fileFingerprint(t testing.TB, path string) string {
	t.Helper()
	b, _ := pem.Decode([]byte(readFile(t, path)))
	if b == nil {
		t.Fatalf("no PEM block in %s", path)
	}
	return fingerprint(b.Bytes)
}

// tlsWithSNI connects to an implicit-TLS frontend sending serverName as
// SNI ("" sends none) and returns the connection and the leaf's
// fingerprint. A non-empty roots file makes the client verify the chain
// and serverName against it.
func tlsWithSNI(t testing.TB, addr, serverName, rootsFile string) (*tls.Conn, string) {
	t.Helper()
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: rootsFile == ""}
	if rootsFile != "" {
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM([]byte(readFile(t, rootsFile))) {
			t.Fatalf("no certificate in %s", rootsFile)
		}
	}
	tc := tls.Client(dial(t, addr), cfg)
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS with SNI %q: %v", serverName, err)
	}
	return tc, fingerprint(tc.ConnectionState().PeerCertificates[0].Raw)
}

// TestE2ESNI: two certificates on one frontend. A client sending SNI for
// either name gets that name's certificate (verified against it alone),
// and Dovecot logs the name as local_name (PROXY v2 AUTHORITY TLV); a
// client without SNI gets the first certificate and Dovecot no local_name.
func TestE2ESNI(t *testing.T) {
	e, certs := sniEnv(t)
	tests := []struct {
		name, sni, user, wantCert string
	}{
		{"first name", "a.sni.test", "user060", "a.sni.test"},
		{"second name", "b.sni.test", "user061", "b.sni.test"},
		{"no SNI", "", "user062", "a.sni.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			roots := certs[tt.wantCert]
			if tt.sni == "" {
				roots = "" // nothing to verify a name against; compared by fingerprint
			}
			tc, fp := tlsWithSNI(t, e.addrs["imaps"], tt.sni, roots)
			if want := fileFingerprint(t, certs[tt.wantCert]); fp != want {
				t.Errorf("leaf for SNI %q: got fingerprint %s, want %s's %s", tt.sni, fp, tt.wantCert, want)
			}
			r := newRawIMAP(t, tc)
			if g := r.line(); !strings.HasPrefix(g, "* OK") {
				t.Fatalf("greeting: got %q", g)
			}
			r.login(tt.user)
			r.logout()
			_, l := e.landedOnce(t, tt.user)
			if l.LocalName != tt.sni {
				t.Errorf("Dovecot's local_name: got %q, want %q: %+v", l.LocalName, tt.sni, l)
			}
			if !l.Secured {
				t.Errorf("Dovecot's login line lacks secured: %+v", l)
			}
		})
	}
}

// TestE2ECertificateReload: a certificate replaced on disk is served to new
// connections after SIGHUP; until then the old one is.
func TestE2ECertificateReload(t *testing.T) {
	e, certs := sniEnv(t)
	addr := e.addrs["imaps"]
	const name = "b.sni.test"
	_, before := tlsWithSNI(t, addr, name, certs[name])
	if want := fileFingerprint(t, certs[name]); before != want {
		t.Fatalf("before the change: got fingerprint %s, want %s", before, want)
	}
	newCert, _, err := tlsutil.WriteSelfSigned(filepath.Dir(certs[name]), name)
	if err != nil {
		t.Fatal(err)
	}
	if newCert != certs[name] {
		t.Fatalf("new certificate written to %s, want %s", newCert, certs[name])
	}
	after := fileFingerprint(t, newCert)
	if after == before {
		t.Fatal("the new certificate has the old fingerprint")
	}
	if _, fp := tlsWithSNI(t, addr, name, ""); fp != before {
		t.Errorf("before SIGHUP: got fingerprint %s, want the old %s", fp, before)
	}
	if err := e.md.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new certificate on a new connection", func() bool {
		tc, fp := tlsWithSNI(t, addr, name, "")
		tc.Close()
		return fp == after
	})
	// The new certificate verifies against itself for its name, and the
	// other name still gets its own certificate.
	tc, _ := tlsWithSNI(t, addr, name, newCert)
	r := newRawIMAP(t, tc)
	if g := r.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting after reload: got %q", g)
	}
	r.login("user063")
	r.logout()
	if _, fp := tlsWithSNI(t, addr, "a.sni.test", certs["a.sni.test"]); fp != fileFingerprint(t, certs["a.sni.test"]) {
		t.Errorf("a.sni.test after reload: got fingerprint %s, want its unchanged certificate", fp)
	}
}
