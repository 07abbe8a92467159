package postfixlab

import (
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// lmtpFake is an LMTP server that records each recipient's messages and
// defers the first RCPT of every recipient in deferOnce with 451.
type lmtpFake struct {
	mu        sync.Mutex
	deferOnce map[string]bool
	got       map[string][]string // recipient → Subject of each delivery
}

type lmtpFakeSession struct {
	f     *lmtpFake
	rcpts []string
}

func (f *lmtpFake) NewSession(*gosmtp.Conn) (gosmtp.Session, error) {
	return &lmtpFakeSession{f: f}, nil
}

func (s *lmtpFakeSession) Mail(string, *gosmtp.MailOptions) error { return nil }
func (s *lmtpFakeSession) Reset()                                 { s.rcpts = nil }
func (s *lmtpFakeSession) Logout() error                          { return nil }

func (s *lmtpFakeSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.deferOnce[to] {
		s.f.deferOnce[to] = false
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 4, 1}, Message: "try again"}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *lmtpFakeSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	subject := ""
	for _, line := range strings.Split(string(b), "\r\n") {
		if v, ok := strings.CutPrefix(line, "Subject: "); ok {
			subject = v
		}
	}
	s.f.mu.Lock()
	for _, to := range s.rcpts {
		s.f.got[to] = append(s.f.got[to], subject)
	}
	s.f.mu.Unlock()
	return nil
}

func (f *lmtpFake) deliveries() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string][]string, len(f.got))
	for k, v := range f.got {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// TestRelaysOverLMTPWithRetries: mail submitted to the instance's smtpd for
// the lab domain reaches the LMTP server, a 451 is retried within seconds,
// the queue ends empty, mail to other domains is discarded, and Stop
// leaves no process behind.
func TestRelaysOverLMTPWithRetries(t *testing.T) {
	fake := &lmtpFake{deferOnce: map[string]bool{"later@lab.test": true}, got: make(map[string][]string)}
	srv := gosmtp.NewServer(fake)
	srv.LMTP = true
	srv.Domain = "lmtp.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	in, err := Start(Options{LMTP: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			in.Stop()
		}
	})
	if len(in.processes()) == 0 {
		t.Fatal("no process carries the instance's MAIL_CONFIG after start")
	}

	c, err := gosmtp.Dial(in.SMTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []struct {
		subject string
		rcpts   []string
	}{
		{"one", []string{"now@lab.test", "later@lab.test"}},
		{"two", []string{"now@lab.test", "elsewhere@example.org"}},
	}
	for _, m := range msgs {
		body := fmt.Sprintf("From: sender@mta.test\r\nSubject: %s\r\n\r\nhello\r\n", m.subject)
		if err := c.SendMail("sender@mta.test", m.rcpts, strings.NewReader(body)); err != nil {
			t.Fatalf("send %s: %v", m.subject, err)
		}
	}
	c.Quit()

	deadline := time.Now().Add(30 * time.Second)
	for {
		empty, err := in.QueueEmpty()
		if err != nil {
			t.Fatal(err)
		}
		if empty {
			break
		}
		if time.Now().After(deadline) {
			q, _ := in.Queue()
			t.Fatalf("queue not empty after 30s:\n%s", q)
		}
		time.Sleep(200 * time.Millisecond)
	}
	got := fake.deliveries()
	want := map[string][]string{"now@lab.test": {"one", "two"}, "later@lab.test": {"one"}}
	for rcpt, subjects := range want {
		slices.Sort(got[rcpt]) // two messages, two deliveries in either order
		if g := strings.Join(got[rcpt], ","); g != strings.Join(subjects, ",") {
			t.Errorf("%s: got deliveries %q, want %q", rcpt, g, strings.Join(subjects, ","))
		}
	}
	if len(got) != len(want) {
		t.Errorf("got deliveries for %d recipients, want %d: %v", len(got), len(want), got)
	}
	log, err := in.Log()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"to=<later@lab.test>", "status=deferred", "to=<elsewhere@example.org>, relay=none"} {
		if !strings.Contains(log, s) {
			t.Errorf("log: no %q in\n%s", s, log)
		}
	}

	stopped = true
	if err := in.Stop(); err != nil {
		t.Fatal(err)
	}
	if left := in.processes(); len(left) > 0 {
		t.Errorf("processes %v left after Stop", left)
	}
}
