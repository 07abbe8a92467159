package integration

import (
	"bufio"
	"crypto/tls"
	"net/textproto"
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
	tc := tls.Client(r.c, clientTLS())
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		// The pipelined bytes were fed to the handshake and broke it: safe,
		// the command was not executed. Nothing more to test here.
		t.Logf("handshake after pipelined command failed as expected: %v", err)
		return
	}
	r.c, r.r = tc, textproto.NewReader(bufio.NewReader(tc))
	if code, line := r.cmd("LHLO mta.test"); code != 250 {
		t.Fatalf("LHLO after TLS: got %q", line)
	}
	// 503 in plaintext; over TLS go-smtp's own 502 comes through, as the
	// frontend's reply rewriting sits below the TLS layer.
	if code, line := r.cmd("RCPT TO:<" + user + "@" + lmtpDomain + ">"); code != 503 && code != 502 {
		t.Fatalf("RCPT before MAIL after TLS: got %q, want 503/502 (the pipelined MAIL must not have run)", line)
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
