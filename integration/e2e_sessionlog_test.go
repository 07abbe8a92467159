package integration

import (
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/maildirector/maildirector/internal/dovecotlab"
	"github.com/maildirector/maildirector/internal/smtpsink"
)

// TestE2ESessionLog: maildirector's one Info line per session (msg=session)
// for IMAP, POP3 and submission, over plaintext and TLS: user is the
// routing key, server is where Dovecot's log says the login landed, tls
// says whether the client used TLS, both byte counters are positive and
// end="server closed" after a polite logout: the client waits for the
// server to close, and the relay logs which side closed first.
func TestE2ESessionLog(t *testing.T) {
	sink, err := smtpsink.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	e := startEnv(t, setupSpec{
		Frontends: []frontendSpec{
			{Name: "imap", Protocol: "imap", Plaintext: "allow"},
			{Name: "imaps", Protocol: "imap", TLS: "implicit"},
			{Name: "pop3", Protocol: "pop3", Plaintext: "allow"},
			{Name: "pop3s", Protocol: "pop3", TLS: "implicit"},
			{Name: "submission", Protocol: "submission", Plaintext: "allow"},
			{Name: "submissions", Protocol: "submission", TLS: "implicit"},
		},
		Lab: dovecotlab.Options{SubmissionRelay: sink.Addr()},
	})
	imapSession := func(t *testing.T, r *rawIMAP, user string) {
		r.login(user)
		r.selectInbox()
		r.send("Z LOGOUT\r\n")
		waitServerClose(t, r.c)
	}
	pop3Session := func(t *testing.T, p *rawPOP3, user string) {
		p.login(user)
		p.send("QUIT\r\n")
		waitServerClose(t, p.c)
	}
	submissionSession := func(t *testing.T, nc net.Conn, c *smtp.Client, user string) {
		submissionAuth(t, c, "PLAIN", user)
		// QUIT on the wire, not c.Quit, which closes at once after the 221.
		io.WriteString(nc, "QUIT\r\n")
		waitServerClose(t, nc)
	}
	tests := []struct {
		name, frontend, user string
		tls                  bool
		run                  func(t *testing.T, addr, user string)
	}{
		{"imap plaintext", "imap", "user070", false, func(t *testing.T, addr, user string) {
			r := greeted(t, addr)
			imapSession(t, r, user)
		}},
		{"imap tls", "imaps", "user071", true, func(t *testing.T, addr, user string) {
			r := greetedTLS(t, addr)
			imapSession(t, r, user)
		}},
		{"pop3 plaintext", "pop3", "user072", false, func(t *testing.T, addr, user string) {
			p := pop3Greeted(t, addr)
			pop3Session(t, p, user)
		}},
		{"pop3 tls", "pop3s", "user073", true, func(t *testing.T, addr, user string) {
			p := pop3GreetedTLS(t, addr)
			pop3Session(t, p, user)
		}},
		{"submission plaintext", "submission", "user074", false, func(t *testing.T, addr, user string) {
			nc := dial(t, addr)
			c := smtp.NewClient(nc)
			submissionSession(t, nc, c, user)
		}},
		{"submission tls", "submissions", "user075", true, func(t *testing.T, addr, user string) {
			nc := dialTLS(t, addr)
			c := smtp.NewClient(nc)
			submissionSession(t, nc, c, user)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, e.addrs[tt.frontend], tt.user)
			server, _ := e.landedOnce(t, tt.user)
			kv := waitSession(t, e, tt.user, func(kv map[string]string) bool {
				return kv["frontend"] == tt.frontend && kv["user"] == tt.user
			})
			checkSessionLine(t, kv, tt.user, server, tt.tls)
		})
	}
}

// waitServerClose reads c until the server closes it (the answer to a
// LOGOUT or QUIT, then EOF), then closes it.
func waitServerClose(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("waiting for the server to close: %v", err)
	}
	c.Close()
}

// checkSessionLine asserts the fields of one msg=session line.
func checkSessionLine(t *testing.T, kv map[string]string, user, server string, tls bool) {
	t.Helper()
	if kv["user"] != user {
		t.Errorf("user: got %q, want %q", kv["user"], user)
	}
	if kv["server"] != server {
		t.Errorf("server: got %q, want %q (where Dovecot logged the login)", kv["server"], server)
	}
	if want := strconv.FormatBool(tls); kv["tls"] != want {
		t.Errorf("tls: got %q, want %s", kv["tls"], want)
	}
	for _, k := range []string{"bytes_in", "bytes_out"} {
		if n, err := strconv.ParseInt(kv[k], 10, 64); err != nil || n <= 0 {
			t.Errorf("%s: got %q, want a positive count", k, kv[k])
		}
	}
	if kv["end"] != "server closed" {
		t.Errorf("end: got %q, want server closed", kv["end"])
	}
	if kv["duration"] == "" {
		t.Error("duration: missing")
	}
	if t.Failed() {
		t.Logf("session line: %v", kv)
	}
}

// TestE2ESessionLogLMTP: the session line of a plaintext LMTP delivery:
// tls=false, positive byte counters, end=done, the user the recipient was
// routed as and the server it went to (an LMTP session names every user
// and server its last transaction delivered to).
func TestE2ESessionLogLMTP(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: lmtpFrontends(""), Backend: lmtpBackend})
	for _, tt := range []struct {
		name, user string
		tls        bool
	}{{"plaintext", "user076", false}} {
		t.Run(tt.name, func(t *testing.T) {
			m := lmtpDial(t, e.addrs["lmtp"])
			local := m.rec.Conn.LocalAddr().String()
			replies, err := m.send("a@example.org", []string{lmtpAddr(tt.user)}, lmtpMessage(tt.user, 100))
			if err != nil || replies[0].Code != 250 {
				t.Fatalf("delivery to %s: %v %v, want 250", tt.user, replies, err)
			}
			m.close()
			kv := waitSession(t, e, local, func(kv map[string]string) bool { return kv["remote"] == local })
			if want := strconv.FormatBool(tt.tls); kv["tls"] != want {
				t.Errorf("tls: got %q, want %s", kv["tls"], want)
			}
			for _, k := range []string{"bytes_in", "bytes_out"} {
				if n, err := strconv.ParseInt(kv[k], 10, 64); err != nil || n <= 0 {
					t.Errorf("%s: got %q, want a positive count", k, kv[k])
				}
			}
			if kv["end"] != "done" {
				t.Errorf("end: got %q, want done", kv["end"])
			}
			// The user the recipient was routed as, and its server.
			if want := lmtpAddr(tt.user); kv["user"] != want {
				t.Errorf("user: got %q, want %q", kv["user"], want)
			}
			if want := e.lmtpServer(tt.user); kv["server"] != want {
				t.Errorf("server: got %q, want %q", kv["server"], want)
			}
			in := e.instanceOf(e.lmtpServer(tt.user))
			if n, err := in.MessageCount(tt.user); err != nil || n != 1 {
				t.Errorf("messages of %s on %s: got %d (%v), want 1", tt.user, in.Name, n, err)
			}
			if t.Failed() {
				t.Logf("session line: %v", kv)
			}
		})
	}
}
