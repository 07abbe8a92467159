package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// pop3Frontends are the POP3 front doors of the tests: STLS with plaintext
// logins allowed, implicit TLS (995-style), and STLS that refuses plaintext
// logins (plaintext_login = "auto" on a starttls frontend).
func pop3Frontends() []frontendSpec {
	return []frontendSpec{
		{Name: "pop3", Protocol: "pop3", TLS: "starttls", Plaintext: "allow"},
		{Name: "pop3s", Protocol: "pop3", TLS: "implicit"},
		{Name: "pop3tls", Protocol: "pop3", TLS: "starttls"},
	}
}

// pop3Message is a message whose POP3 form is its stored form: CRLF line
// ends, a final CRLF, lines that need dot-stuffing (RFC 1939 section 3) and
// 8-bit text, so byte equality proves the whole path.
func pop3Message(user string) []byte {
	return []byte("From: sender@lab.test\r\n" +
		"To: " + user + "@lab.test\r\n" +
		"Subject: pop3 through maildirector for " + user + "\r\n" +
		"Message-ID: <" + user + ".pop3@lab.test>\r\n" +
		"\r\n" +
		"Hello " + user + ",\r\n" +
		".\r\n" +
		"..two dots\r\n" +
		".one dot\r\n" +
		"Grüße, 8-bit text\r\n")
}

// TestPOP3RetrThroughMaildirector: a message delivered to the user's own
// server is listed by STAT and fetched byte for byte by RETR through
// maildirector, in plaintext, after STLS and over implicit TLS; Dovecot logs
// the login on the hash's server with the client's address and the client's
// TLS state.
func TestPOP3RetrThroughMaildirector(t *testing.T) {
	e := startEnv(t, setupSpec{Instances: 3, Frontends: pop3Frontends()})
	tests := []struct {
		name    string
		user    string
		connect func() *rawPOP3
		login   func(p *rawPOP3, user string) string
		secured bool
	}{
		{"plaintext USER PASS", "user030",
			func() *rawPOP3 { return pop3Greeted(t, e.addrs["pop3"]) },
			func(p *rawPOP3, u string) string { return p.userPass(u, "pass") }, false},
		{"STLS AUTH PLAIN", "user031",
			func() *rawPOP3 { p := pop3Greeted(t, e.addrs["pop3tls"]); p.stls(); return p },
			func(p *rawPOP3, u string) string { return p.authPlain(u, "pass") }, true},
		{"implicit TLS USER PASS", "user032",
			func() *rawPOP3 { return pop3GreetedTLS(t, e.addrs["pop3s"]) },
			func(p *rawPOP3, u string) string { return p.userPass(u, "pass") }, true},
		{"implicit TLS AUTH PLAIN", "user033",
			func() *rawPOP3 { return pop3GreetedTLS(t, e.addrs["pop3s"]) },
			func(p *rawPOP3, u string) string { return p.authPlain(u, "pass") }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := pop3Message(tt.user)
			if err := e.instanceOf(e.hashServer(tt.user)).Deliver(tt.user, msg); err != nil {
				t.Fatal(err)
			}
			p := tt.connect()
			if st := tt.login(p, tt.user); !strings.HasPrefix(st, "+OK") {
				t.Fatalf("login: got %q, want +OK", st)
			}
			if got, want := p.cmd("STAT"), fmt.Sprintf("+OK 1 %d", len(msg)); got != want {
				t.Errorf("STAT: got %q, want %q", got, want)
			}
			if got := p.retr(1); !bytes.Equal(got, msg) {
				t.Errorf("RETR 1:\ngot  %q\nwant %q", got, msg)
			}
			p.quit()
			checkFrontDoorLogin(t, e, "pop3-login", tt.user, 1, tt.secured)
		})
	}
}

// TestPOP3PlaintextRefusedBeforeSTLS: a starttls frontend that refuses
// plaintext logins offers neither USER nor SASL before STLS and answers
// USER, PASS and AUTH PLAIN with -ERR (RFC 2595 section 2.3); after STLS it
// offers both, no longer STLS, and the login works.
func TestPOP3PlaintextRefusedBeforeSTLS(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: pop3Frontends()})
	p := pop3Greeted(t, e.addrs["pop3tls"])
	caps := p.capa()
	if !slices.Contains(caps, "STLS") || slices.Contains(caps, "USER") || slices.ContainsFunc(caps, isSASLCap) {
		t.Errorf("CAPA before STLS: got %q, want STLS and neither USER nor SASL", caps)
	}
	for _, c := range []string{"USER user034", "PASS pass", "AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00user034\x00pass"))} {
		if st := p.cmd(c); !strings.HasPrefix(st, "-ERR") {
			t.Errorf("%s before STLS: got %q, want -ERR", strings.Fields(c)[0], st)
		}
	}
	p.stls()
	caps = p.capa()
	if slices.Contains(caps, "STLS") || !slices.Contains(caps, "USER") || !slices.ContainsFunc(caps, isSASLCap) {
		t.Errorf("CAPA after STLS: got %q, want USER and SASL and no STLS", caps)
	}
	p.login("user034")
	if st := p.cmd("STAT"); st != "+OK 0 0" {
		t.Errorf("STAT: got %q, want +OK 0 0", st)
	}
	p.quit()
	checkFrontDoorLogin(t, e, "pop3-login", "user034", 1, true)
	if logins := frontDoorLogins(e, "pop3-login", "user034"); len(logins) != 1 {
		t.Errorf("logins of user034: %v", logins)
	}
}

func isSASLCap(c string) bool { return strings.HasPrefix(c, "SASL") }

// TestPOP3WrongPasswordRelayed: the server's -ERR for a wrong password
// reaches the client, the session stays in AUTHORIZATION, and a retry on
// the same connection logs in, by USER/PASS and by AUTH PLAIN.
func TestPOP3WrongPasswordRelayed(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: pop3Frontends()})
	tests := []struct {
		name  string
		user  string
		login func(p *rawPOP3, user, pass string) string
	}{
		{"USER PASS", "user035", (*rawPOP3).userPass},
		{"AUTH PLAIN", "user036", (*rawPOP3).authPlain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pop3Greeted(t, e.addrs["pop3"])
			if st := tt.login(p, tt.user, "wrong"); !strings.HasPrefix(st, "-ERR [AUTH]") {
				t.Fatalf("wrong password: got %q, want -ERR [AUTH]", st)
			}
			if st := tt.login(p, tt.user, "pass"); !strings.HasPrefix(st, "+OK") {
				t.Fatalf("retry: got %q, want +OK", st)
			}
			if st := p.cmd("STAT"); st != "+OK 0 0" {
				t.Errorf("STAT: got %q, want +OK 0 0", st)
			}
			p.quit()
			checkFrontDoorLogin(t, e, "pop3-login", tt.user, 1, false)
		})
	}
}

// TestPOP3BadInput: hostile or broken POP3 clients get a clear reply or a
// close, commands pipelined behind STLS are discarded, the process stays up
// and a logged-in bystander carries on.
func TestPOP3BadInput(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: pop3Frontends()})
	addr := e.addrs["pop3"]

	bystander := pop3Greeted(t, addr)
	bystander.login("user040")

	// Sizes stay well above the 2 KiB line cap and within the socket
	// buffers, so the client finishes writing before the close.
	noise := make([]byte, 16<<10)
	rand.Read(noise)
	closes := []struct {
		name string
		send func(p *rawPOP3)
		want string // a reply the client must see before the close ("" = close is enough)
	}{
		{"overlong line", func(p *rawPOP3) { p.send("USER " + strings.Repeat("x", 16<<10) + "\r\n") }, "-ERR"},
		{"1000 pipelined garbage lines", func(p *rawPOP3) { p.send(strings.Repeat("garbage in, garbage out\r\n", 1000)) }, "-ERR"},
		{"binary noise", func(p *rawPOP3) { p.send(string(noise)) }, ""},
		{"HTTP request", func(p *rawPOP3) { p.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n") }, "-ERR"},
		{"TLS ClientHello on the plaintext port", func(p *rawPOP3) {
			go tls.Client(p.c, clientTLS()).Handshake()
		}, ""},
	}
	for _, tt := range closes {
		t.Run(tt.name, func(t *testing.T) {
			p := pop3Greeted(t, addr)
			p.c.SetDeadline(time.Now().Add(30 * time.Second))
			tt.send(p)
			lines, err := p.drain()
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

	t.Run("invalid base64", func(t *testing.T) {
		p := pop3Greeted(t, addr)
		if st := p.cmd("AUTH PLAIN !!!not-base64!!!"); !strings.HasPrefix(st, "-ERR") {
			t.Errorf("AUTH PLAIN with invalid initial response: got %q, want -ERR", st)
		}
		if st := p.cmd("AUTH PLAIN"); !strings.HasPrefix(st, "+") {
			t.Fatalf("AUTH PLAIN: got %q, want a continuation", st)
		}
		if st := p.cmd("%%%"); !strings.HasPrefix(st, "-ERR") {
			t.Errorf("invalid continued response: got %q, want -ERR", st)
		}
		p.login("user041") // the session is still usable
		p.quit()
	})

	t.Run("commands pipelined behind STLS", func(t *testing.T) {
		p := pop3Greeted(t, addr)
		// RFC 2595 section 4 / RFC 3207 section 6: what came before the
		// handshake must not be acted on after it.
		p.send("STLS\r\nUSER user042\r\n")
		if st := p.line(); !strings.HasPrefix(st, "+OK") {
			t.Fatalf("STLS: got %q, want +OK", st)
		}
		p.handshake()
		// Had USER been executed, PASS would log in.
		if st := p.cmd("PASS pass"); !strings.HasPrefix(st, "-ERR") {
			t.Errorf("PASS after the pipelined USER: got %q, want -ERR (no user name)", st)
		}
		if caps := p.capa(); slices.Contains(caps, "STLS") {
			t.Errorf("CAPA after STLS: got %q, want no STLS", caps)
		}
		p.quit()
		if logins := frontDoorLogins(e, "pop3-login", "user042"); len(logins) != 0 {
			t.Errorf("the pipelined USER logged in: %v", logins)
		}
	})

	if e.md.exited() {
		t.Fatalf("maildirector died:\n%s", e.md.log.String())
	}
	if st := bystander.cmd("STAT"); !strings.HasPrefix(st, "+OK") {
		t.Errorf("bystander session after the abuse: got %q, want +OK", st)
	}
	bystander.quit()
	fresh := pop3Greeted(t, addr)
	fresh.login("user043")
	fresh.quit()
}
