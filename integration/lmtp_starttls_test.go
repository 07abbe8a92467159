package integration

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLMTPStartTLS: an LMTP frontend with tls.mode = "starttls" offers
// STARTTLS (RFC 3207 via RFC 2033), a command pipelined behind it is never
// executed, and a delivery over the upgraded connection lands once.
func TestLMTPStartTLS(t *testing.T) {
	fes := lmtpFrontends("")
	fes[0].TLS = "starttls"
	e := startEnv(t, setupSpec{Frontends: fes, Backend: lmtpBackend})
	const user = "user077"

	r := lmtpRawGreeted(t, e.addrs["lmtp"])
	r.write("LHLO mta.test\r\n")
	var caps []string
	for {
		line, err := r.r.ReadLine()
		if err != nil {
			t.Fatal(err)
		}
		caps = append(caps, line)
		if len(line) < 4 || line[3] != '-' {
			break
		}
	}
	if !strings.Contains(strings.Join(caps, "\n"), "STARTTLS") {
		t.Fatalf("LHLO does not offer STARTTLS: %q", caps)
	}
	// A command pipelined behind STARTTLS must not run in plaintext nor after.
	r.write("STARTTLS\r\nMAIL FROM:<smuggled@example.org>\r\n")
	if code, line := r.reply(); code != 220 {
		t.Fatalf("STARTTLS: got %q, want 220", line)
	}
	// The handshake must succeed with the frontend's own certificate: a
	// failed handshake would also keep the pipelined command from running,
	// and proves nothing.
	tc := tls.Client(r.c, frontendTLS(t, e))
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake after STARTTLS: %v", err)
	}
	r.c, r.r = tc, textproto.NewReader(bufio.NewReader(tc))
	if code, line := r.cmd("LHLO mta.test"); code != 250 {
		t.Fatalf("LHLO after TLS: got %q", line)
	}
	// RFC 3207 section 4.2: the server discards what it knew before TLS, and
	// the pipelined MAIL must not have run, so RCPT is out of sequence: 503
	// "Bad sequence of commands" (RFC 5321 sections 4.2.4 and 4.3.2).
	if code, line := r.cmd("RCPT TO:<" + user + "@" + lmtpDomain + ">"); code != 503 {
		t.Fatalf("RCPT before MAIL after TLS: got %q, want 503 (the pipelined MAIL must not have run)", line)
	}
	for _, c := range []string{"MAIL FROM:<a@example.org>", "RCPT TO:<" + user + "@" + lmtpDomain + ">"} {
		if code, line := r.cmd(c); code != 250 {
			t.Fatalf("%s: got %q", c, line)
		}
	}
	if code, line := r.cmd("DATA"); code != 354 {
		t.Fatalf("DATA: got %q", line)
	}
	if code, line := r.cmd("Subject: over TLS\r\n\r\nhello\r\n."); code != 250 {
		t.Fatalf("end of data: got %q, want 250", line)
	}
	in := e.instanceOf(e.hashServer(user))
	if n, err := in.MessageCount(user); err != nil || n != 1 {
		t.Errorf("messages for %s on %s: got %d (%v), want 1", user, in.Name, n, err)
	}
}

// frontendTLS is a client configuration that trusts only the certificate the
// test configuration gave the frontends (startEnv writes it as localhost.crt)
// and checks that exactly that certificate was presented.
func frontendTLS(t *testing.T, e *env) *tls.Config {
	t.Helper()
	certPEM, err := os.ReadFile(filepath.Join(e.dir, "localhost.crt"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("localhost.crt: no PEM block")
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(certPEM) {
		t.Fatal("localhost.crt: no certificate")
	}
	want := sha256.Sum256(block.Bytes)
	return &tls.Config{
		RootCAs:    roots,
		ServerName: "localhost",
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			if got := sha256.Sum256(cs.PeerCertificates[0].Raw); got != want {
				return fmt.Errorf("server certificate fingerprint %x, want %x", got, want)
			}
			return nil
		},
	}
}
