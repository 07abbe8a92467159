package dovecotlab

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// TestTLSAndIPv6 starts one instance with Options.TLS on ::1: its haproxy
// listeners speak implicit TLS right after the PROXY header with the
// instance's own certificate, and Dovecot logs the login as TLS. When
// Dovecot terminates TLS itself, local_name is the SNI of that TLS leg:
// measured on 2.3.19, it wins over the PROXY v2 AUTHORITY TLV.
func TestTLSAndIPv6(t *testing.T) {
	lab := StartT(t, Options{Instances: 1, Users: 1, TLS: true, ListenAddress: "::1"})
	inst := lab.Instances[0]
	if inst.Address != "::1" {
		t.Fatalf("Address: got %q, want ::1", inst.Address)
	}
	pem, err := os.ReadFile(inst.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", inst.CertFile)
	}
	addr := net.JoinHostPort("::1", strconv.Itoa(inst.Ports.IMAP))
	c, err := net.DialTimeout("tcp", addr, ioDeadline)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioDeadline))
	h := proxyHeader(t, "[2001:db8::7]:40007", "[2001:db8::1]:993", true)
	tlvs, _ := h.TLVs()
	tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("mail.sni.test")})
	if err := h.SetTLVs(tlvs); err != nil {
		t.Fatal(err)
	}
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	tc := tls.Client(c, &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS after the PROXY header, verified against CertFile: %v", err)
	}
	conn := &textConn{t: t, c: tc, r: bufio.NewReader(tc)}
	conn.imapGreeted()
	if got := conn.imapCmd("a", "LOGIN user000 pass"); !strings.HasPrefix(got, "a OK") {
		t.Fatalf("LOGIN: got %q, want a OK", got)
	}
	conn.imapCmd("z", "LOGOUT")
	l := waitLogin(t, inst, "2001:db8::7")
	if !l.TLS {
		t.Errorf("login line: got TLS=false, want true: %+v", l)
	}
	if l.LocalName != "localhost" {
		t.Errorf("login line: got local_name %q, want the TLS leg's SNI localhost: %+v", l.LocalName, l)
	}

	// The plain direct port has no local_name element at all.
	d := net.JoinHostPort("::1", strconv.Itoa(inst.Ports.IMAPDirect))
	dc, err := net.DialTimeout("tcp", d, ioDeadline)
	if err != nil {
		t.Fatalf("dial %s: %v", d, err)
	}
	defer dc.Close()
	dc.SetDeadline(time.Now().Add(ioDeadline))
	direct := &textConn{t: t, c: dc, r: bufio.NewReader(dc)}
	direct.imapGreeted()
	if got := direct.imapCmd("a", "LOGIN user000 pass"); !strings.HasPrefix(got, "a OK") {
		t.Fatalf("direct LOGIN: got %q, want a OK", got)
	}
	direct.imapCmd("z", "LOGOUT")
	l = waitLogin(t, inst, "::1")
	if l.LocalName != "" || l.TLS {
		t.Errorf("direct login line: got local_name %q TLS %v, want none: %+v", l.LocalName, l.TLS, l)
	}

	if err := inst.Stop(); err != nil {
		t.Fatalf("Stop on ::1: %v", err)
	}
}

// TestLocalNameFromAuthority: on a plaintext haproxy = yes listener a PROXY
// v2 AUTHORITY TLV becomes Dovecot's local_name, which the lab's
// login_log_format_elements log.
func TestLocalNameFromAuthority(t *testing.T) {
	lab := StartT(t, Options{Instances: 1, Users: 1})
	inst := lab.Instances[0]
	h := proxyHeader(t, "203.0.113.30:4000", "198.51.100.1:143", true)
	tlvs, err := h.TLVs()
	if err != nil {
		t.Fatal(err)
	}
	tlvs = append(tlvs, proxyproto.TLV{Type: proxyproto.PP2_TYPE_AUTHORITY, Value: []byte("mail.sni.test")})
	if err := h.SetTLVs(tlvs); err != nil {
		t.Fatal(err)
	}
	c := dial(t, inst.Ports.IMAP, h)
	c.imapGreeted()
	if got := c.imapCmd("a", "LOGIN user000 pass"); !strings.HasPrefix(got, "a OK") {
		t.Fatalf("LOGIN: got %q, want a OK", got)
	}
	c.imapCmd("z", "LOGOUT")
	if l := waitLogin(t, inst, "203.0.113.30"); l.LocalName != "mail.sni.test" {
		t.Errorf("login line: got local_name %q, want mail.sni.test: %+v", l.LocalName, l)
	}
}
