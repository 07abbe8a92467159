package integration

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/maildirector/maildirector/director"
)

// lmtpDomain is the domain of lab recipients; Dovecot's
// auth_username_format = %Ln makes user000@lab.test the user user000.
const lmtpDomain = "lab.test"

// lmtpBackend makes the recipient user000@lab.test and the login user000
// one user for the director, as they are for Dovecot.
const lmtpBackend = `default_domain = "lab.test"`

// lmtpServer is the server a fresh maildirector picks for user's mail (and
// logins): the hash of the address with the default domain.
func (e *env) lmtpServer(user string) string { return e.hashServer(lmtpAddr(user)) }

// lmtpAddr is the recipient address of a lab user.
func lmtpAddr(user string) string { return user + "@" + lmtpDomain }

// lmtpFrontends is one LMTP frontend named "lmtp" with extra lines for its
// [frontend.lmtp.lmtp] table.
func lmtpFrontends(lmtpOptions string) []frontendSpec {
	return []frontendSpec{{Name: "lmtp", Protocol: "lmtp", Extra: "[frontend.lmtp.lmtp]\n" + lmtpOptions}}
}

// lmtpReply is the reply one RCPT got: at RCPT time if the frontend refused
// it there, else after the data.
type lmtpReply struct {
	Rcpt string
	Code int
	Text string // the rest of the line: enhanced code and message
}

func (r lmtpReply) String() string { return fmt.Sprintf("<%s> %d %s", r.Rcpt, r.Code, r.Text) }

// lmtpRecorder records what go-smtp's client reads from the connection
// while on, so that the replies after the data, which the client returns
// as a map, can be checked in wire order.
type lmtpRecorder struct {
	net.Conn
	mu  sync.Mutex
	on  bool
	buf bytes.Buffer
}

func (r *lmtpRecorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	if r.on {
		r.buf.Write(p[:n])
	}
	r.mu.Unlock()
	return n, err
}

func (r *lmtpRecorder) start() {
	r.mu.Lock()
	r.on = true
	r.buf.Reset()
	r.mu.Unlock()
}

func (r *lmtpRecorder) stop() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.on = false
	return r.buf.String()
}

// lmtpMTA is the MTA's side of one LMTP session: go-smtp's client in LMTP
// mode, from clientIP.
type lmtpMTA struct {
	c   *gosmtp.Client
	rec *lmtpRecorder
}

// lmtpConnect connects to addr and says LHLO. It returns errors rather than
// failing the test, for use from the soak's client goroutines.
func lmtpConnect(addr string) (*lmtpMTA, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	rec := &lmtpRecorder{Conn: nc}
	c := gosmtp.NewClientLMTP(rec)
	c.CommandTimeout = 30 * time.Second
	c.SubmissionTimeout = 30 * time.Second
	if err := c.Hello("mta.test"); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting and LHLO: %w", err)
	}
	return &lmtpMTA{c: c, rec: rec}, nil
}

// lmtpDial is lmtpConnect for the test goroutine; the session is closed at cleanup.
func lmtpDial(t testing.TB, addr string) *lmtpMTA {
	t.Helper()
	m, err := lmtpConnect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.c.Close() })
	return m
}

// send runs one transaction (MAIL, RCPT for each of rcpts, DATA, msg) and
// returns one reply per RCPT, in RCPT order. The replies after the data are
// read off the wire, so a reply out of RCPT order is an error. An error
// means the session is unusable (I/O, protocol); replies are not errors.
func (m *lmtpMTA) send(from string, rcpts []string, msg []byte) ([]lmtpReply, error) {
	if err := m.c.Mail(from, nil); err != nil {
		return nil, fmt.Errorf("MAIL: %w", err)
	}
	replies := make([]lmtpReply, len(rcpts))
	var accepted []int // indexes into rcpts of the RCPTs answered 250
	for i, r := range rcpts {
		replies[i].Rcpt = r
		err := m.c.Rcpt(r, nil)
		var se *gosmtp.SMTPError
		switch {
		case err == nil:
			accepted = append(accepted, i)
		case errors.As(err, &se):
			replies[i].Code = se.Code
			replies[i].Text = fmt.Sprintf("%d.%d.%d %s", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], se.Message)
		default:
			return nil, fmt.Errorf("RCPT %s: %w", r, err)
		}
	}
	if len(accepted) == 0 {
		return replies, m.c.Reset()
	}
	w, err := m.c.Data()
	if err != nil {
		return nil, fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return nil, fmt.Errorf("write message: %w", err)
	}
	m.rec.start()
	_, err = w.CloseWithLMTPResponse()
	wire := m.rec.stop()
	var perRcpt gosmtp.LMTPDataError
	if err != nil && !errors.As(err, &perRcpt) {
		return nil, fmt.Errorf("replies after data: %w", err)
	}
	lines := strings.Split(strings.TrimSuffix(wire, "\r\n"), "\r\n")
	if len(lines) != len(accepted) {
		return nil, fmt.Errorf("got %d reply lines after the data, want %d: %q", len(lines), len(accepted), wire)
	}
	for k, i := range accepted {
		code, text, err := lmtpParseReply(lines[k])
		if err != nil {
			return nil, err
		}
		// go-smtp's server writes "<rcpt> text" (RFC 2033 section 4.2).
		prefix := ""
		if len(text) > 0 && text[0] >= '2' && text[0] <= '5' {
			prefix, _, _ = strings.Cut(text, " ")
			prefix += " "
		}
		if !strings.HasPrefix(text, prefix+"<"+rcpts[i]+">") {
			return nil, fmt.Errorf("reply %d after the data is %q, want one for <%s> (RCPT order)", k, lines[k], rcpts[i])
		}
		replies[i].Code, replies[i].Text = code, text
	}
	return replies, nil
}

func (m *lmtpMTA) close() {
	m.c.Quit()
	m.c.Close()
}

// lmtpParseReply splits a one-line reply "250 2.0.0 text".
func lmtpParseReply(line string) (int, string, error) {
	if len(line) < 4 || line[3] != ' ' {
		return 0, "", fmt.Errorf("malformed reply %q", line)
	}
	code, err := strconv.Atoi(line[:3])
	if err != nil {
		return 0, "", fmt.Errorf("malformed reply %q", line)
	}
	return code, line[4:], nil
}

// lmtpMessage is a small message with a unique X-Test-Id (and Message-ID),
// padded with body lines to at least size bytes.
func lmtpMessage(id string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: mta@example.org\r\nTo: lab@%s\r\nSubject: %s\r\nMessage-ID: <%s@mta.test>\r\nX-Test-Id: %s\r\n\r\n", lmtpDomain, id, id, id)
	b.WriteString("hello\r\n")
	for line := 0; b.Len() < size; line++ {
		fmt.Fprintf(&b, "%06d the quick brown fox jumps over the lazy dog\r\n", line)
	}
	return b.Bytes()
}

// lmtpRaw is a hand-driven LMTP session for input go-smtp's client would
// not send (bad sequences, bare LF, long lines).
type lmtpRaw struct {
	t testing.TB
	c net.Conn
	r *textproto.Reader
}

func lmtpRawGreeted(t testing.TB, addr string) *lmtpRaw {
	t.Helper()
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := &lmtpRaw{t: t, c: c, r: textproto.NewReader(bufio.NewReader(c))}
	if code, line := r.reply(); code != 220 {
		t.Fatalf("greeting: got %q, want 220", line)
	}
	r.write("LHLO mta.test\r\n")
	if code, line := r.reply(); code != 250 {
		t.Fatalf("LHLO: got %q, want 250", line)
	}
	return r
}

func (r *lmtpRaw) write(s string) {
	r.t.Helper()
	if _, err := r.c.Write([]byte(s)); err != nil {
		r.t.Fatalf("write %.40q: %v", s, err)
	}
}

// reply reads one whole (possibly multi-line) reply: its code and last line.
func (r *lmtpRaw) reply() (int, string) {
	r.t.Helper()
	for range 100 {
		line, err := r.r.ReadLine()
		if err != nil {
			r.t.Fatalf("read reply: %v", err)
		}
		if len(line) >= 4 && line[3] == '-' {
			continue
		}
		code, _, err := lmtpParseReply(line)
		if err != nil {
			r.t.Fatal(err)
		}
		return code, line
	}
	r.t.Fatal("reply of more than 100 lines")
	return 0, ""
}

// cmd sends one command line and returns its reply.
func (r *lmtpRaw) cmd(line string) (int, string) {
	r.t.Helper()
	r.write(line + "\r\n")
	return r.reply()
}

// lmtpHashOrder is the director's server order for user while every server is up.
func (e *env) lmtpHashOrder(user string) []string {
	e.t.Helper()
	opts := director.Options{Name: "dovecot"}
	for i := range e.lab.Instances {
		opts.Servers = append(opts.Servers, director.ServerOptions{Name: serverName(i), Weight: 100})
	}
	d, err := director.New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	return d.HashOrder(user)
}

// lmtpIDs returns, for each server name, user's messages by X-Test-Id with
// how many copies of each that server's maildir holds.
func (e *env) lmtpIDs(user string) map[string]map[string]int {
	e.t.Helper()
	out := make(map[string]map[string]int)
	for i, in := range e.lab.Instances {
		files, err := in.MaildirFiles(user)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, f := range files {
			id, err := lmtpTestID(filepath.Join(in.Dir, "mail", user, "Maildir", f))
			if err != nil {
				e.t.Fatal(err)
			}
			if out[serverName(i)] == nil {
				out[serverName(i)] = make(map[string]int)
			}
			out[serverName(i)][id]++
		}
	}
	return out
}

// lmtpTestID reads the X-Test-Id header of a stored message ("" if none).
func lmtpTestID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hdr, err := textproto.NewReader(bufio.NewReader(f)).ReadMIMEHeader()
	if err != nil && len(hdr) == 0 {
		return "", fmt.Errorf("read header of %s: %w", path, err)
	}
	return hdr.Get("X-Test-Id"), nil
}

// lmtpCounts returns the message count of user on every server, by name.
func (e *env) lmtpCounts(user string) map[string]int {
	e.t.Helper()
	out := make(map[string]int)
	for i, in := range e.lab.Instances {
		n, err := in.MessageCount(user)
		if err != nil {
			e.t.Fatal(err)
		}
		if n > 0 {
			out[serverName(i)] = n
		}
	}
	return out
}
