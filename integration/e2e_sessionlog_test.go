package integration

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/maildirector/maildirector/internal/dovecotlab"
	"github.com/maildirector/maildirector/internal/smtpsink"
)

// sessionLineKeys are the keys every session line has, in the README's
// "Logs" order (err only when an error ended the session).
var sessionLineKeys = []string{"time", "level", "msg", "conn", "session", "frontend", "proto", "remote", "tls", "tls_cipher",
	"user", "backend", "server", "bytes_in", "bytes_out", "connect", "login", "duration", "end"}

// sessionWant is what one session's line must say.
type sessionWant struct {
	frontend, proto, user, server string
	remote                        string               // the client's own address
	tls                           *tls.ConnectionState // nil: plaintext
	relayed                       bool                 // logged in on a server: connect and login took time
	end                           string
}

// TestE2ESessionLog: maildirector's one Info line per session (msg=session)
// for IMAP, POP3 and submission, over plaintext and TLS: remote is the
// client's address, tls and tls_cipher are what the client negotiated
// (crypto/tls names), user is the routing key, server is where Dovecot's
// log says the login landed, both byte counters are positive, connect and
// login (the server's dial; its greeting and the replayed login) took time
// within the session's duration, and end is "server closed" after a polite
// logout: the client waits for the server to close, and the relay logs
// which side closed first.
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
	imapSession := func(t *testing.T, c net.Conn, user string) {
		r := newRawIMAP(t, c)
		if g := r.line(); !strings.HasPrefix(g, "* OK") {
			t.Fatalf("greeting: got %q, want * OK", g)
		}
		r.login(user)
		r.selectInbox()
		r.send("Z LOGOUT\r\n")
		waitServerClose(t, c)
	}
	pop3Session := func(t *testing.T, c net.Conn, user string) {
		p := pop3Greet(t, c)
		p.login(user)
		p.send("QUIT\r\n")
		waitServerClose(t, c)
	}
	submissionSession := func(t *testing.T, c net.Conn, user string) {
		submissionAuth(t, smtp.NewClient(c), "PLAIN", user)
		// QUIT on the wire: go-smtp's Quit closes at once after the 221.
		io.WriteString(c, "QUIT\r\n")
		waitServerClose(t, c)
	}
	tests := []struct {
		name, frontend, proto, user string
		tls                         bool
		run                         func(t *testing.T, c net.Conn, user string)
	}{
		{"imap plaintext", "imap", "imap", "user070", false, imapSession},
		{"imap tls", "imaps", "imap", "user071", true, imapSession},
		{"pop3 plaintext", "pop3", "pop3", "user072", false, pop3Session},
		{"pop3 tls", "pop3s", "pop3", "user073", true, pop3Session},
		{"submission plaintext", "submission", "submission", "user074", false, submissionSession},
		{"submission tls", "submissions", "submission", "user075", true, submissionSession},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := sessionWant{frontend: tt.frontend, proto: tt.proto, user: tt.user, relayed: true, end: "server closed"}
			var c net.Conn
			if tt.tls {
				tc := dialTLS(t, e.addrs[tt.frontend])
				st := tc.ConnectionState()
				c, want.tls = tc, &st
			} else {
				c = dial(t, e.addrs[tt.frontend])
			}
			want.remote = c.LocalAddr().String()
			tt.run(t, c, tt.user)
			want.server, _ = e.landedOnce(t, tt.user)
			kv := waitSession(t, e, tt.user, func(kv map[string]string) bool {
				return kv["frontend"] == tt.frontend && kv["user"] == tt.user
			})
			checkSessionLine(t, kv, want)
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
func checkSessionLine(t *testing.T, kv map[string]string, want sessionWant) {
	t.Helper()
	for _, k := range sessionLineKeys {
		if _, ok := kv[k]; !ok {
			t.Errorf("%s: missing", k)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, kv["time"]); err != nil {
		t.Errorf("time: got %q, want an RFC 3339 time", kv["time"])
	}
	if _, err := strconv.ParseUint(kv["conn"], 10, 64); err != nil {
		t.Errorf("conn: got %q, want the session's number", kv["conn"])
	}
	if prefix, n, ok := strings.Cut(kv["session"], "-"); !ok || len(prefix) != 8 || n != kv["conn"] {
		t.Errorf("session: got %q, want 8 characters, \"-\" and the conn number %s", kv["session"], kv["conn"])
	}
	wantTLS, wantCipher := "none", "none"
	if want.tls != nil {
		wantTLS, wantCipher = tls.VersionName(want.tls.Version), tls.CipherSuiteName(want.tls.CipherSuite)
	}
	for k, v := range map[string]string{
		"level": "INFO", "frontend": want.frontend, "proto": want.proto, "remote": want.remote,
		"tls": wantTLS, "tls_cipher": wantCipher, "user": want.user, "server": want.server, "end": want.end,
	} {
		if kv[k] != v {
			t.Errorf("%s: got %q, want %q", k, kv[k], v)
		}
	}
	for _, k := range []string{"bytes_in", "bytes_out"} {
		if n, err := strconv.ParseInt(kv[k], 10, 64); err != nil || n <= 0 {
			t.Errorf("%s: got %q, want a positive count", k, kv[k])
		}
	}
	durs := map[string]time.Duration{}
	for _, k := range []string{"connect", "login", "duration"} {
		d, err := time.ParseDuration(kv[k])
		if err != nil {
			t.Errorf("%s: got %q, want a duration", k, kv[k])
		}
		durs[k] = d
	}
	if want.relayed && (durs["connect"] <= 0 || durs["login"] <= 0) {
		t.Errorf("connect, login: got %s, %s, want both above zero for a session logged in on a server", kv["connect"], kv["login"])
	}
	if !want.relayed && (durs["connect"] != 0 || durs["login"] != 0) {
		t.Errorf("connect, login: got %s, %s, want 0s for a session that logged in on no server", kv["connect"], kv["login"])
	}
	// duration is rounded to the millisecond, connect and login to the microsecond.
	if durs["duration"]+time.Millisecond < durs["connect"]+durs["login"] {
		t.Errorf("duration: got %s, want at least connect + login (%s)", kv["duration"], durs["connect"]+durs["login"])
	}
	if err, ok := kv["err"]; ok && want.end != "client closed" {
		t.Errorf("err: got %q, want none after end=%s", err, want.end)
	}
	if t.Failed() {
		t.Logf("session line: %v", kv)
	}
}

// TestE2ESessionLogLMTP: the session lines of LMTP sessions: a delivery
// ended with QUIT (end=done, the user the recipient was routed as and the
// server it went to, no server login timed: LMTP dials per recipient), one
// over STARTTLS, and a client lost in the middle of its DATA, which ends
// "client closed" and delivers nothing. Each delivery also has its
// transaction line, with each recipient's server and final reply code.
func TestE2ESessionLogLMTP(t *testing.T) {
	fes := lmtpFrontends("")
	fes = append(fes, frontendSpec{Name: "lmtptls", Protocol: "lmtp", TLS: "starttls"})
	e := startEnv(t, setupSpec{Frontends: fes, Backend: lmtpBackend})
	t.Run("delivery", func(t *testing.T) {
		const user = "user076"
		m := lmtpDial(t, e.addrs["lmtp"])
		local := m.rec.Conn.LocalAddr().String()
		replies, err := m.send("a@example.org", []string{lmtpAddr(user)}, lmtpMessage(user, 100))
		if err != nil || replies[0].Code != 250 {
			t.Fatalf("delivery to %s: %v %v, want 250", user, replies, err)
		}
		m.close()
		server := e.lmtpServer(user)
		kv := waitSession(t, e, local, func(kv map[string]string) bool { return kv["remote"] == local })
		checkSessionLine(t, kv, sessionWant{frontend: "lmtp", proto: "lmtp", user: lmtpAddr(user), server: server, remote: local, end: "done"})
		checkTransactionLine(t, e, lmtpAddr(user)+"@"+server+":250/250")
		in := e.instanceOf(server)
		if n, err := in.MessageCount(user); err != nil || n != 1 {
			t.Errorf("messages of %s on %s: got %d (%v), want 1", user, in.Name, n, err)
		}
	})
	t.Run("starttls", func(t *testing.T) {
		const user = "user077"
		r := lmtpRawGreeted(t, e.addrs["lmtptls"])
		local := r.c.LocalAddr().String()
		if code, line := r.cmd("STARTTLS"); code != 220 {
			t.Fatalf("STARTTLS: got %q, want 220", line)
		}
		tc := tls.Client(r.c, clientTLS())
		if err := tc.Handshake(); err != nil {
			t.Fatalf("TLS handshake after STARTTLS: %v", err)
		}
		st := tc.ConnectionState()
		r = &lmtpRaw{t: t, c: tc, r: textproto.NewReader(bufio.NewReader(tc))}
		server := e.lmtpServer(user)
		for _, cmd := range []string{"LHLO mta.test", "MAIL FROM:<a@example.org>", "RCPT TO:<" + lmtpAddr(user) + ">"} {
			if code, line := r.cmd(cmd); code != 250 {
				t.Fatalf("%s: got %q, want 250", cmd, line)
			}
		}
		if code, line := r.cmd("DATA"); code != 354 {
			t.Fatalf("DATA: got %q, want 354", line)
		}
		r.write(string(lmtpMessage(user, 100)) + ".\r\n")
		if code, line := r.reply(); code != 250 {
			t.Fatalf("after the data: got %q, want 250", line)
		}
		if code, line := r.cmd("QUIT"); code != 221 {
			t.Fatalf("QUIT: got %q, want 221", line)
		}
		kv := waitSession(t, e, local, func(kv map[string]string) bool { return kv["remote"] == local })
		checkSessionLine(t, kv, sessionWant{frontend: "lmtptls", proto: "lmtp", user: lmtpAddr(user), server: server, remote: local, tls: &st, end: "done"})
		checkTransactionLine(t, e, lmtpAddr(user)+"@"+server+":250/250")
	})
	t.Run("client lost mid-DATA", func(t *testing.T) {
		const user = "user078"
		r := lmtpRawGreeted(t, e.addrs["lmtp"])
		local := r.c.LocalAddr().String()
		for _, cmd := range []string{"MAIL FROM:<a@example.org>", "RCPT TO:<" + lmtpAddr(user) + ">"} {
			if code, line := r.cmd(cmd); code != 250 {
				t.Fatalf("%s: got %q, want 250", cmd, line)
			}
		}
		if code, line := r.cmd("DATA"); code != 354 {
			t.Fatalf("DATA: got %q, want 354", line)
		}
		r.write("Subject: cut short\r\n\r\nhalf a mess")
		r.c.Close()
		kv := waitSession(t, e, local, func(kv map[string]string) bool { return kv["remote"] == local })
		// Nothing was delivered: the session names no user; the
		// transaction line has the recipient with its RCPT reply only.
		checkSessionLine(t, kv, sessionWant{frontend: "lmtp", proto: "lmtp", remote: local, end: "client closed"})
		if !strings.Contains(kv["err"], "unexpected EOF") {
			t.Errorf("err: got %q, want the data cut short (unexpected EOF)", kv["err"])
		}
		checkTransactionLine(t, e, lmtpAddr(user)+"@"+e.lmtpServer(user)+":250")
		in := e.instanceOf(e.lmtpServer(user))
		if n, err := in.MessageCount(user); err != nil || n != 0 {
			t.Errorf("messages of %s on %s: got %d (%v), want none", user, in.Name, n, err)
		}
	})
}

// checkTransactionLine waits (bounded) for an LMTP transaction line whose
// recipients name rcpt ("addr@server:rcptcode/datacode").
func checkTransactionLine(t *testing.T, e *env, rcpt string) {
	t.Helper()
	eventually(t, "the transaction line naming "+rcpt, func() bool {
		for _, l := range strings.Split(e.md.log.String(), "\n") {
			kv := parseLogfmt(l)
			if kv["msg"] == "lmtp transaction" && strings.Contains(" "+kv["recipients"]+" ", " "+rcpt+" ") {
				return true
			}
		}
		return false
	})
}
