package lmtp

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/proxy/proxytest"
)

// TestStartTLSHandshakeTimeout: after the 220 to STARTTLS (RFC 3207
// section 4) a client that never starts the handshake is cut after the
// handshake timeout, not after the (much longer) wait for a command.
func TestStartTLSHandshakeTimeout(t *testing.T) {
	l := New(Options{Picker: pickerFor(nil), Hostname: "proxy.example.org", HandshakeTimeout: 200 * time.Millisecond, ClientTimeout: time.Hour})
	srv := proxy.New(proxy.Options{})
	if err := srv.Configure([]proxy.Frontend{{
		Name: "lmtp", Protocol: "lmtp", Addrs: []string{"127.0.0.1:0"}, Handler: l, TLS: proxytest.ServerTLS(t),
	}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); l.Close() })

	c, err := net.Dial("tcp", srv.ListenerAddr("lmtp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second)) // far beyond the handshake timeout, far below the idle one
	r := bufio.NewReader(c)
	readReply := func() string {
		var last string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("read: %v (after %q)", err, last)
			}
			last = line
			if len(line) < 4 || line[3] != '-' {
				return line
			}
		}
	}
	readReply() // greeting
	io.WriteString(c, "LHLO mta.example.org\r\n")
	readReply()
	io.WriteString(c, "STARTTLS\r\n")
	if got := readReply(); !strings.HasPrefix(got, "220 ") {
		t.Fatalf("STARTTLS: got %q, want 220", got)
	}
	// Start no handshake: the frontend must give up on its own and close
	// (a 550 may come first; nothing may be read as a command after it).
	for range 3 {
		line, err := r.ReadString('\n')
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			t.Fatalf("the connection was still open 30s after the 220 (handshake timeout 200ms)")
		case err != nil:
			return // closed
		case !strings.HasPrefix(line, "550 "):
			t.Fatalf("got %q after the 220, want at most a 550 and the connection closed", line)
		}
		io.WriteString(c, "NOOP\r\n") // must not be read as a command in plaintext
	}
	t.Fatalf("the session went on after a failed handshake")
}
