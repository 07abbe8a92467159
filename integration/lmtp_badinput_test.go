package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lmtpSpoolOptions are [frontend.lmtp.lmtp] lines that send every body over
// 4 KiB to a temporary file in dir.
func lmtpSpoolOptions(dir string) string {
	return fmt.Sprintf("spool_memory = \"4KiB\"\nspool_dir = %q\n", dir)
}

// lmtpSpoolEmpty fails the test if dir holds any file.
func lmtpSpoolEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, en := range entries {
		t.Errorf("spool_dir holds %s, want nothing left", en.Name())
	}
}

// TestLMTPBadInput drives one maildirector with hostile and broken LMTP
// input. Each case is answered as RFC 5321 and RFC 2033 say, nothing
// wrong is delivered, and the process stays up and keeps delivering.
func TestLMTPBadInput(t *testing.T) {
	spool := t.TempDir()
	e := startEnv(t, setupSpec{
		Instances: 2,
		Frontends: lmtpFrontends("max_recipients = 50\n" + lmtpSpoolOptions(spool)),
		Backend:   lmtpBackend,
	})
	addr := e.addrs["lmtp"]

	t.Run("RCPT before MAIL", func(t *testing.T) {
		r := lmtpRawGreeted(t, addr)
		// RFC 5321 section 4.1.4: out of sequence is 503.
		if code, line := r.cmd("RCPT TO:<user000@lab.test>"); code != 503 || !strings.Contains(line, "5.5.1") {
			t.Errorf("got %q, want 503 5.5.1", line)
		}
		if code, line := r.cmd("NOOP"); code != 250 {
			t.Errorf("NOOP after it: got %q, want 250", line)
		}
	})

	t.Run("DATA without RCPT", func(t *testing.T) {
		r := lmtpRawGreeted(t, addr)
		if code, line := r.cmd("MAIL FROM:<mta@example.org>"); code != 250 {
			t.Fatalf("MAIL: got %q, want 250", line)
		}
		if code, line := r.cmd("DATA"); code != 503 || !strings.Contains(line, "5.5.1") {
			t.Errorf("got %q, want 503 5.5.1", line)
		}
	})

	t.Run("10k recipients", func(t *testing.T) {
		const n, limit = 10000, 50
		r := lmtpRawGreeted(t, addr)
		if code, line := r.cmd("MAIL FROM:<mta@example.org>"); code != 250 {
			t.Fatalf("MAIL: got %q, want 250", line)
		}
		// Pipelined (RFC 2033 section 4.2 makes PIPELINING mandatory): the
		// commands are written while the replies are read.
		var cmds bytes.Buffer
		for i := range n {
			if i < limit {
				fmt.Fprintf(&cmds, "RCPT TO:<user%03d@lab.test>\r\n", i)
			} else {
				fmt.Fprintf(&cmds, "RCPT TO:<nobody%05d@lab.test>\r\n", i)
			}
		}
		werr := make(chan error, 1)
		go lmtpWriteAll(r, cmds.Bytes(), werr)
		for i := range n {
			code, line := r.reply()
			switch {
			case i < limit && code != 250:
				t.Fatalf("RCPT %d: got %q, want 250", i, line)
			case i >= limit && (code != 452 || !strings.Contains(line, "4.5.3")):
				// RFC 5321 section 4.5.3.1.10: too many recipients is 452.
				t.Fatalf("RCPT %d: got %q, want 452 4.5.3", i, line)
			}
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		if code, line := r.cmd("DATA"); code != 354 {
			t.Fatalf("DATA: got %q, want 354", line)
		}
		r.write(string(lmtpMessage("tenk", 0)) + ".\r\n")
		for i := range limit {
			if code, line := r.reply(); code != 250 || !strings.Contains(line, fmt.Sprintf("<user%03d@lab.test>", i)) {
				t.Fatalf("reply %d after the data: got %q, want 250 for user%03d", i, line, i)
			}
		}
		for i := range limit {
			u := fmt.Sprintf("user%03d", i)
			if got := e.lmtpIDs(u); got[e.lmtpServer(u)]["tenk"] != 1 || len(got) != 1 {
				t.Errorf("%s: got %v, want one \"tenk\" on %s", u, got, e.lmtpServer(u))
			}
		}
	})

	t.Run("overlong command line", func(t *testing.T) {
		r := lmtpRawGreeted(t, addr)
		if code, line := r.cmd("MAIL FROM:<mta@example.org>"); code != 250 {
			t.Fatalf("MAIL: got %q, want 250", line)
		}
		// RFC 5321 section 4.5.3.1.4: a command line is at most 512
		// octets; go-smtp allows MaxLineLength (2000) and ends the session.
		code, line := r.cmd("RCPT TO:<" + strings.Repeat("x", 5000) + "@lab.test>")
		if code != 500 || !strings.Contains(line, "5.4.0") {
			t.Errorf("got %q, want 500 5.4.0", line)
		}
		if l, err := r.r.ReadLine(); err == nil {
			t.Errorf("after it: got %q, want the connection closed", l)
		}
	})

	t.Run("overlong line in DATA", func(t *testing.T) {
		u := "user060"
		r := lmtpRawGreeted(t, addr)
		r.cmd("MAIL FROM:<mta@example.org>")
		if code, line := r.cmd("RCPT TO:<" + lmtpAddr(u) + ">"); code != 250 {
			t.Fatalf("RCPT: got %q, want 250", line)
		}
		if code, line := r.cmd("DATA"); code != 354 {
			t.Fatalf("DATA: got %q, want 354", line)
		}
		r.write("X-Test-Id: longline\r\n\r\n" + strings.Repeat("y", 5000) + "\r\n.\r\n")
		// RFC 5321 section 4.5.3.1.6: a text line is at most 1000 octets.
		// The message is refused for good: the client's fault, not the proxy's.
		if code, line := r.reply(); code != 554 || !strings.Contains(line, "5.6.0") {
			t.Errorf("got %q, want 554 5.6.0", line)
		}
		if got := e.lmtpCounts(u); len(got) != 0 {
			t.Errorf("%s: got messages %v, want none", u, got)
		}
	})

	t.Run("bare LF smuggling", func(t *testing.T) {
		victim, target := "user061", "user062"
		r := lmtpRawGreeted(t, addr)
		r.cmd("MAIL FROM:<mta@example.org>")
		if code, line := r.cmd("RCPT TO:<" + lmtpAddr(victim) + ">"); code != 250 {
			t.Fatalf("RCPT: got %q, want 250", line)
		}
		if code, line := r.cmd("DATA"); code != 354 {
			t.Fatalf("DATA: got %q, want 354", line)
		}
		// CVE-2023-51764 style: "\n.\n" ends DATA for lenient servers
		// (Dovecot 2.3 among them), and the rest is a second transaction.
		r.write("From: a@example.org\r\nX-Test-Id: smuggle\r\n\r\nbody\n.\n" +
			"MAIL FROM:<evil@example.org>\r\nRCPT TO:<" + lmtpAddr(target) + ">\r\nDATA\r\n" +
			"X-Test-Id: smuggled\r\n\r\nevil\r\n.\r\n")
		if code, line := r.reply(); code != 250 || !strings.Contains(line, "<"+lmtpAddr(victim)+">") {
			t.Fatalf("after the data: got %q, want one 250 for %s", line, victim)
		}
		// Nothing more was answered: the next reply is NOOP's.
		if code, line := r.cmd("NOOP"); code != 250 || !strings.Contains(line, "2.0.0") {
			t.Errorf("NOOP: got %q, want its 250 (an extra reply means a smuggled command)", line)
		}
		if got := e.lmtpIDs(target); len(got) != 0 {
			t.Errorf("%s: got %v, want nothing (smuggled)", target, got)
		}
		got := e.lmtpIDs(victim)
		s := e.lmtpServer(victim)
		if got[s]["smuggle"] != 1 || len(got[s]) != 1 || len(got) != 1 {
			t.Fatalf("%s: got %v, want exactly one \"smuggle\" on %s", victim, got, s)
		}
		files, err := e.instanceOf(s).MaildirFiles(victim)
		if err != nil {
			t.Fatal(err)
		}
		body, err := os.ReadFile(filepath.Join(e.instanceOf(s).Dir, "mail", victim, "Maildir", files[0]))
		if err != nil {
			t.Fatal(err)
		}
		// Dovecot stores LF line ends (mail_save_crlf = no); what it got
		// was CRLF only, so no CR is left anywhere, and the would-be
		// terminator and commands are plain lines of the one message.
		if bytes.Contains(body, []byte("\r")) {
			t.Errorf("stored message holds a CR: %q", body)
		}
		for _, want := range []string{"\nbody\n.\nMAIL FROM:<evil@example.org>\n", "\nX-Test-Id: smuggled\n"} {
			if !bytes.Contains(body, []byte(want)) {
				t.Errorf("stored message %q does not hold %q", body, want)
			}
		}
	})

	t.Run("disconnect mid-DATA", func(t *testing.T) {
		u := "user063"
		r := lmtpRawGreeted(t, addr)
		r.cmd("MAIL FROM:<mta@example.org>")
		if code, line := r.cmd("RCPT TO:<" + lmtpAddr(u) + ">"); code != 250 {
			t.Fatalf("RCPT: got %q, want 250", line)
		}
		if code, line := r.cmd("DATA"); code != 354 {
			t.Fatalf("DATA: got %q, want 354", line)
		}
		refused := strings.Count(e.md.log.String(), `msg="lmtp data refused"`)
		// Past spool_memory, so the partial body is on disk when the client goes.
		msg := lmtpMessage("cut", 20<<10)
		r.write(string(msg[:len(msg)-100]))
		r.c.Close()
		eventually(t, "maildirector to give up on the data", func() bool {
			return strings.Count(e.md.log.String(), `msg="lmtp data refused"`) > refused
		})
		m := lmtpDial(t, addr)
		if replies, err := m.send("mta@example.org", []string{lmtpAddr(u)}, lmtpMessage("after-cut", 0)); err != nil || replies[0].Code != 250 {
			t.Fatalf("next delivery: got %v, %v, want 250", replies, err)
		}
		if got := e.lmtpIDs(u)[e.lmtpServer(u)]; got["cut"] != 0 || got["after-cut"] != 1 {
			t.Errorf("%s: got %v, want only \"after-cut\"", u, got)
		}
		lmtpSpoolEmpty(t, spool)
	})

	if e.md.exited() {
		t.Fatalf("maildirector exited: %v", e.md.err)
	}
	m := lmtpDial(t, addr)
	replies, err := m.send("mta@example.org", []string{lmtpAddr("user070")}, lmtpMessage("still-up", 10<<10))
	if err != nil || replies[0].Code != 250 {
		t.Fatalf("delivery after the bad input: got %v, %v, want 250", replies, err)
	}
	lmtpSpoolEmpty(t, spool)
	if strings.Contains(e.md.log.String(), "panic") {
		t.Errorf("maildirector logged a panic")
	}
}

// lmtpWriteAll writes b to the raw session and reports the result on done;
// it exits when the write completes or fails (the connection's deadline).
func lmtpWriteAll(r *lmtpRaw, b []byte, done chan<- error) {
	r.c.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := r.c.Write(b)
	done <- err
}
