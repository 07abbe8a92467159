package integration

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

// longGrace replaces the harness's 2s shutdown_grace with one far longer
// than any test waits, so that a session ended before it was ended by its
// protocol's rule, not by the grace period.
func longGrace(e *env, cfg string) string {
	return strings.Replace(cfg, `shutdown_grace = "2s"`, `shutdown_grace = "60s"`, 1)
}

// graceWarning is what maildirector logs when the grace period ended
// sessions; a shutdown that ended every session by its protocol's rule
// does not log it.
const graceWarning = "sessions still open at the end of the grace period were closed"

// idleSession is a logged-in IMAP session in IDLE.
type idleSession struct {
	c net.Conn
	r *bufio.Reader
}

// openIdle logs user in on addr (over TLS when tlsOn), selects INBOX and
// starts IDLE (RFC 2177). It returns errors, for use from goroutines.
func openIdle(addr, user string, tlsOn bool) (*idleSession, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP}, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	if tlsOn {
		tc := tls.Client(c, clientTLS())
		tc.SetDeadline(time.Now().Add(30 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, fmt.Errorf("tls: %w", err)
		}
		c = tc
	}
	s := &idleSession{c: c, r: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	want := func(prefix string) error {
		for range 50 {
			l, err := s.r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("waiting for %q: %w", prefix, err)
			}
			if strings.HasPrefix(l, prefix) {
				return nil
			}
			if !strings.HasPrefix(l, "* ") {
				return fmt.Errorf("waiting for %q: got %q", prefix, l)
			}
		}
		return fmt.Errorf("no %q in 50 lines", prefix)
	}
	steps := []struct{ send, want string }{
		{"", "* OK"},
		{"a LOGIN " + user + " pass\r\n", "a OK"},
		{"b SELECT INBOX\r\n", "b OK"},
		{"c IDLE\r\n", "+ "},
	}
	for _, st := range steps {
		if st.send != "" {
			if _, err := c.Write([]byte(st.send)); err != nil {
				c.Close()
				return nil, err
			}
		}
		if err := want(st.want); err != nil {
			c.Close()
			return nil, err
		}
	}
	c.SetDeadline(time.Time{})
	return s, nil
}

// untilClosed reads what is left until the connection closes (bounded by
// d) and returns the lines.
func (s *idleSession) untilClosed(d time.Duration) ([]string, error) {
	s.c.SetReadDeadline(time.Now().Add(d))
	var lines []string
	for range 1000 {
		l, err := s.r.ReadString('\n')
		if l != "" {
			lines = append(lines, strings.TrimRight(l, "\r\n"))
		}
		if err != nil {
			if strings.Contains(err.Error(), "EOF") {
				return lines, nil
			}
			return lines, err
		}
	}
	return lines, fmt.Errorf("more than 1000 lines")
}

// TestShutdownIdleSessionsHearBye: SIGTERM with hundreds of logged-in IMAP
// sessions in IDLE (300 in make test, 1,000 in make soak; a quarter over
// implicit TLS): every session receives "* BYE" and a close, and
// maildirector exits well within shutdown_grace (60s here), without the
// grace period having to close anything.
func TestShutdownIdleSessionsHearBye(t *testing.T) {
	sessions := 300
	if soakScale() {
		sessions = 1000
	}
	e := startEnvEdited(t, setupSpec{
		Frontends: imapFrontends()[:2],
		Lab:       dovecotlab.Options{Users: 250},
	}, nil, longGrace)

	open := make([]*idleSession, sessions)
	errs := make([]error, sessions)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				addr, tlsOn := e.addrs["imap"], i%4 == 3
				if tlsOn {
					addr = e.addrs["imaps"]
				}
				open[i], errs[i] = openIdle(addr, fmt.Sprintf("user%03d", i%250), tlsOn)
			}
		}()
	}
	for i := range sessions {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	t.Logf("%d sessions in IDLE", sessions)

	e.md.cmd.Process.Signal(syscall.SIGTERM)
	bye := make([]bool, sessions)
	for i, s := range open {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.c.Close()
			lines, err := s.untilClosed(30 * time.Second)
			for _, l := range lines {
				bye[i] = bye[i] || strings.HasPrefix(l, "* BYE")
			}
			if err != nil || !bye[i] {
				t.Errorf("session %d after SIGTERM: got %q, %v; want * BYE and a close", i, lines, err)
			}
		}()
	}
	wg.Wait()
	select {
	case <-e.md.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("maildirector still running when its 60s grace period is over")
	}
	if e.md.err != nil {
		t.Errorf("exit: %v, want 0", e.md.err)
	}
	n := 0
	for _, b := range bye {
		if b {
			n++
		}
	}
	log := e.md.log.String()
	if strings.Contains(log, graceWarning) {
		t.Errorf("the grace period had to close sessions; want every IDLE session ended with * BYE before it")
	}
	if !strings.Contains(log, "maildirector stopped") {
		t.Errorf("no clean stop in the log")
	}
	t.Logf("SIGTERM: %d of %d IDLE sessions got * BYE; maildirector exited within its grace period", n, sessions)
}

// TestShutdownEachProtocolAtItsPoint: SIGTERM ends each session at a clean
// point of its protocol: a client that has not logged in hears "* BYE" at
// once; logged-in IMAP and POP3 sessions hear "* BYE" / "-ERR" once the
// server has answered; a submission session hears 421 after its
// transaction; an LMTP transaction in progress is finished (delivered once,
// answered 250) and then the MTA hears 421. All of it long before the
// grace period ends.
func TestShutdownEachProtocolAtItsPoint(t *testing.T) {
	sink, err := startSink(t)
	if err != nil {
		t.Fatal(err)
	}
	e := startEnvEdited(t, setupSpec{
		Frontends: []frontendSpec{
			{Name: "imap", Protocol: "imap"},
			{Name: "pop3", Protocol: "pop3"},
			{Name: "submission", Protocol: "submission", TLS: "starttls", Plaintext: "allow"},
			lmtpFrontends("")[0],
		},
		Backend: lmtpBackend,
		Lab:     dovecotlab.Options{SubmissionRelay: sink},
	}, nil, longGrace)

	pre := greeted(t, e.addrs["imap"])
	imap := greeted(t, e.addrs["imap"])
	imap.login("user070")
	imap.selectInbox()
	pop := pop3Greeted(t, e.addrs["pop3"])
	pop.login("user071")
	sub := submissionGreeted(t, e.addrs["submission"])
	sub.ehlo()
	plain := base64.StdEncoding.EncodeToString([]byte("\x00user072\x00pass"))
	if l := sub.cmd("AUTH PLAIN " + plain); !strings.HasPrefix(l, "235 ") {
		t.Fatalf("AUTH: got %q, want 235", l)
	}
	mta := lmtpRawGreeted(t, e.addrs["lmtp"])
	if code, l := mta.cmd("MAIL FROM:<mta@example.org>"); code != 250 {
		t.Fatalf("MAIL: got %q, want 250", l)
	}
	rcpt := lmtpAddr("user073")
	if code, l := mta.cmd("RCPT TO:<" + rcpt + ">"); code != 250 {
		t.Fatalf("RCPT: got %q, want 250", l)
	}

	e.md.cmd.Process.Signal(syscall.SIGTERM)
	eventually(t, "the shutdown to start", func() bool { return strings.Contains(e.md.log.String(), "shutting down") })

	if lines, err := pre.drain(); err != nil || len(lines) == 0 || !strings.HasPrefix(lines[0], "* BYE") {
		t.Errorf("IMAP before login: got %q, %v; want * BYE and a close", lines, err)
	}
	if lines, err := imap.drain(); err != nil || len(lines) != 1 || !strings.HasPrefix(lines[0], "* BYE") {
		t.Errorf("IMAP logged in: got %q, %v; want * BYE and a close", lines, err)
	}
	if lines, err := pop.drain(); err != nil || len(lines) != 1 || !strings.HasPrefix(lines[0], "-ERR") {
		t.Errorf("POP3 logged in: got %q, %v; want -ERR and a close", lines, err)
	}
	if lines, err := sub.drain(); err != nil || len(lines) != 1 || !strings.HasPrefix(lines[0], "421 ") {
		t.Errorf("submission logged in: got %q, %v; want 421 and a close", lines, err)
	}
	// The MTA's transaction began before the signal: it is finished.
	if code, l := mta.cmd("DATA"); code != 354 {
		t.Fatalf("DATA after SIGTERM, inside a transaction: got %q, want 354", l)
	}
	mta.write(string(lmtpMessage("life-shutdown", 0)) + ".\r\n")
	if code, l := mta.reply(); code != 250 {
		t.Errorf("the data after SIGTERM: got %q, want 250", l)
	}
	if code, l := mta.reply(); code != 421 {
		t.Errorf("after the transaction: got %q, want 421", l)
	}
	eventually(t, "maildirector to exit", e.md.exited)
	copies := 0
	for _, ids := range e.lmtpIDs("user073") {
		copies += ids["life-shutdown"]
	}
	if copies != 1 {
		t.Errorf("the message finished after SIGTERM: %d copies, want 1", copies)
	}
	if strings.Contains(e.md.log.String(), graceWarning) {
		t.Errorf("the grace period had to close sessions; want each ended at its protocol's point")
	}
}
