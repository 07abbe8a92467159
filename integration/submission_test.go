package integration

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TestSubmissionSendsThroughDovecot: a client submits a message through
// maildirector (EHLO, STARTTLS, EHLO, AUTH, MAIL/RCPT/DATA, or the same over
// implicit TLS); Dovecot's submission service on the user's own server
// relays it to the sink with the client's envelope, and logs the login with
// the client's address and TLS state.
func TestSubmissionSendsThroughDovecot(t *testing.T) {
	e, sink := submissionEnv(t, setupSpec{Instances: 3})
	tests := []struct {
		name    string
		user    string
		mech    string
		connect func() *smtp.Client
		secured bool
	}{
		{"STARTTLS AUTH PLAIN", "user070", sasl.Plain, func() *smtp.Client { return submissionClientStartTLS(t, e.addrs["submission"]) }, true},
		{"STARTTLS AUTH LOGIN", "user071", sasl.Login, func() *smtp.Client { return submissionClientStartTLS(t, e.addrs["submission"]) }, true},
		{"implicit TLS AUTH PLAIN", "user072", sasl.Plain, func() *smtp.Client { return submissionClientTLS(t, e.addrs["submissions"]) }, true},
		{"implicit TLS AUTH LOGIN", "user073", sasl.Login, func() *smtp.Client { return submissionClientTLS(t, e.addrs["submissions"]) }, true},
		{"plaintext AUTH PLAIN", "user074", sasl.Plain, func() *smtp.Client { return submissionClient(t, e.addrs["submissionplain"]) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.connect()
			if err := c.Hello("client.lab.test"); err != nil {
				t.Fatalf("EHLO: %v", err)
			}
			if _, isTLS := c.TLSConnectionState(); isTLS != tt.secured {
				t.Fatalf("client on TLS: got %v, want %v", isTLS, tt.secured)
			}
			if !c.SupportsAuth(tt.mech) {
				t.Fatalf("EHLO does not offer AUTH %s", tt.mech)
			}
			submissionAuth(t, c, tt.mech, tt.user)
			from := tt.user + "@lab.test"
			to := []string{"rcpt1@example.org", "rcpt2@example.net"}
			id := tt.user + ".submission@lab.test"
			msg := submissionMessage(from, to[0], id)
			submissionSend(t, c, from, to, msg)
			if err := c.Quit(); err != nil {
				t.Errorf("QUIT: %v", err)
			}
			m := sinkMessage(t, sink, id)
			if m.From != from || !slices.Equal(m.To, to) {
				t.Errorf("envelope at the sink: got from %q to %q, want from %q to %q", m.From, m.To, from, to)
			}
			// Dovecot prepends its Received field (RFC 5321 section 4.4),
			// which names the real client and, by "ESMTPSA", TLS (RFC 3848).
			if !bytes.HasSuffix(m.Data, msg) {
				t.Errorf("message at the sink: got %q, want it to end with the message as sent %q", m.Data, msg)
			}
			with := "ESMTPA"
			if tt.secured {
				with = "ESMTPSA"
			}
			received, _, _ := strings.Cut(string(m.Data), "(envelope-from")
			if !strings.Contains(received, "[127.0.0.2]") || !strings.Contains(received, " with "+with+"\r\n") {
				t.Errorf("Received field: got %q, want the client's [%s] and with %s", received, clientIP, with)
			}
			checkFrontDoorLogin(t, e, "submission-login", tt.user, 1, tt.secured)
		})
	}
}

// TestSubmissionNeedsAuth: mail commands before AUTH get 530 5.7.0 (RFC 4954
// section 6, RFC 6409 section 4.3), AUTH before STARTTLS is refused on a
// frontend that wants TLS (RFC 3207 section 4), and nothing reaches the sink.
func TestSubmissionNeedsAuth(t *testing.T) {
	e, sink := submissionEnv(t, setupSpec{})

	c := submissionClientStartTLS(t, e.addrs["submission"])
	err := c.Mail("user075@lab.test", nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 530 || se.EnhancedCode != (smtp.EnhancedCode{5, 7, 0}) {
		t.Errorf("MAIL FROM before AUTH: got %v, want 530 5.7.0", err)
	}
	if err := c.Rcpt("rcpt@example.org", nil); !errors.As(err, &se) || se.Code != 530 {
		t.Errorf("RCPT TO before AUTH: got %v, want 530", err)
	}
	submissionAuth(t, c, sasl.Plain, "user075")
	submissionSend(t, c, "user075@lab.test", []string{"rcpt@example.org"}, submissionMessage("user075@lab.test", "rcpt@example.org", "user075.late@lab.test"))
	c.Quit()
	sinkMessage(t, sink, "user075.late@lab.test")

	r := submissionGreeted(t, e.addrs["submission"])
	if l := r.cmd("EHLO client.lab.test"); !strings.HasPrefix(l, "250 ") {
		t.Fatalf("EHLO: got %q, want 250", l)
	}
	if l := r.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00user076\x00pass"))); !strings.HasPrefix(l, "530 5.7.0") {
		t.Errorf("AUTH before STARTTLS: got %q, want 530 5.7.0", l)
	}
	if l := r.cmd("MAIL FROM:<user076@lab.test>"); !strings.HasPrefix(l, "530 5.7.0") {
		t.Errorf("MAIL FROM before AUTH: got %q, want 530 5.7.0", l)
	}
	if l := r.cmd("QUIT"); !strings.HasPrefix(l, "221") {
		t.Errorf("QUIT: got %q, want 221", l)
	}
	if got := len(sink.Messages()); got != 1 {
		t.Errorf("messages at the sink: got %d, want 1", got)
	}
	if logins := frontDoorLogins(e, "submission-login", "user076"); len(logins) != 0 {
		t.Errorf("a refused AUTH logged in: %v", logins)
	}
}

// TestSubmissionWrongPasswordRelayed: the server's 535 for a wrong password
// reaches the client, and a retry on the same connection logs in and sends.
func TestSubmissionWrongPasswordRelayed(t *testing.T) {
	e, sink := submissionEnv(t, setupSpec{})
	plain := func(user, pass string) string {
		return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name  string
		user  string
		login func(s *rawSubmission, user, pass string) string
	}{
		{"PLAIN", "user077", func(s *rawSubmission, user, pass string) string {
			return s.cmd("AUTH PLAIN " + plain(user, pass))
		}},
		{"LOGIN", "user078", func(s *rawSubmission, user, pass string) string {
			if l := s.cmd("AUTH LOGIN " + b64(user)); !strings.HasPrefix(l, "334 ") {
				return l
			}
			return s.cmd(b64(pass))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := submissionGreeted(t, e.addrs["submission"])
			s.ehlo()
			s.starttls()
			s.ehlo()
			if l := tt.login(s, tt.user, "wrong"); !strings.HasPrefix(l, "535 ") {
				t.Fatalf("AUTH with a wrong password: got %q, want 535", l)
			}
			if l := tt.login(s, tt.user, "pass"); !strings.HasPrefix(l, "235 ") {
				t.Fatalf("AUTH retry: got %q, want 235", l)
			}
			id := tt.user + ".retry@lab.test"
			s.sendMail(tt.user+"@lab.test", "rcpt@example.org", submissionMessage(tt.user+"@lab.test", "rcpt@example.org", id))
			s.cmd("QUIT")
			m := sinkMessage(t, sink, id)
			if m.From != tt.user+"@lab.test" || !slices.Equal(m.To, []string{"rcpt@example.org"}) {
				t.Errorf("envelope at the sink: got from %q to %q", m.From, m.To)
			}
			if !strings.Contains(string(m.Data), "\r\n.leading dot\r\n") {
				t.Errorf("body at the sink: got %q, want the dot-stuffed line restored", m.Data)
			}
			checkFrontDoorLogin(t, e, "submission-login", tt.user, 1, true)
		})
	}
}

// TestSubmissionGoSMTPRetryAfterWrongPassword: go-smtp's client answers a
// failed AUTH (535) with a stray "*" line (client.go Auth: "abort the
// AUTH"), then may retry on the same connection. Dovecot's submission
// server answers the "*" with 500 and carries on (checked: the same go-smtp
// calls on a lab instance's submission port, behind a PROXY header, log
// in); maildirector must too, or a client library that works against
// Dovecot breaks behind it.
//
// FAILS today: protocols/submission closes the session on the first unknown
// command before AUTH (parseCommand rejects the verb "*"), so the
// retry reads EOF.
func TestSubmissionGoSMTPRetryAfterWrongPassword(t *testing.T) {
	e, sink := submissionEnv(t, setupSpec{})
	c := submissionClientStartTLS(t, e.addrs["submission"])
	err := c.Auth(submissionSASL(sasl.Plain, "user079", "wrong"))
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 535 {
		t.Fatalf("AUTH with a wrong password: got %v, want 535", err)
	}
	submissionAuth(t, c, sasl.Plain, "user079")
	submissionSend(t, c, "user079@lab.test", []string{"rcpt@example.org"},
		submissionMessage("user079@lab.test", "rcpt@example.org", "user079.retry@lab.test"))
	c.Quit()
	sinkMessage(t, sink, "user079.retry@lab.test")
}

// TestSameUserSameServerAcrossProtocols: whichever front door a user comes
// through (IMAP, POP3, submission; plaintext or TLS), Dovecot logs every
// login of that user on the one server the director's hash names.
func TestSameUserSameServerAcrossProtocols(t *testing.T) {
	frontends := append(submissionFrontends(),
		frontendSpec{Name: "imap", Protocol: "imap", TLS: "starttls", Plaintext: "allow"},
		frontendSpec{Name: "pop3", Protocol: "pop3", TLS: "starttls", Plaintext: "allow"},
		frontendSpec{Name: "pop3s", Protocol: "pop3", TLS: "implicit"},
	)
	e, _ := submissionEnv(t, setupSpec{Instances: 3, Frontends: frontends})
	services := []string{"imap-login", "pop3-login", "submission-login"}
	perServer := make(map[string]int)
	for i := range 12 {
		user := fmt.Sprintf("user%03d", 100+i)
		im := greeted(t, e.addrs["imap"])
		im.login(user)
		im.logout()

		p := pop3Greeted(t, e.addrs["pop3"])
		p.login(user)
		p.quit()
		p = pop3GreetedTLS(t, e.addrs["pop3s"])
		p.login(user)
		p.quit()

		c := submissionClientStartTLS(t, e.addrs["submission"])
		submissionAuth(t, c, sasl.Plain, user)
		c.Quit()

		want := e.hashServer(user)
		perServer[want]++
		wantCount := map[string]int{"imap-login": 1, "pop3-login": 2, "submission-login": 1}
		for _, service := range services {
			eventually(t, service+" login of "+user, func() bool { return len(frontDoorLogins(e, service, user)[want]) == wantCount[service] })
			if got := frontDoorLogins(e, service, user); len(got) != 1 {
				t.Errorf("%s through %s: logins by server %v, want all on %s", user, service, got, want)
			}
		}
		if got := e.loginsOf(user); len(got) != 1 || got[want] != 4 {
			t.Errorf("%s: logins per server %v, want 4 on %s only", user, got, want)
		}
	}
	if len(perServer) < 2 {
		t.Errorf("users per server %v: the test users do not spread over the servers", perServer)
	}
}

// TestSubmissionBadInput: hostile or broken submission clients get a clear
// reply or a close, commands pipelined behind STARTTLS are discarded, the
// process stays up and a logged-in bystander carries on.
func TestSubmissionBadInput(t *testing.T) {
	e, sink := submissionEnv(t, setupSpec{})
	addr := e.addrs["submissionplain"]

	bystander := submissionClientStartTLS(t, e.addrs["submission"])
	submissionAuth(t, bystander, sasl.Plain, "user080")

	// Sizes stay well above the 2 KiB line cap and within the socket
	// buffers, so the client finishes writing before the close.
	noise := make([]byte, 16<<10)
	rand.Read(noise)
	closes := []struct {
		name string
		send func(s *rawSubmission)
		want string // a reply the client must see before the close ("" = close is enough)
	}{
		{"overlong line", func(s *rawSubmission) { s.send("EHLO " + strings.Repeat("x", 16<<10) + "\r\n") }, "500 5.5.2"},
		{"overlong AUTH response", func(s *rawSubmission) {
			s.send("EHLO client\r\nAUTH PLAIN\r\n" + strings.Repeat("QUFB", 4<<10) + "\r\n")
		}, "500 5.5.2"},
		{"1000 pipelined garbage lines", func(s *rawSubmission) { s.send(strings.Repeat("garbage in, garbage out\r\n", 1000)) }, "500 5.5.1"},
		{"binary noise", func(s *rawSubmission) { s.send(string(noise)) }, ""},
		{"HTTP request", func(s *rawSubmission) { s.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n") }, "500"},
		{"TLS ClientHello on the plaintext port", func(s *rawSubmission) {
			go tls.Client(s.c, clientTLS()).Handshake()
		}, ""},
	}
	for _, tt := range closes {
		t.Run(tt.name, func(t *testing.T) {
			s := submissionGreeted(t, addr)
			s.c.SetDeadline(time.Now().Add(30 * time.Second))
			tt.send(s)
			lines, err := s.drain()
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
		s := submissionGreeted(t, addr)
		if l := s.cmd("EHLO client.lab.test"); !strings.HasPrefix(l, "250 ") {
			t.Fatalf("EHLO: got %q, want 250", l)
		}
		if l := s.cmd("AUTH PLAIN !!!not-base64!!!"); !strings.HasPrefix(l, "501 ") {
			t.Errorf("AUTH PLAIN with invalid initial response: got %q, want 501", l)
		}
		if l := s.cmd("AUTH LOGIN"); !strings.HasPrefix(l, "334 ") {
			t.Fatalf("AUTH LOGIN: got %q, want 334", l)
		}
		if l := s.cmd("%%%"); !strings.HasPrefix(l, "501 ") {
			t.Errorf("invalid continued response: got %q, want 501", l)
		}
		// The session is still usable: AUTH LOGIN without initial response.
		if l := s.cmd("AUTH LOGIN"); !strings.HasPrefix(l, "334 ") {
			t.Fatalf("AUTH LOGIN: got %q, want 334", l)
		}
		if l := s.cmd(base64.StdEncoding.EncodeToString([]byte("user081"))); !strings.HasPrefix(l, "334 ") {
			t.Fatalf("AUTH LOGIN user name: got %q, want 334", l)
		}
		if l := s.cmd(base64.StdEncoding.EncodeToString([]byte("pass"))); !strings.HasPrefix(l, "235 ") {
			t.Fatalf("AUTH LOGIN password: got %q, want 235", l)
		}
		if l := s.cmd("QUIT"); !strings.HasPrefix(l, "221") {
			t.Errorf("QUIT: got %q, want 221", l)
		}
	})

	t.Run("commands pipelined behind STARTTLS", func(t *testing.T) {
		s := submissionGreeted(t, addr)
		if l := s.cmd("EHLO client.lab.test"); !strings.HasPrefix(l, "250 ") {
			t.Fatalf("EHLO: got %q, want 250", l)
		}
		// RFC 3207 section 6: what came before the handshake must not be
		// acted on after it.
		s.send("STARTTLS\r\nAUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00user082\x00pass")) + "\r\n")
		if l := s.reply(); !strings.HasPrefix(l, "220 ") {
			t.Fatalf("STARTTLS: got %q, want 220", l)
		}
		s.handshake()
		// The first reply after the handshake must answer this NOOP, not
		// the pipelined AUTH.
		if l := s.cmd("NOOP"); l != "250 2.0.0 OK" {
			t.Errorf("first reply after STARTTLS: got %q, want the NOOP's 250 2.0.0 OK", l)
		}
		// The session forgot the EHLO (RFC 3207 section 4.2).
		if l := s.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00user082\x00pass"))); !strings.HasPrefix(l, "503 ") {
			t.Errorf("AUTH without EHLO after STARTTLS: got %q, want 503", l)
		}
		if l := s.cmd("QUIT"); !strings.HasPrefix(l, "221") {
			t.Errorf("QUIT: got %q, want 221", l)
		}
		if logins := frontDoorLogins(e, "submission-login", "user082"); len(logins) != 0 {
			t.Errorf("the pipelined AUTH logged in: %v", logins)
		}
	})

	if e.md.exited() {
		t.Fatalf("maildirector died:\n%s", e.md.log.String())
	}
	if err := bystander.Noop(); err != nil {
		t.Errorf("bystander NOOP after the abuse: %v", err)
	}
	submissionSend(t, bystander, "user080@lab.test", []string{"rcpt@example.org"},
		submissionMessage("user080@lab.test", "rcpt@example.org", "user080.bystander@lab.test"))
	bystander.Quit()
	sinkMessage(t, sink, "user080.bystander@lab.test")
}
