package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// The shipped sample names certificate files that exist only on a real
// host. The test points those paths at a generated certificate, so the
// sample must parse cleanly; without the substitution the only problems
// allowed are the missing certificate files.

const sampleCert, sampleKey = "/etc/maildirector/tls/mail.pem", "/etc/maildirector/tls/mail.key"

func readSample(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("../etc/maildirector.toml")
	if err != nil {
		t.Fatalf("read sample: %v", err)
	}
	return string(data)
}

func TestSampleParses(t *testing.T) {
	cert, key := writeCert(t)
	text := strings.NewReplacer(sampleCert, cert, sampleKey, key).Replace(readSample(t))
	c := mustParse(t, text)
	want := "8 frontends (imap, imaps, lmtp, objects, pop3, pop3s, submission, submissions), 2 backends (dovecot: 3 servers, scality: 2 servers), 14 listeners"
	if got := c.Summary(); got != want {
		t.Errorf("Summary: got %q, want %q", got, want)
	}
	b := c.Backends["dovecot"]
	for _, s := range b.Servers {
		if s.SendProxy != SendProxyV2SSL {
			t.Errorf("server %s send_proxy: got %s, want v2-ssl", s.Name, s.SendProxy)
		}
		if got := b.CheckSendProxy(s); got != CheckProxyLocal {
			t.Errorf("server %s check send_proxy: got %s, want local", s.Name, got)
		}
	}
	if got, want := b.CheckAddress(b.Servers[0]), "10.0.0.11:10143"; got != want {
		t.Errorf("check address: got %s, want %s", got, want)
	}
	if got, want := b.Servers[2].DialAddress(ProtocolLMTP), "10.0.0.13:10024"; got != want {
		t.Errorf("lmtp dial address: got %s, want %s", got, want)
	}
	if h := c.Frontends["objects"].HTTP; h == nil || !h.ForwardFor || len(h.Capture) != 3 || c.Backends["scality"].Servers[0].SendProxy != SendProxyNone {
		t.Errorf("the http frontend: got %+v, want forwardfor, the default captures and no PROXY header to the store", h)
	}
	if c.Frontends["imap"].PlaintextAllowed() {
		t.Errorf("imap on 143 with STARTTLS: got plaintext allowed, want denied")
	}
}

func TestSampleOnlyMissesCertificates(t *testing.T) {
	// Point the certificate paths somewhere that surely does not exist, so
	// the result does not depend on this host's /etc.
	missing := t.TempDir() + "/missing"
	text := strings.NewReplacer(sampleCert, missing+"/mail.pem", sampleKey, missing+"/mail.key").Replace(readSample(t))
	_, err := Parse([]byte(text))
	if err == nil {
		t.Fatal("got no error, want missing certificate files")
	}
	for _, p := range Problems(err) {
		var ke *KeyError
		if !errors.As(p, &ke) || !strings.Contains(ke.Key, ".tls.cert[0].") {
			t.Errorf("got problem %v, want only certificate problems", p)
		}
	}
}
