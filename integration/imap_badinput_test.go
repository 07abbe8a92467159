package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"strings"
	"testing"
	"time"
)

// TestIMAPBadInput: hostile or broken clients get a clear reply or a close,
// the process stays up and other sessions carry on.
func TestIMAPBadInput(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: imapFrontends()})
	addr := e.addrs["imap"]

	bystander := greeted(t, addr)
	bystander.login("user050")

	noise := make([]byte, 64<<10)
	rand.Read(noise)
	tests := []struct {
		name string
		send func(r *rawIMAP)
		want string // a reply the client must see before the close ("" = close is enough)
	}{
		{"overlong line", func(r *rawIMAP) { r.send("a LOGIN " + strings.Repeat("x", 200<<10) + " pass\r\n") }, ""},
		{"unterminated literal", func(r *rawIMAP) { r.send("a LOGIN {10000000}\r\n") }, ""},
		{"1000 pipelined garbage lines", func(r *rawIMAP) { r.send(strings.Repeat("garbage in, garbage out\r\n", 1000)) }, "* BYE"},
		{"binary noise", func(r *rawIMAP) { r.send(string(noise)) }, ""},
		{"TLS ClientHello on the plaintext port", func(r *rawIMAP) {
			// a real ClientHello, written by crypto/tls into the raw socket
			go tls.Client(r.c, clientTLS()).Handshake()
		}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := greeted(t, addr)
			r.c.SetDeadline(time.Now().Add(30 * time.Second))
			tt.send(r)
			lines, err := r.drain()
			if err != nil && !strings.Contains(err.Error(), "reset") && !strings.Contains(err.Error(), "broken pipe") {
				t.Fatalf("the connection was not closed: %v (lines %q)", err, lines)
			}
			if tt.want != "" && !strings.Contains(strings.Join(lines, "\n"), tt.want) {
				t.Errorf("got %q, want a %q reply", lines, tt.want)
			}
			if e.md.exited() {
				t.Fatalf("maildirector died:\n%s", e.md.log.String())
			}
		})
	}
	if _, tagged := bystander.cmd("n", "NOOP"); !strings.HasPrefix(tagged, "n OK") {
		t.Errorf("bystander session after the abuse: %q", tagged)
	}
	bystander.logout()
	if !bytes.Contains([]byte(e.md.log.String()), []byte("session")) {
		t.Errorf("no session log lines")
	}
}
