package integration

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/maildirector/maildirector/internal/dovecotlab"
	"github.com/maildirector/maildirector/internal/smtpsink"
)

// submissionFrontends are the submission front doors of the tests: STARTTLS
// that refuses AUTH before TLS (587-style, plaintext_login = "auto"),
// implicit TLS (465-style), and STARTTLS with plaintext AUTH allowed.
func submissionFrontends() []frontendSpec {
	return []frontendSpec{
		{Name: "submission", Protocol: "submission", TLS: "starttls"},
		{Name: "submissions", Protocol: "submission", TLS: "implicit"},
		{Name: "submissionplain", Protocol: "submission", TLS: "starttls", Plaintext: "allow"},
	}
}

// submissionEnv starts an SMTP sink, a lab whose submission services relay
// to it, and maildirector with spec's frontends (submissionFrontends when
// spec has none).
func submissionEnv(t *testing.T, spec setupSpec) (*env, *smtpsink.Sink) {
	t.Helper()
	sink, err := smtpsink.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	if spec.Frontends == nil {
		spec.Frontends = submissionFrontends()
	}
	spec.Lab = dovecotlab.Options{SubmissionRelay: sink.Addr()}
	return startEnv(t, spec), sink
}

// submissionClient returns a go-smtp client on a plaintext (or STARTTLS)
// frontend; the greeting is read by its first command.
func submissionClient(t testing.TB, addr string) *smtp.Client {
	t.Helper()
	c := smtp.NewClient(dial(t, addr))
	c.CommandTimeout = 15 * time.Second
	c.SubmissionTimeout = 15 * time.Second
	return c
}

// submissionClientStartTLS returns a client that did EHLO, STARTTLS (RFC 3207); its
// next command sends EHLO again.
func submissionClientStartTLS(t testing.TB, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.NewClientStartTLS(dial(t, addr), clientTLS())
	if err != nil {
		t.Fatalf("STARTTLS with %s: %v", addr, err)
	}
	c.CommandTimeout = 15 * time.Second
	c.SubmissionTimeout = 15 * time.Second
	return c
}

// submissionClientTLS returns a client on an implicit-TLS frontend (RFC 8314).
func submissionClientTLS(t testing.TB, addr string) *smtp.Client {
	t.Helper()
	c := smtp.NewClient(dialTLS(t, addr))
	c.CommandTimeout = 15 * time.Second
	c.SubmissionTimeout = 15 * time.Second
	return c
}

// submissionAuth authenticates with PLAIN (or LOGIN) and fails the test on error.
func submissionAuth(t testing.TB, c *smtp.Client, mech, user string) {
	t.Helper()
	if err := c.Auth(submissionSASL(mech, user, "pass")); err != nil {
		t.Fatalf("AUTH %s as %s: %v", mech, user, err)
	}
}

func submissionSASL(mech, user, pass string) sasl.Client {
	if mech == sasl.Login {
		return sasl.NewLoginClient(user, pass)
	}
	return sasl.NewPlainClient("", user, pass)
}

// submissionMessage is a message that the sink can recognise by its Message-ID.
func submissionMessage(from, to, id string) []byte {
	return []byte("From: <" + from + ">\r\n" +
		"To: <" + to + ">\r\n" +
		"Subject: submitted through maildirector\r\n" +
		"Message-ID: <" + id + ">\r\n" +
		"\r\n" +
		"Sent by " + from + " through maildirector and Dovecot.\r\n" +
		".leading dot\r\n")
}

// submissionSend runs one MAIL/RCPT/DATA transaction and fails the test on error.
func submissionSend(t testing.TB, c *smtp.Client, from string, to []string, msg []byte) {
	t.Helper()
	if err := c.SendMail(from, to, bytes.NewReader(msg)); err != nil {
		t.Fatalf("send mail from %s to %v: %v", from, to, err)
	}
}

// sinkMessage waits for the message whose Message-ID is id to reach the sink.
func sinkMessage(t testing.TB, sink *smtpsink.Sink, id string) smtpsink.Message {
	t.Helper()
	var got smtpsink.Message
	eventually(t, "message "+id+" at the sink", func() bool {
		for _, m := range sink.Messages() {
			if bytes.Contains(m.Data, []byte("Message-ID: <"+id+">")) {
				got = m
				return true
			}
		}
		return false
	})
	return got
}

// rawSubmission is a line-level SMTP client for tests that need exact bytes.
type rawSubmission struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

// submissionGreeted connects to a plaintext (or STARTTLS) frontend and reads the 220 greeting.
func submissionGreeted(t testing.TB, addr string) *rawSubmission {
	t.Helper()
	s := &rawSubmission{t: t, c: dial(t, addr)}
	s.r = bufio.NewReader(s.c)
	if g := s.reply(); !strings.HasPrefix(g, "220 ") {
		t.Fatalf("greeting: got %q, want 220", g)
	}
	return s
}

func (s *rawSubmission) send(line string) {
	s.t.Helper()
	s.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(s.c, line); err != nil {
		s.t.Fatalf("send %q: %v", line, err)
	}
}

func (s *rawSubmission) readLine() (string, error) {
	s.c.SetReadDeadline(time.Now().Add(15 * time.Second))
	l, err := s.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// reply reads one reply (RFC 5321 section 4.2.1) and returns its last line.
func (s *rawSubmission) reply() string {
	s.t.Helper()
	for range 1000 {
		l, err := s.readLine()
		if err != nil {
			s.t.Fatalf("read reply: %v", err)
		}
		if len(l) < 4 || l[3] != '-' {
			return l
		}
	}
	s.t.Fatalf("reply of more than 1000 lines")
	return ""
}

// cmd sends one command and returns the last line of its reply.
func (s *rawSubmission) cmd(command string) string {
	s.t.Helper()
	s.send(command + "\r\n")
	return s.reply()
}

// handshake starts TLS on the connection after a 220 to STARTTLS.
func (s *rawSubmission) handshake() {
	s.t.Helper()
	tc := tls.Client(s.c, clientTLS())
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		s.t.Fatalf("STARTTLS handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	s.c = tc
	s.r = bufio.NewReader(tc)
}

// drain reads until EOF and returns the lines seen on the way.
func (s *rawSubmission) drain() ([]string, error) {
	var lines []string
	for range 1 << 16 {
		l, err := s.readLine()
		if l != "" {
			lines = append(lines, l)
		}
		if err == io.EOF {
			return lines, nil
		}
		if err != nil {
			return lines, err
		}
	}
	return lines, nil
}

// ehlo sends EHLO and fails the test unless the server says 250.
func (s *rawSubmission) ehlo() {
	s.t.Helper()
	if l := s.cmd("EHLO client.lab.test"); !strings.HasPrefix(l, "250 ") {
		s.t.Fatalf("EHLO: got %q, want 250", l)
	}
}

// starttls runs STARTTLS and the handshake (RFC 3207 section 4).
func (s *rawSubmission) starttls() {
	s.t.Helper()
	if l := s.cmd("STARTTLS"); !strings.HasPrefix(l, "220 ") {
		s.t.Fatalf("STARTTLS: got %q, want 220", l)
	}
	s.handshake()
}

// sendMail runs MAIL/RCPT/DATA; msg has CRLF line ends and is dot-stuffed
// here (RFC 5321 section 4.5.2).
func (s *rawSubmission) sendMail(from, to string, msg []byte) {
	s.t.Helper()
	for _, c := range []struct{ cmd, want string }{
		{"MAIL FROM:<" + from + ">", "250 "},
		{"RCPT TO:<" + to + ">", "250 "},
		{"DATA", "354 "},
		{strings.ReplaceAll("\r\n"+string(bytes.TrimSuffix(msg, []byte("\r\n"))), "\r\n.", "\r\n..")[2:] + "\r\n.", "250 "},
	} {
		if l := s.cmd(c.cmd); !strings.HasPrefix(l, c.want) {
			s.t.Fatalf("%.20q: got %q, want %s", c.cmd, l, c.want)
		}
	}
}
