package managesieve

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/proxy/proxytest"
)

// dovecotGreeting is what Dovecot 2.3.19's managesieve-login says through
// a haproxy = yes listener.
var dovecotGreeting = []string{
	`"IMPLEMENTATION" "Dovecot (Debian) Pigeonhole"`,
	`"SIEVE" "fileinto reject envelope"`,
	`"NOTIFY" "mailto"`,
	`"SASL" "PLAIN LOGIN"`,
	`"VERSION" "1.0"`,
	`OK "Dovecot (Debian) ready."`,
}

// fakeServer is a tiny ManageSieve server: a greeting, AUTHENTICATE PLAIN
// against one password, then LISTSCRIPTS and LOGOUT. It records the lines
// it received. Its parser is deliberately its own, not the package's.
type fakeServer struct {
	addr     string
	greeting []string // default dovecotGreeting
	password string   // default "secret"
	authErr  string   // reply to a wrong password; default `NO "Authentication failed."`
	noIR     bool     // ignore the initial response: ask with an empty challenge

	mu    sync.Mutex
	lines []string
}

func startFake(t *testing.T, f *fakeServer) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f.addr = ln.Addr().String()
	go f.acceptLoop(ln)
	return f
}

// acceptLoop serves connections until the listener is closed.
func (f *fakeServer) acceptLoop(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go f.serve(c)
	}
}

func (f *fakeServer) target(name string) proxy.Target {
	return proxy.Target{Server: name, Address: f.addr}
}

func (f *fakeServer) received() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.lines)
}

// fakeLiteral is a literal announcement at the end of a line.
var fakeLiteral = regexp.MustCompile(`\{(\d+)\+?\}$`)

// fakeString is one quoted string (without escapes) or a literal's data,
// after a line's literals were read in.
var fakeString = regexp.MustCompile(`"([^"]*)"|\{\d+\+?\}\r\n`)

// readCommand reads one line and the literals it announces.
func readCommand(br *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		b.WriteString(line)
		m := fakeLiteral.FindStringSubmatch(line)
		if m == nil {
			return b.String(), nil
		}
		n, _ := strconv.Atoi(m[1])
		data := make([]byte, n)
		if _, err := io.ReadFull(br, data); err != nil {
			return "", err
		}
		b.WriteString("\r\n")
		b.Write(data)
	}
}

// fakeStrings returns the strings of a command line read by readCommand.
func fakeStrings(line string) []string {
	var out []string
	for len(line) > 0 {
		loc := fakeString.FindStringSubmatchIndex(line)
		if loc == nil {
			break
		}
		if loc[2] >= 0 {
			out = append(out, line[loc[2]:loc[3]])
			line = line[loc[1]:]
			continue
		}
		n, _ := strconv.Atoi(strings.Trim(line[loc[0]:loc[1]], "{+}\r\n"))
		out = append(out, line[loc[1]:loc[1]+n])
		line = line[loc[1]+n:]
	}
	return out
}

// serve runs one session; it returns on LOGOUT, EOF or after 20 commands.
func (f *fakeServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	greeting := f.greeting
	if greeting == nil {
		greeting = dovecotGreeting
	}
	io.WriteString(c, strings.Join(greeting, "\r\n")+"\r\n")
	br := bufio.NewReader(c)
	for range 20 {
		line, err := readCommand(br)
		if err != nil {
			return
		}
		f.mu.Lock()
		f.lines = append(f.lines, line)
		f.mu.Unlock()
		verb, _, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "AUTHENTICATE":
			args := fakeStrings(line)
			ir := ""
			if len(args) == 2 && !f.noIR {
				ir = args[1]
			} else {
				io.WriteString(c, "\"\"\r\n")
				if ir, err = readCommand(br); err != nil {
					return
				}
				f.mu.Lock()
				f.lines = append(f.lines, ir)
				f.mu.Unlock()
				if s := fakeStrings(ir); len(s) == 1 {
					ir = s[0]
				}
			}
			msg, _ := base64.StdEncoding.DecodeString(ir)
			creds, err := sasl.ParsePlain(msg)
			if err != nil || creds.Password != cmpOr(f.password, "secret") {
				io.WriteString(c, cmpOr(f.authErr, `NO "Authentication failed."`)+"\r\n")
				continue
			}
			io.WriteString(c, `OK "Logged in."`+"\r\n")
		case "LISTSCRIPTS":
			io.WriteString(c, "\"vacation\" ACTIVE\r\n\"spam\"\r\nOK \"Listscripts completed.\"\r\n")
		case "LOGOUT":
			io.WriteString(c, `OK "Logout completed."`+"\r\n")
			return
		default:
			io.WriteString(c, `NO "Error in MANAGESIEVE command received by server."`+"\r\n")
		}
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// startFrontend runs the frontend on a real proxy.Server on 127.0.0.1:0
// and returns its address.
func startFrontend(t *testing.T, opts Options, tlsCfg *tls.Config) string {
	t.Helper()
	return startFrontendWith(t, proxy.Frontend{Handler: New(opts), TLS: tlsCfg})
}

// startFrontendWith is startFrontend with more of the engine frontend set.
func startFrontendWith(t *testing.T, fe proxy.Frontend) string {
	t.Helper()
	fe.Name, fe.Protocol = "sieve", "managesieve"
	return proxytest.Serve(t, fe)
}

// client is the test's ManageSieve client.
type client struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

// dial connects without reading the greeting.
func dial(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, conn: conn, br: bufio.NewReader(conn)}
}

// greeted is the first rung of the ladder: connected, and the greeting's
// capability lines read up to its OK; it returns the capability lines.
func greeted(t *testing.T, addr string) (*client, []string) {
	t.Helper()
	c := dial(t, addr)
	return c, c.capabilityLines("greeting")
}

// authenticated is the top rung: logged in through the proxy with an
// initial response, the server's OK read.
func authenticated(t *testing.T, addr, user, pass string) *client {
	t.Helper()
	c, _ := greeted(t, addr)
	c.expect(`AUTHENTICATE "PLAIN" "`+plainIR(user, pass)+`"`, `OK "Logged in."`)
	return c
}

// capabilityLines reads capability lines up to an OK line.
func (c *client) capabilityLines(what string) []string {
	c.t.Helper()
	var caps []string
	for range 20 {
		line := c.readLine()
		if strings.HasPrefix(line, "OK") {
			return caps
		}
		if !strings.HasPrefix(line, `"`) {
			c.t.Fatalf("%s: got %q, want a capability line or OK", what, line)
		}
		caps = append(caps, line)
	}
	c.t.Fatalf("%s: no OK", what)
	return nil
}

func (c *client) readLine() string {
	c.t.Helper()
	line, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, line)
	}
	return strings.TrimRight(line, "\r\n")
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		c.t.Fatalf("write %q: %v", line, err)
	}
}

// expect sends line and checks the reply line.
func (c *client) expect(line, want string) {
	c.t.Helper()
	c.send(line)
	if got := c.readLine(); got != want {
		c.t.Fatalf("%q: got %q, want %q", line, got, want)
	}
}

// startTLS runs STARTTLS and returns the capability lines the server
// re-issues after the handshake (RFC 5804 section 2.2).
func (c *client) startTLS() []string {
	c.t.Helper()
	c.expect("STARTTLS", `OK "Begin TLS negotiation now."`)
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	c.conn, c.br = tc, bufio.NewReader(tc)
	return c.capabilityLines("after STARTTLS")
}

// expectClosed checks that the proxy closes the connection.
func (c *client) expectClosed() {
	c.t.Helper()
	line, err := c.br.ReadString('\n')
	var ne net.Error
	switch {
	case err == nil:
		c.t.Fatalf("got %q, want the connection closed", line)
	case errors.As(err, &ne) && ne.Timeout():
		c.t.Fatalf("the connection is still open (read timed out), want it closed")
	}
}

func plainIR(user, pass string) string { return sasl.EncodePlain("", user, pass) }
