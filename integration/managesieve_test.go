package integration

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

// sieveClientIP is where sieve-connect comes from: it cannot choose its
// source address, and the kernel gives a connection to 127.0.0.3 the
// source 127.0.0.1. The frontend listens on sieveHost, so that Dovecot's
// rip (the client) and lip (maildirector's address) differ and "secured"
// can only come from the PROXY header's SSL TLV.
const (
	sieveHost     = "127.0.0.3"
	sieveClientIP = "127.0.0.1"
)

// sieveConnect runs Debian's sieve-connect against the frontend at addr as
// user (password "pass" on its standard input) with args, and returns its
// output. --notlsverify accepts the test's self-signed certificate;
// --noclearauth makes it STARTTLS before it sends the password; --nosrv
// keeps it off DNS.
func sieveConnect(t *testing.T, addr, user string, args ...string) string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	all := append([]string{"--server", host, "--port", port, "--nosrv", "--user", user, "--passwordfd", "0",
		"--notlsverify", "--noclearauth", "--authmech", "PLAIN"}, args...)
	cmd := exec.CommandContext(ctx, "sieve-connect", all...)
	cmd.Stdin = strings.NewReader(dovecotlab.Password + "\n")
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sieve-connect %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sieveGreeting reads the frontend's greeting (RFC 5804 section 1.7) and
// logs out; it returns the capability lines.
func sieveGreeting(t *testing.T, addr string) []string {
	t.Helper()
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	var caps []string
	for range 20 {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("greeting: %v", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if strings.HasPrefix(line, "OK") {
			c.Write([]byte("LOGOUT\r\n"))
			return caps
		}
		caps = append(caps, line)
	}
	t.Fatal("greeting without OK")
	return nil
}

// TestManageSieveThroughMaildirector: a real ManageSieve client
// (sieve-connect) uploads, lists, activates and deletes a script through
// maildirector over STARTTLS; every session lands on the server where the
// user's IMAP login lands; Dovecot logs the real client address and
// "secured" (the PROXY v2 SSL TLV); the greeting carries what the
// managesieve health check learned from Dovecot.
func TestManageSieveThroughMaildirector(t *testing.T) {
	e := startEnv(t, setupSpec{
		Instances: 3,
		Check:     "managesieve",
		Lab:       dovecotlab.Options{ManageSieve: true},
		Frontends: []frontendSpec{
			{Name: "imap", Protocol: "imap", Plaintext: "allow"},
			{Name: "sieve", Protocol: "managesieve", TLS: "starttls", Host: sieveHost},
		},
	})
	const user, script = "user060", "vacation"
	addr := e.addrs["sieve"]

	eventually(t, "Dovecot's capabilities in the greeting", func() bool {
		caps := strings.Join(sieveGreeting(t, addr), "\n")
		return strings.Contains(caps, `"IMPLEMENTATION" "Dovecot`) && strings.Contains(caps, `"SIEVE" "fileinto`)
	})
	caps := strings.Join(sieveGreeting(t, addr), "\n")
	for _, want := range []string{`"SASL" ""`, `"STARTTLS"`, `"VERSION" "1.0"`} {
		if !strings.Contains(caps, want) {
			t.Errorf("greeting before STARTTLS:\n%s\nwant %s", caps, want)
		}
	}

	local := filepath.Join(t.TempDir(), script+".sieve")
	body := "require \"fileinto\";\nif header :contains \"subject\" \"maildirector\" { fileinto \"INBOX\"; }\n"
	if err := os.WriteFile(local, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	sieveConnect(t, addr, user, "--upload", "--localsieve", local, "--remotesieve", script)
	if out := sieveConnect(t, addr, user, "--list"); !strings.Contains(out, script) || strings.Contains(out, "ACTIVE") {
		t.Errorf("list after upload: got %q, want %s, not active", out, script)
	}
	sieveConnect(t, addr, user, "--activate", "--remotesieve", script)
	if out := sieveConnect(t, addr, user, "--list"); !strings.Contains(out, script) || !strings.Contains(out, "ACTIVE") {
		t.Errorf("list after activate: got %q, want %s active", out, script)
	}
	home := e.instanceOf(e.hashServer(user)).Dir + "/mail/" + user
	if got, err := os.ReadFile(filepath.Join(home, ".dovecot.sieve")); err != nil || string(got) != body {
		t.Errorf("the active script on the user's server: got %q, %v; want the uploaded one", got, err)
	}
	sieveConnect(t, addr, user, "--deactivate")
	sieveConnect(t, addr, user, "--delete", "--remotesieve", script)
	if out := sieveConnect(t, addr, user, "--list"); strings.Contains(out, script) {
		t.Errorf("list after delete: got %q, want no %s", out, script)
	}

	// The user's IMAP login through maildirector lands on the same server.
	r := greeted(t, e.addrs["imap"])
	r.login(user)
	r.logout()

	want := e.hashServer(user)
	var sieve map[string][]dovecotlab.Login
	eventually(t, "Dovecot's login lines", func() bool {
		sieve = frontDoorLogins(e, "managesieve-login", user)
		return len(sieve[want]) >= 7 && len(frontDoorLogins(e, "imap-login", user)[want]) == 1
	})
	if imap := frontDoorLogins(e, "imap-login", user); len(imap) != 1 {
		t.Errorf("IMAP logins of %s: got %v, want one, on %s", user, imap, want)
	}
	for server, logins := range sieve {
		if server != want {
			t.Errorf("%d ManageSieve logins on %s, want all on %s (the user's IMAP server)", len(logins), server, want)
		}
	}
	if n := len(sieve[want]); n != 7 {
		t.Errorf("ManageSieve logins on %s: got %d, want 7 (one per sieve-connect run)", want, n)
	}
	for _, l := range sieve[want] {
		if l.RemoteIP != sieveClientIP || l.LocalIP != sieveHost || !l.Secured || l.Method != "PLAIN" {
			t.Errorf("login line: got %+v, want rip=%s lip=%s, PLAIN, secured", l, sieveClientIP, sieveHost)
		}
	}
}
