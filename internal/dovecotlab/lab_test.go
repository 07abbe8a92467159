package dovecotlab

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/pires/go-proxyproto"
	"github.com/pires/go-proxyproto/tlvparse"

	"github.com/maildirector/maildirector/internal/smtpsink"
)

// ioDeadline bounds every exchange with Dovecot in these tests.
const ioDeadline = 5 * time.Second

// textConn is a line-oriented client connection.
type textConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// dial connects to port; a non-nil hdr is written first (PROXY v2).
func dial(t *testing.T, port int, hdr *proxyproto.Header) *textConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", hostPort(port), ioDeadline)
	if err != nil {
		t.Fatalf("dial %d: %v", port, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(ioDeadline)); err != nil {
		t.Fatal(err)
	}
	if hdr != nil {
		if _, err := hdr.WriteTo(c); err != nil {
			t.Fatalf("write PROXY header: %v", err)
		}
	}
	return &textConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (tc *textConn) readLine() string {
	tc.t.Helper()
	line, err := tc.r.ReadString('\n')
	if err != nil {
		tc.t.Fatalf("read: %v (got %q)", err, line)
	}
	return strings.TrimRight(line, "\r\n")
}

func (tc *textConn) send(line string) {
	tc.t.Helper()
	if _, err := tc.c.Write([]byte(line + "\r\n")); err != nil {
		tc.t.Fatalf("write %q: %v", line, err)
	}
}

// imapGreeted reads the IMAP greeting (RFC 9051 section 7.1.1), skipping
// Dovecot's "Waiting for authentication process" notice.
func (tc *textConn) imapGreeted() {
	tc.t.Helper()
	for range 3 {
		line := tc.readLine()
		if !strings.HasPrefix(line, "* OK") {
			tc.t.Fatalf("greeting: got %q, want * OK", line)
		}
		if !strings.Contains(line, "Waiting for authentication") {
			return
		}
	}
	tc.t.Fatal("greeting: auth process never became ready")
}

// imapCmd sends "tag line" and returns the tagged completion line.
func (tc *textConn) imapCmd(tag, line string) string {
	tc.t.Helper()
	tc.send(tag + " " + line)
	for range 100 {
		if l := tc.readLine(); strings.HasPrefix(l, tag+" ") {
			return l
		}
	}
	tc.t.Fatalf("%s: no tagged reply", line)
	return ""
}

// proxyHeader is a PROXY v2 header from src to dst, with a PP2 SSL TLV
// whose client bit is set when tls is true (PROXY spec section 2.2.5).
func proxyHeader(t *testing.T, src, dst string, tls bool) *proxyproto.Header {
	t.Helper()
	srcAddr, _ := net.ResolveTCPAddr("tcp", src)
	dstAddr, _ := net.ResolveTCPAddr("tcp", dst)
	h := proxyproto.HeaderProxyFromAddrs(2, srcAddr, dstAddr)
	if tls {
		ssl := tlvparse.PP2SSL{
			Client: tlvparse.PP2_BITFIELD_CLIENT_SSL,
			Verify: 1, // no client certificate was verified
			TLV:    []proxyproto.TLV{{Type: proxyproto.PP2_SUBTYPE_SSL_VERSION, Value: []byte("TLSv1.3")}},
		}
		tlv, err := ssl.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := h.SetTLVs([]proxyproto.TLV{tlv}); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// waitLogin polls the instance log for a login from rip (the log process
// writes asynchronously) and returns it.
func waitLogin(t *testing.T, inst *Instance, rip string) Login {
	t.Helper()
	for range 500 { // 10 s: Dovecot's log process lags on a loaded machine
		logins, err := inst.Logins()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range logins {
			if l.RemoteIP == rip {
				return l
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	log, _ := inst.Log()
	t.Fatalf("no login with rip=%s in log:\n%s", rip, log)
	return Login{}
}

func TestLab(t *testing.T) {
	sink, err := smtpsink.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	lab := StartT(t, Options{Users: 10, SubmissionRelay: sink.Addr()})
	if got := len(lab.Instances); got != DefaultInstances {
		t.Fatalf("got %d instances, want %d", got, DefaultInstances)
	}
	one, two := lab.Instances[0], lab.Instances[1]
	if one.Ports == two.Ports {
		t.Fatalf("instances share ports %+v", one.Ports)
	}

	t.Run("direct IMAP login", func(t *testing.T) {
		tests := []struct {
			name, user, pass, want string
		}{
			{"numbered user", "user000", "pass", "a OK"},
			{"alice", "alice", "pass", "a OK"},
			{"address form", "bob@lab.test", "pass", "a OK"},
			{"wrong password", "user000", "nope", "a NO"},
			{"unknown user", "mallory", "pass", "a NO"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := dial(t, one.Ports.IMAPDirect, nil)
				c.imapGreeted()
				if got := c.imapCmd("a", "LOGIN "+tt.user+" "+tt.pass); !strings.HasPrefix(got, tt.want) {
					t.Errorf("got %q, want %s…", got, tt.want)
				}
				c.imapCmd("z", "LOGOUT")
			})
		}
	})

	t.Run("proxied IMAP login", func(t *testing.T) {
		tests := []struct {
			name, src, dst   string
			tls, wantSecured bool
		}{
			{"no TLS", "203.0.113.7:40001", "198.51.100.1:143", false, false},
			{"SSL TLV client bit", "203.0.113.8:40002", "198.51.100.2:993", true, true},
			{"IPv6 client", "[2001:db8::7]:40003", "[2001:db8::1]:143", false, false},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := dial(t, one.Ports.IMAP, proxyHeader(t, tt.src, tt.dst, tt.tls))
				c.imapGreeted()
				if got := c.imapCmd("a", "LOGIN user001 pass"); !strings.HasPrefix(got, "a OK") {
					t.Fatalf("got %q, want a OK", got)
				}
				c.imapCmd("z", "LOGOUT")
				srcHost, _, _ := net.SplitHostPort(tt.src)
				dstHost, _, _ := net.SplitHostPort(tt.dst)
				l := waitLogin(t, one, srcHost)
				if l.LocalIP != dstHost || l.User != "user001" || l.Service != "imap-login" {
					t.Errorf("got %+v, want user001 via imap-login with lip=%s", l, dstHost)
				}
				if l.Secured != tt.wantSecured || l.TLS {
					t.Errorf("got secured=%v TLS=%v, want secured=%v TLS=false", l.Secured, l.TLS, tt.wantSecured)
				}
			})
		}
	})

	t.Run("POP3 RETR of a delivered message", func(t *testing.T) {
		msg := "From: a@lab.test\r\nTo: user002@lab.test\r\nSubject: pop3 probe\r\n\r\nhello\r\n"
		if err := one.Deliver("user002", []byte(msg)); err != nil {
			t.Fatal(err)
		}
		c := dial(t, one.Ports.POP3, proxyHeader(t, "203.0.113.9:1110", "198.51.100.1:110", false))
		steps := []struct{ send, want string }{
			{"", "+OK"}, {"USER user002", "+OK"}, {"PASS pass", "+OK"}, {"STAT", "+OK 1 "}, {"RETR 1", "+OK"},
		}
		for _, s := range steps {
			if s.send != "" {
				c.send(s.send)
			}
			if got := c.readLine(); !strings.HasPrefix(got, s.want) {
				t.Fatalf("%q: got %q, want %s…", s.send, got, s.want)
			}
		}
		var body strings.Builder
		for line := c.readLine(); line != "."; line = c.readLine() {
			body.WriteString(line + "\n")
		}
		if !strings.Contains(body.String(), "Subject: pop3 probe") {
			t.Errorf("got message %q, want the delivered one", body.String())
		}
		c.send("QUIT")
		waitLogin(t, one, "203.0.113.9")
	})

	t.Run("LMTP delivery", func(t *testing.T) {
		tests := []struct {
			name    string
			port    int
			hdr     bool
			user    string
			wantRC  string
			wantMsg int
		}{
			{"direct port", one.Ports.LMTPDirect, false, "user003", "250", 1},
			{"haproxy port", one.Ports.LMTP, true, "user004", "250", 1},
			{"unknown user", one.Ports.LMTPDirect, false, "nobody", "550", 0},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				var hdr *proxyproto.Header
				if tt.hdr {
					hdr = proxyHeader(t, "192.0.2.25:2500", "198.51.100.1:24", false)
				}
				rc := lmtpDeliver(t, dial(t, tt.port, hdr), tt.user+"@lab.test")
				if !strings.HasPrefix(rc, tt.wantRC) {
					t.Fatalf("RCPT/DATA: got %q, want %s…", rc, tt.wantRC)
				}
				if tt.wantMsg == 0 {
					return
				}
				n, err := one.MessageCount(tt.user)
				if err != nil || n != tt.wantMsg {
					t.Errorf("got %d messages (%v), want %d", n, err, tt.wantMsg)
				}
				files, err := one.MaildirFiles(tt.user)
				if err != nil || len(files) != tt.wantMsg || !strings.HasPrefix(files[0], "new/") {
					t.Errorf("got files %v (%v), want one in new/", files, err)
				}
			})
		}
	})

	t.Run("submission relays to the sink", func(t *testing.T) {
		c := dial(t, one.Ports.Submission, proxyHeader(t, "203.0.113.10:5870", "198.51.100.1:587", false))
		cl := smtp.NewClient(c.c)
		defer cl.Close()
		if err := cl.Hello("client.lab.test"); err != nil {
			t.Fatal(err)
		}
		if err := cl.Auth(sasl.NewPlainClient("", "user005", "pass")); err != nil {
			t.Fatalf("AUTH PLAIN: %v", err)
		}
		body := "From: user005@lab.test\r\nTo: ext@example.test\r\nSubject: relay\r\n\r\nhi\r\n"
		if err := cl.SendMail("user005@lab.test", []string{"ext@example.test"}, strings.NewReader(body)); err != nil {
			t.Fatalf("send: %v", err)
		}
		_ = cl.Quit()
		msgs := sink.Messages()
		if len(msgs) != 1 || msgs[0].From != "user005@lab.test" || len(msgs[0].To) != 1 || msgs[0].To[0] != "ext@example.test" {
			t.Fatalf("got %+v, want one message user005@lab.test → ext@example.test", msgs)
		}
		if !strings.Contains(string(msgs[0].Data), "Subject: relay") {
			t.Errorf("got data %q, want the submitted message", msgs[0].Data)
		}
	})

	t.Run("unknown user", func(t *testing.T) {
		if _, err := one.MessageCount("mallory"); !errors.Is(err, ErrUnknownUser) {
			t.Errorf("got %v, want ErrUnknownUser", err)
		}
		if err := one.Deliver("mallory", []byte("x")); !errors.Is(err, ErrUnknownUser) {
			t.Errorf("got %v, want ErrUnknownUser", err)
		}
	})

	t.Run("stop and start", func(t *testing.T) {
		pid := two.PID()
		session := loggedIn(t, two)
		if err := two.Stop(); err != nil {
			t.Fatal(err)
		}
		assertDown(t, two, pid)
		// The mail process says goodbye (RFC 9051 section 7.1.5).
		if got := session.readLine(); !strings.HasPrefix(got, "* BYE") {
			t.Errorf("open session after Stop: got %q, want * BYE", got)
		}
		if err := two.Stop(); err != nil {
			t.Errorf("second Stop: got %v, want nil", err)
		}
		if err := two.Start(); err != nil {
			t.Fatal(err)
		}
		if err := two.Start(); !errors.Is(err, ErrRunning) {
			t.Errorf("Start while running: got %v, want ErrRunning", err)
		}
		assertLogin(t, two)
	})

	t.Run("kill", func(t *testing.T) {
		pid := two.PID()
		session := loggedIn(t, two) // a post-login process to kill too
		if err := two.Kill(); err != nil {
			t.Fatal(err)
		}
		assertDown(t, two, pid)
		if line, err := session.r.ReadString('\n'); err == nil {
			t.Errorf("open session after Kill: got %q, want EOF or reset", line)
		}
		if err := two.Start(); err != nil {
			t.Fatal(err)
		}
		assertLogin(t, two)
	})

	t.Run("freeze and thaw", func(t *testing.T) {
		if err := two.Freeze(); err != nil {
			t.Fatal(err)
		}
		c := dial(t, two.Ports.IMAPDirect, nil) // the kernel still accepts
		_ = c.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		var ne net.Error
		if _, err := c.r.ReadString('\n'); !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read from frozen server: got %v, want a timeout", err)
		}
		if err := two.Thaw(); err != nil {
			t.Fatal(err)
		}
		_ = c.c.SetDeadline(time.Now().Add(ioDeadline))
		c.imapGreeted() // the same connection is served after thawing
		c.imapCmd("z", "LOGOUT")
		// A frozen instance can still be stopped.
		if err := two.Freeze(); err != nil {
			t.Fatal(err)
		}
		if err := two.Stop(); err != nil {
			t.Fatalf("Stop while frozen: %v", err)
		}
		if err := two.Freeze(); !errors.Is(err, ErrNotRunning) {
			t.Errorf("Freeze while stopped: got %v, want ErrNotRunning", err)
		}
	})

	t.Run("the other instance was untouched", func(t *testing.T) {
		t.Cleanup(func() {
			if t.Failed() {
				log, _ := one.Log()
				t.Logf("log of %s:\n%s", one.Name, log)
			}
		})
		assertLogin(t, one)
		n, err := one.MessageCount("user003")
		if err != nil || n != 1 {
			t.Errorf("got %d messages (%v), want 1", n, err)
		}
	})
}

// lmtpDeliver runs one RFC 2033 transaction for rcpt and returns the RCPT
// reply if it failed, else the per-recipient DATA reply.
func lmtpDeliver(t *testing.T, c *textConn, rcpt string) string {
	t.Helper()
	if got := c.readLine(); !strings.HasPrefix(got, "220") {
		t.Fatalf("greeting: got %q, want 220", got)
	}
	c.send("LHLO client.lab.test")
	for line := c.readLine(); !strings.HasPrefix(line, "250 "); line = c.readLine() {
		if !strings.HasPrefix(line, "250-") {
			t.Fatalf("LHLO: got %q, want 250", line)
		}
	}
	c.send("MAIL FROM:<sender@example.test>")
	if got := c.readLine(); !strings.HasPrefix(got, "250") {
		t.Fatalf("MAIL: got %q, want 250", got)
	}
	c.send("RCPT TO:<" + rcpt + ">")
	if got := c.readLine(); !strings.HasPrefix(got, "250") {
		c.send("QUIT")
		return got
	}
	c.send("DATA")
	if got := c.readLine(); !strings.HasPrefix(got, "354") {
		t.Fatalf("DATA: got %q, want 354", got)
	}
	c.send(fmt.Sprintf("From: sender@example.test\r\nTo: %s\r\nSubject: lmtp\r\n\r\nbody\r\n.", rcpt))
	got := c.readLine()
	c.send("QUIT")
	return got
}

// loggedIn returns an authenticated IMAP session on the direct port.
func loggedIn(t *testing.T, inst *Instance) *textConn {
	t.Helper()
	c := dial(t, inst.Ports.IMAPDirect, nil)
	c.imapGreeted()
	if got := c.imapCmd("a", "LOGIN user000 pass"); !strings.HasPrefix(got, "a OK") {
		t.Fatalf("%s: got %q, want a OK", inst.Name, got)
	}
	return c
}

// assertLogin logs in over the direct IMAP port.
func assertLogin(t *testing.T, inst *Instance) {
	t.Helper()
	c := dial(t, inst.Ports.IMAPDirect, nil)
	c.imapGreeted()
	if got := c.imapCmd("a", "LOGIN user000 pass"); !strings.HasPrefix(got, "a OK") {
		t.Fatalf("%s: got %q, want a OK", inst.Name, got)
	}
	c.imapCmd("z", "LOGOUT")
}

// assertDown checks that no process of the old master's group is left
// and no port accepts connections.
func assertDown(t *testing.T, inst *Instance, pgid int) {
	t.Helper()
	if inst.Running() || inst.PID() != 0 {
		t.Errorf("%s: got running, want stopped", inst.Name)
	}
	if left := groupMembers(pgid); len(left) != 0 {
		t.Errorf("%s: got processes %v left, want none", inst.Name, left)
	}
	for _, p := range inst.Ports.list() {
		if c, err := net.DialTimeout("tcp", hostPort(p.port), time.Second); err == nil {
			c.Close()
			t.Errorf("%s: port %s (%d) got a connection, want refused", inst.Name, p.name, p.port)
		}
	}
}

func TestDisablePlaintextAuth(t *testing.T) {
	lab := StartT(t, Options{Instances: 1, Users: 1, DisablePlaintextAuth: true})
	inst := lab.Instances[0]
	tests := []struct {
		name, src string
		tls       bool
		want      string
	}{
		// RFC 9051 section 6.2.3: LOGIN is refused without a secured channel.
		{"proxied without TLS", "203.0.113.20:1", false, "a NO"},
		{"proxied with SSL TLV", "203.0.113.21:1", true, "a OK"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, inst.Ports.IMAP, proxyHeader(t, tt.src, "198.51.100.1:143", tt.tls))
			c.imapGreeted()
			if got := c.imapCmd("a", "LOGIN user000 pass"); !strings.HasPrefix(got, tt.want) {
				t.Errorf("got %q, want %s…", got, tt.want)
			}
		})
	}
}

func TestStartErrors(t *testing.T) {
	t.Run("bad relay", func(t *testing.T) {
		if _, err := Start(Options{SubmissionRelay: "nope"}); err == nil {
			t.Error("got nil, want an error")
		}
	})
	t.Run("port taken", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		taken := ln.Addr().(*net.TCPAddr).Port
		dir := t.TempDir()
		l, err := Start(Options{Dir: dir, Instances: 1, Users: 1, Ports: []InstancePorts{{IMAP: taken}}})
		if err == nil {
			l.Close()
			t.Fatal("got nil, want an error")
		}
		if !errors.Is(err, ErrNotReady) || !strings.Contains(err.Error(), "Address already in use") {
			t.Errorf("got %v, want ErrNotReady with the log tail", err)
		}
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("a given Dir must be kept: %v", err)
		}
	})
}
