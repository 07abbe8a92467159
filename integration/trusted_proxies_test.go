package integration

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// claimedClient is the address a PROXY header below claims for the client.
// It only travels inside the header over loopback: nothing is sent to it.
const claimedClient = "192.0.2.7"

// writeProxyV2 sends a PROXY v2 header that claims the client is
// claimedClient, connecting to c's remote address.
func writeProxyV2(t *testing.T, c net.Conn) {
	t.Helper()
	src := &net.TCPAddr{IP: net.ParseIP(claimedClient), Port: 40000}
	if _, err := proxyproto.HeaderProxyFromAddrs(2, src, c.RemoteAddr()).WriteTo(c); err != nil {
		t.Fatal(err)
	}
}

// TestTrustedProxies: an IMAP frontend with trusted_proxies honours a PROXY
// v2 header from a trusted address (Dovecot logs the header's source as
// rip) and never from anyone else (the header does not log anyone in from
// the claimed address).
func TestTrustedProxies(t *testing.T) {
	fes := []frontendSpec{{Name: "imap", Protocol: "imap", Plaintext: "allow", Extra: `trusted_proxies = ["127.0.0.3/32"]`}}
	e := startEnv(t, setupSpec{Frontends: fes})

	loginsFrom := func(user, rip string) int {
		n := 0
		for _, in := range e.lab.Instances {
			logins, err := in.Logins()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range logins {
				if l.User == user && l.RemoteIP == rip {
					n++
				}
			}
		}
		return n
	}

	t.Run("trusted", func(t *testing.T) {
		const user = "user090"
		c := dialDeadline(t, net.ParseIP("127.0.0.3"), e.addrs["imap"])
		writeProxyV2(t, c)
		r := newRawIMAP(t, c)
		if l := r.line(); !strings.HasPrefix(l, "* OK") {
			t.Fatalf("greeting after a trusted PROXY header: got %q, want * OK", l)
		}
		r.login(user)
		eventually(t, "Dovecot to log "+user+" with rip="+claimedClient, func() bool { return loginsFrom(user, claimedClient) == 1 })
		r.logout()
	})

	t.Run("untrusted", func(t *testing.T) {
		const user = "user091"
		c := dialDeadline(t, clientIP, e.addrs["imap"])
		writeProxyV2(t, c)
		r := newRawIMAP(t, c)
		r.send("a LOGIN " + user + " pass\r\n")
		// The header is not honoured: its bytes are read as command lines
		// (two empty ones, then binary: BAD, BAD, BYE), and the session ends
		// without a login.
		var lines []string
		for range 100 {
			l, err := r.readLine()
			if l != "" {
				lines = append(lines, l)
			}
			if strings.HasPrefix(l, "a OK") {
				t.Fatalf("untrusted PROXY header: login accepted: %q", lines)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("session after an untrusted PROXY header: got %q, %v; want a close", lines, err)
			}
		}
		t.Logf("client behind an untrusted PROXY header got %q", lines)
		if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], "* BYE") {
			t.Errorf("untrusted PROXY header: got %q, want the header's bytes refused as commands, ending in * BYE", lines)
		}
		if n := loginsFrom(user, claimedClient); n != 0 {
			t.Errorf("untrusted PROXY header: Dovecot logged %d logins of %s from %s, want none", n, user, claimedClient)
		}
	})
}

// dialDeadline is dialFrom with a deadline on the whole conversation.
func dialDeadline(t *testing.T, from net.IP, addr string) net.Conn {
	t.Helper()
	c := dialFrom(t, from, addr)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}
