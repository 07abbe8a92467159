package dovecotlab

import (
	"encoding/base64"
	"strings"
	"testing"
)

// managesieveGreeted reads the greeting: capability lines, then OK (RFC
// 5804 section 1.7). It returns the capability lines.
func (tc *textConn) managesieveGreeted() []string {
	tc.t.Helper()
	var caps []string
	for range 20 {
		line := tc.readLine()
		if strings.HasPrefix(line, "OK") {
			return caps
		}
		if !strings.HasPrefix(line, `"`) {
			tc.t.Fatalf("greeting: got %q, want a capability or OK", line)
		}
		caps = append(caps, line)
	}
	tc.t.Fatal("greeting without OK")
	return nil
}

// TestManageSieve: with Options.ManageSieve the haproxy = yes sieve
// listener takes a PROXY v2 header, logs the header's client and the SSL
// TLV as "secured", and stores an uploaded script; without it there is no
// such port and the configuration has no sieve in it.
func TestManageSieve(t *testing.T) {
	lab := StartT(t, Options{Instances: 1, Users: 1, ManageSieve: true})
	inst := lab.Instances[0]
	if inst.Ports.ManageSieve == 0 {
		t.Fatal("no ManageSieve port")
	}
	c := dial(t, inst.Ports.ManageSieve, proxyHeader(t, "203.0.113.30:4000", "198.51.100.1:4190", true))
	caps := strings.Join(c.managesieveGreeted(), "\n")
	for _, want := range []string{`"SIEVE" "fileinto`, `"SASL" "PLAIN`, `"VERSION" "1.0"`} {
		if !strings.Contains(caps, want) {
			t.Errorf("capabilities %q lack %s", caps, want)
		}
	}
	ir := base64.StdEncoding.EncodeToString([]byte("\x00user000\x00" + Password))
	c.send(`AUTHENTICATE "PLAIN" "` + ir + `"`)
	if got := c.readLine(); !strings.HasPrefix(got, "OK") {
		t.Fatalf("AUTHENTICATE: got %q, want OK", got)
	}
	c.send("PUTSCRIPT \"lab\" {7+}\r\nkeep;\r\n")
	if got := c.readLine(); !strings.HasPrefix(got, "OK") {
		t.Fatalf("PUTSCRIPT: got %q, want OK", got)
	}
	c.send("LOGOUT")
	if got := c.readLine(); !strings.HasPrefix(got, "OK") {
		t.Fatalf("LOGOUT: got %q, want OK", got)
	}
	l := waitLogin(t, inst, "203.0.113.30")
	if l.Service != "managesieve-login" || l.User != "user000" || !l.Secured || l.RemotePort != 4000 {
		t.Errorf("login: got %+v, want managesieve-login of user000 from port 4000, secured", l)
	}

	plain := StartT(t, Options{Instances: 1, Users: 1})
	if p := plain.Instances[0].Ports.ManageSieve; p != 0 {
		t.Errorf("lab without ManageSieve: got sieve port %d, want 0", p)
	}
}
