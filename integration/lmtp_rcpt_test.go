package integration

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

// lmtpRcptTransaction sends MAIL and rcpts pipelined over a raw session
// (the writes run while the replies are read) and returns the RCPT
// replies; then DATA with msg and the replies after the data, one per RCPT
// answered 250, each checked to name its recipient in RCPT order.
func lmtpRcptTransaction(t *testing.T, r *lmtpRaw, rcpts []string, msg []byte) (rcptLines []string, rcptCodes []int, dataCodes map[int]int) {
	t.Helper()
	if code, line := r.cmd("MAIL FROM:<mta@example.org>"); code != 250 {
		t.Fatalf("MAIL: got %q, want 250", line)
	}
	var cmds bytes.Buffer
	for _, rc := range rcpts {
		fmt.Fprintf(&cmds, "RCPT TO:<%s>\r\n", rc)
	}
	werr := make(chan error, 1)
	go lmtpWriteAll(r, cmds.Bytes(), werr)
	var accepted []int
	for i := range rcpts {
		code, line := r.reply()
		rcptCodes = append(rcptCodes, code)
		rcptLines = append(rcptLines, line)
		if code == 250 {
			accepted = append(accepted, i)
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if len(accepted) == 0 {
		return rcptLines, rcptCodes, nil
	}
	if code, line := r.cmd("DATA"); code != 354 {
		t.Fatalf("DATA: got %q, want 354", line)
	}
	r.write(string(msg) + ".\r\n")
	dataCodes = make(map[int]int)
	for _, i := range accepted {
		code, line := r.reply()
		if !strings.Contains(line, "<"+rcpts[i]+">") {
			t.Fatalf("reply after the data %q: want one for <%s> (RCPT order)", line, rcpts[i])
		}
		dataCodes[i] = code
	}
	return rcptLines, rcptCodes, dataCodes
}

// TestLMTPRcptUnknownUser: recipients on three servers, one unknown user
// and one over-quota user in one transaction. The unknown user gets
// Dovecot's own 550 5.1.1 at RCPT and the over-quota one its 5.2.2 (never a
// 250), as from Dovecot directly or its own LMTP proxy; everyone else 250
// at RCPT and, after the data, one reply per accepted RCPT in RCPT order;
// every accepted recipient has exactly one copy, in the maildir of its
// server.
func TestLMTPRcptUnknownUser(t *testing.T) {
	e := startEnv(t, setupSpec{Instances: 3, Frontends: lmtpFrontends(""), Backend: lmtpBackend})
	var users []string
	for _, s := range []string{"dovecot1", "dovecot2", "dovecot3"} {
		users = append(users, e.lmtpUsersOn(s, 2)...)
	}
	rcpts := []string{lmtpAddr(users[0]), lmtpAddr(users[2]), lmtpAddr("nobody"), lmtpAddr(users[4]),
		lmtpAddr(users[1]), lmtpAddr(users[3]), lmtpAddr(users[5]), lmtpAddr(dovecotlab.FullUser)}

	r := lmtpRawGreeted(t, e.addrs["lmtp"])
	lines, codes, data := lmtpRcptTransaction(t, r, rcpts, lmtpMessage("rcpt-time", 0))
	for i, code := range codes {
		want := 250
		switch i {
		case 2:
			want = 550
		case 7:
			want = 552
		}
		if code != want {
			t.Errorf("RCPT %s: got %q, want %d", rcpts[i], lines[i], want)
		}
	}
	if !strings.Contains(lines[2], "5.1.1") {
		t.Errorf("RCPT of the unknown user: got %q, want Dovecot's 5.1.1", lines[2])
	}
	if !strings.Contains(lines[7], "5.2.2") {
		t.Errorf("RCPT of the over-quota user: got %q, want Dovecot's 5.2.2", lines[7])
	}
	if len(data) != 6 {
		t.Fatalf("replies after the data: got %d, want 6", len(data))
	}
	for i, code := range data {
		if code != 250 {
			t.Errorf("after the data, %s: got %d, want 250", rcpts[i], code)
		}
	}
	for _, u := range users {
		want := e.lmtpServer(u)
		if got := e.lmtpIDs(u); len(got) != 1 || got[want]["rcpt-time"] != 1 || len(got[want]) != 1 {
			t.Errorf("%s: got %v, want exactly one \"rcpt-time\" on %s", u, got, want)
		}
	}
	eventually(t, "the transaction's log line", func() bool {
		return strings.Contains(e.md.log.String(), `msg="lmtp transaction"`) &&
			strings.Contains(e.md.log.String(), "nobody@lab.test@dovecot")
	})
	if strings.Contains(e.md.log.String(), "panic") {
		t.Errorf("maildirector logged a panic")
	}
}

// TestLMTPRcpt10k: 10,000 RCPTs, 100 real users among 9,900 unknown
// ones, sent pipelined. Every RCPT is answered in order with the server's
// own reply: 250 for the real users, 550 for the unknown ones (which use
// up no max_recipients), and each real user gets exactly one copy.
func TestLMTPRcpt10k(t *testing.T) {
	e := startEnv(t, setupSpec{Instances: 2, Frontends: lmtpFrontends(""), Backend: lmtpBackend})
	const n = 10000
	rcpts := make([]string, n)
	real := make(map[int]string)
	for i := range n {
		if i%100 == 50 {
			u := fmt.Sprintf("user%03d", i/100)
			real[i] = u
			rcpts[i] = lmtpAddr(u)
		} else {
			rcpts[i] = fmt.Sprintf("nobody%05d@%s", i, lmtpDomain)
		}
	}
	r := lmtpRawGreeted(t, e.addrs["lmtp"])
	r.c.SetDeadline(time.Now().Add(5 * time.Minute))
	start := time.Now()
	lines, codes, data := lmtpRcptTransaction(t, r, rcpts, lmtpMessage("tenk-rcpt", 0))
	t.Logf("10,000 RCPTs and the data in %v", time.Since(start).Round(time.Millisecond))
	for i, code := range codes {
		_, isReal := real[i]
		switch {
		case isReal && code != 250:
			t.Fatalf("RCPT %d <%s>: got %q, want 250", i, rcpts[i], lines[i])
		case !isReal && (code != 550 || !strings.Contains(lines[i], "5.1.1")):
			t.Fatalf("RCPT %d <%s>: got %q, want 550 5.1.1", i, rcpts[i], lines[i])
		}
	}
	if len(data) != len(real) {
		t.Fatalf("replies after the data: got %d, want %d", len(data), len(real))
	}
	for i, code := range data {
		if code != 250 {
			t.Errorf("after the data, %s: got %d, want 250", rcpts[i], code)
		}
	}
	for _, u := range real {
		want := e.lmtpServer(u)
		if got := e.lmtpIDs(u); len(got) != 1 || got[want]["tenk-rcpt"] != 1 || len(got[want]) != 1 {
			t.Errorf("%s: got %v, want exactly one \"tenk-rcpt\" on %s", u, got, want)
		}
	}
}
