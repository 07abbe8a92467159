package imap

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/proxy/proxytest"
)

// fakeMode is how a fake server behaves.
type fakeMode int

const (
	fakeOK          fakeMode = iota // speaks enough IMAP
	fakeDropOnLogin                 // greets, reads the login, hangs up
	fakeByeGreeting                 // greets with BYE
	fakeGarbage                     // greets with noise
	fakeSilent                      // accepts and says nothing
	fakeRefuseLogin                 // greets, answers logins with an untagged BAD (Dovecot on a tag it cannot take)
)

// dovecotCaps is what Dovecot 2.3 puts in its greeting.
const dovecotCaps = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN"

// fakeServer is a tiny IMAP server: greeting with caps, LOGIN and
// AUTHENTICATE PLAIN against a fixed password, then a few commands. Its
// parser is deliberately its own, not the package's.
type fakeServer struct {
	name string
	ln   net.Listener
	caps string
	mode fakeMode

	mu     sync.Mutex
	logins []string // "LOGIN user" or "AUTHENTICATE user", in order
	cmds   []string // verbs after login
}

const goodPassword = "s3cret"

func startFake(t testing.TB, name string, mode fakeMode, caps string) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{name: name, ln: ln, caps: caps, mode: mode}
	t.Cleanup(func() { ln.Close() })
	go f.acceptLoop()
	return f
}

// acceptLoop exits when the listener is closed by the test's cleanup.
func (f *fakeServer) acceptLoop() {
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		go f.serve(c)
	}
}

func (f *fakeServer) target() proxy.Target {
	return proxy.Target{Server: f.name, Address: f.ln.Addr().String()}
}

func (f *fakeServer) record(list *[]string, s string) {
	f.mu.Lock()
	*list = append(*list, s)
	f.mu.Unlock()
}

func (f *fakeServer) seen() (logins, cmds []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.logins), slices.Clone(f.cmds)
}

// serve exits on EOF, LOGOUT or a read error (the proxy closed the conn).
func (f *fakeServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(c)
	switch f.mode {
	case fakeByeGreeting:
		io.WriteString(c, "* BYE Too busy\r\n")
		return
	case fakeGarbage:
		io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n")
		return
	case fakeSilent:
		io.Copy(io.Discard, br) // until the proxy gives up and closes
		return
	}
	fmt.Fprintf(c, "* OK [CAPABILITY %s] Dovecot ready.\r\n", f.caps)
	loggedIn := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		tag, rest, _ := strings.Cut(line, " ")
		verb, args, _ := strings.Cut(rest, " ")
		verb = strings.ToUpper(verb)
		if f.mode == fakeDropOnLogin {
			return
		}
		if f.mode == fakeRefuseLogin {
			f.record(&f.logins, verb)
			io.WriteString(c, "* BAD Error in IMAP command received by server.\r\n")
			continue
		}
		if loggedIn {
			f.record(&f.cmds, verb)
			switch verb {
			case "SELECT":
				fmt.Fprintf(c, "* 0 EXISTS\r\n%s OK [READ-WRITE] Select completed.\r\n", tag)
			case "LOGOUT":
				fmt.Fprintf(c, "* BYE Logging out\r\n%s OK Logout completed.\r\n", tag)
				return
			default:
				fmt.Fprintf(c, "%s OK %s completed.\r\n", tag, verb)
			}
			continue
		}
		var user, pass string
		switch verb {
		case "LOGIN":
			a, err := fakeReadArgs(br, c, args, 2)
			if err != nil {
				fmt.Fprintf(c, "%s BAD %v\r\n", tag, err)
				continue
			}
			user, pass = a[0], a[1]
			f.record(&f.logins, "LOGIN "+user)
		case "AUTHENTICATE":
			mech, ir, _ := strings.Cut(args, " ")
			if strings.EqualFold(mech, "XOAUTH2") {
				f.record(&f.logins, "XOAUTH2 "+ir)
				if ir != base64.StdEncoding.EncodeToString([]byte("user=alice\x01auth=Bearer goodtoken\x01\x01")) {
					// Google's XOAUTH2: an error challenge, then NO.
					io.WriteString(c, "+ eyJzdGF0dXMiOiI0MDEifQ==\r\n")
					if l, err := br.ReadString('\n'); err != nil || l != "\r\n" {
						return
					}
					fmt.Fprintf(c, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", tag)
					continue
				}
				loggedIn = true
				fmt.Fprintf(c, "%s OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n", tag)
				continue
			}
			if !strings.EqualFold(mech, "PLAIN") {
				fmt.Fprintf(c, "%s NO Unsupported mechanism\r\n", tag)
				continue
			}
			if ir == "" {
				io.WriteString(c, "+ \r\n")
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				ir = strings.TrimRight(l, "\r\n")
			}
			msg, err := base64.StdEncoding.DecodeString(ir)
			parts := strings.Split(string(msg), "\x00")
			if err != nil || len(parts) != 3 {
				fmt.Fprintf(c, "%s BAD Invalid response\r\n", tag)
				continue
			}
			user, pass = parts[1], parts[2]
			f.record(&f.logins, "AUTHENTICATE "+user)
		default:
			fmt.Fprintf(c, "%s OK %s done\r\n", tag, verb)
			continue
		}
		if pass != goodPassword {
			fmt.Fprintf(c, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", tag)
			continue
		}
		loggedIn = true
		fmt.Fprintf(c, "* OK welcome %s\r\n%s OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in\r\n", user, tag)
	}
}

// fakeReadArgs reads n astrings (atom, quoted, {n} or {n+} literal) that
// start in rest, reading more lines after literals.
func fakeReadArgs(br *bufio.Reader, w io.Writer, rest string, n int) ([]string, error) {
	var args []string
	for len(args) < n {
		rest = strings.TrimPrefix(rest, " ")
		switch {
		case strings.HasPrefix(rest, `"`):
			var b strings.Builder
			i := 1
			for ; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' {
					i++
				}
				b.WriteByte(rest[i])
			}
			if i >= len(rest) {
				return nil, errors.New("unterminated quote")
			}
			args = append(args, b.String())
			rest = rest[i+1:]
		case strings.HasPrefix(rest, "{"):
			spec, _, ok := strings.Cut(rest[1:], "}")
			if !ok {
				return nil, errors.New("bad literal")
			}
			nonSync := strings.HasSuffix(spec, "+")
			size, err := strconv.Atoi(strings.TrimSuffix(spec, "+"))
			if err != nil {
				return nil, err
			}
			if !nonSync {
				io.WriteString(w, "+ OK\r\n")
			}
			buf := make([]byte, size)
			if _, err := io.ReadFull(br, buf); err != nil {
				return nil, err
			}
			args = append(args, string(buf))
			line, err := br.ReadString('\n')
			if err != nil {
				return nil, err
			}
			rest = strings.TrimRight(line, "\r\n")
		default:
			atom, after, _ := strings.Cut(rest, " ")
			if atom == "" {
				return nil, errors.New("missing argument")
			}
			args = append(args, atom)
			rest = after
		}
	}
	return args, nil
}

// env is one proxy.Server running the IMAP frontend on 127.0.0.1:0.
type env struct {
	srv     *proxy.Server
	addr    string
	picker  *proxytest.Picker
	servers []*fakeServer
}

type envConfig struct {
	opts        Options
	tls         bool // the frontend has a certificate (STARTTLS)
	implicitTLS bool
	servers     []*fakeServer // nil: one fakeOK server with Dovecot's caps
	timeouts    proxy.Timeouts
	retries     int          // the frontend's Retries
	logger      *slog.Logger // the engine's logger; nil: discard
	noPicker    bool         // leave opts.Picker nil
}

func newEnv(t testing.TB, cfg envConfig) *env {
	t.Helper()
	if cfg.servers == nil {
		cfg.servers = []*fakeServer{startFake(t, "dovecot1", fakeOK, dovecotCaps)}
	}
	p := &proxytest.Picker{}
	for _, f := range cfg.servers {
		p.Targets = append(p.Targets, f.target())
	}
	if cfg.opts.Picker == nil && !cfg.noPicker {
		cfg.opts.Picker = p
	}
	fe := proxy.Frontend{
		Name: "imap", Protocol: "imap", Addrs: []string{"127.0.0.1:0"},
		Handler: New(cfg.opts), ImplicitTLS: cfg.implicitTLS, Timeouts: cfg.timeouts, Retries: cfg.retries,
	}
	if cfg.tls || cfg.implicitTLS {
		fe.TLS = proxytest.ServerTLS(t)
	}
	srv := proxy.New(proxy.Options{Logger: cfg.logger})
	if err := srv.Configure([]proxy.Frontend{fe}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &env{srv: srv, addr: srv.ListenerAddr("imap").String(), picker: p, servers: cfg.servers}
}

// client is the test's IMAP client.
type client struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

// dial connects without reading anything.
func (e *env) dial(t *testing.T, implicitTLS bool) *client {
	t.Helper()
	var conn net.Conn
	var err error
	if implicitTLS {
		conn, err = tls.Dial("tcp", e.addr, &tls.Config{InsecureSkipVerify: true})
	} else {
		conn, err = net.Dial("tcp", e.addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, br: bufio.NewReader(conn)}
}

// greeted connects and reads the greeting.
func (e *env) greeted(t *testing.T) *client {
	t.Helper()
	c := e.dial(t, false)
	c.expect("* OK [CAPABILITY ")
	return c
}

// loggedIn connects and logs in as alice.
func (e *env) loggedIn(t *testing.T) *client {
	t.Helper()
	c := e.greeted(t)
	c.send("a1 LOGIN alice " + goodPassword + "\r\n")
	c.expect("* OK welcome alice")
	c.expect("a1 OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in")
	return c
}

func (c *client) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("send %q: %v", s, err)
	}
}

// line reads one line without CRLF.
func (c *client) line() (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.br.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// expect reads one line and checks its prefix.
func (c *client) expect(prefix string) string {
	c.t.Helper()
	l, err := c.line()
	if err != nil {
		c.t.Fatalf("reading for %q: got %q, %v", prefix, l, err)
	}
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want prefix %q", l, prefix)
	}
	return l
}

// expectClosed reads until EOF (at most a few lines) and fails if the
// connection stays open or more than maxLines lines arrive.
func (c *client) expectClosed(maxLines int) []string {
	c.t.Helper()
	var lines []string
	for range maxLines + 1 {
		l, err := c.line()
		if err != nil {
			if l != "" {
				lines = append(lines, l)
			}
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
				return lines
			}
			c.t.Fatalf("got %v after %q, want EOF", err, lines)
		}
		lines = append(lines, l)
	}
	c.t.Fatalf("got %d lines %q and no EOF, want EOF within %d lines", len(lines), lines, maxLines)
	return nil
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// startTLS runs STARTTLS and switches the client to TLS.
func (c *client) startTLS(tag string) {
	c.t.Helper()
	c.send(tag + " STARTTLS\r\n")
	c.expect(tag + " OK")
	c.handshakeTLS()
}

// handshakeTLS switches the client to TLS after the STARTTLS OK.
func (c *client) handshakeTLS() {
	c.t.Helper()
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("tls handshake: %v", err)
	}
	c.conn = tc
	c.br = bufio.NewReader(tc)
}

// capabilities runs CAPABILITY and returns the listed names.
func (c *client) capabilities(tag string) []string {
	c.t.Helper()
	c.send(tag + " CAPABILITY\r\n")
	l := c.expect("* CAPABILITY ")
	c.expect(tag + " OK")
	return strings.Fields(strings.TrimPrefix(l, "* CAPABILITY "))
}
