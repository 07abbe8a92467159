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
// section 4) a client that never completes the handshake is cut after the
// frontend's handshake timeout, not after the (much longer) wait for a
// command, and what it sends meanwhile is never read as a command.
func TestStartTLSHandshakeTimeout(t *testing.T) {
	l := New(Options{Picker: pickerFor(nil), Hostname: "proxy.example.org", ClientTimeout: time.Hour})
	srv := proxy.New(proxy.Options{})
	if err := srv.Configure([]proxy.Frontend{{
		Name: "lmtp", Protocol: "lmtp", Addrs: []string{"127.0.0.1:0"}, Handler: l, TLS: proxytest.ServerTLS(t),
		Timeouts: proxy.Timeouts{Handshake: 200 * time.Millisecond},
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
	// (go-smtp may say 421 first).
	for range 2 {
		line, err := r.ReadString('\n')
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
			t.Fatalf("the connection was still open 30s after the 220 (handshake timeout 200ms)")
		case err != nil:
			return // closed
		case !strings.HasPrefix(line, "421 "):
			t.Fatalf("got %q after the 220, want at most a 421 and the connection closed", line)
		}
	}
	t.Fatalf("the session went on after the handshake timed out")
}
