package checks

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pires/go-proxyproto"
)

// Timeouts of probe tests: generous for conversations that must pass (the
// machine is shared and noisy), short where the server is meant to stall.
// Tests compare reasons, never elapsed time.
const (
	passTimeout  = 10 * time.Second
	stallTimeout = 300 * time.Millisecond
)

// probeCase is one probe against one fake server.
type probeCase struct {
	name     string
	opts     Options // Address is filled in
	serve    func(t *testing.T) func(*fakeConn)
	fakeOpts []fakeOption
	ok       bool
	reason   string   // exact reason for failures ("" to skip)
	contains string   // substring of the reason
	caps     []string // nil to skip
	saw      []string // lines the fake must have received
	notSaw   []string // lines it must not have received
	is       error    // errors.Is(res.Err, is) must hold, if set
}

func runProbeCases(t *testing.T, tests []probeCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, tt.serve(t), tt.fakeOpts...)
			opts := tt.opts
			opts.Address = f.addr()
			opts.Logger = discardLogger()
			if opts.Timeout == 0 {
				opts.Timeout = passTimeout
			}
			c, err := New(opts)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			res := c.CheckNow(t.Context())
			if res.OK != tt.ok {
				t.Fatalf("got OK=%v (%s), want %v", res.OK, res.Reason, tt.ok)
			}
			if tt.ok {
				if !strings.HasPrefix(res.Reason, opts.Type.String()+": OK in ") {
					t.Errorf("got reason %q, want %q", res.Reason, opts.Type.String()+": OK in ...")
				}
				if res.Err != nil {
					t.Errorf("got Err %v, want nil", res.Err)
				}
			} else {
				var ce *CheckError
				if !errors.As(res.Err, &ce) {
					t.Errorf("got Err %v, want a *CheckError", res.Err)
				}
			}
			if tt.reason != "" && res.Reason != tt.reason {
				t.Errorf("got reason %q, want %q", res.Reason, tt.reason)
			}
			if tt.contains != "" && !strings.Contains(res.Reason, tt.contains) {
				t.Errorf("got reason %q, want it to contain %q", res.Reason, tt.contains)
			}
			if tt.is != nil && !errors.Is(res.Err, tt.is) {
				t.Errorf("got Err %v, want errors.Is %v", res.Err, tt.is)
			}
			if tt.caps != nil && !slices.Equal(res.Capabilities, tt.caps) {
				t.Errorf("got capabilities %q, want %q", res.Capabilities, tt.caps)
			}
			// The handler may still be recording the last line; the
			// listener's cleanup waits for it, so wait here the same way.
			f.ln.Close()
			f.wg.Wait()
			for _, l := range tt.saw {
				if !f.saw(l) {
					t.Errorf("fake got %q, want it to have seen %q", f.received(), l)
				}
			}
			for _, l := range tt.notSaw {
				if f.saw(l) {
					t.Errorf("fake got %q, want no %q", f.received(), l)
				}
			}
		})
	}
}

func serveScript(greeting []string, steps ...step) func(*testing.T) func(*fakeConn) {
	return func(t *testing.T) func(*fakeConn) { return script(t, greeting, steps...) }
}

var (
	imapGreeting = []string{"* OK [CAPABILITY IMAP4rev1 SASL-IR] Dovecot ready."}
	imapCapa     = step{"a CAPABILITY", []string{"* CAPABILITY IMAP4rev1 SASL-IR LITERAL+ AUTH=PLAIN", "a OK Pre-login capabilities listed, post-login capabilities have more."}}
	imapCapaSync = step{"a CAPABILITY", []string{"* CAPABILITY IMAP4rev1 AUTH=PLAIN", "a OK done"}}
	imapLogout   = step{"z LOGOUT", []string{"* BYE Logging out", "z OK Logout completed."}}
	imapCaps     = []string{"IMAP4rev1", "SASL-IR", "LITERAL+", "AUTH=PLAIN"}
)

func TestIMAPProbe(t *testing.T) {
	imap := Options{Type: TypeIMAP}
	login := Options{Type: TypeIMAP, User: "probe@example.com", Password: `se"cr\et`, SelectInbox: true}
	runProbeCases(t, []probeCase{
		{
			name:  "good",
			opts:  imap,
			serve: serveScript(imapGreeting, imapCapa, imapLogout),
			ok:    true, caps: imapCaps, saw: []string{"a CAPABILITY", "z LOGOUT"},
		},
		{
			name:  "LOGOUT answered by close",
			opts:  imap,
			serve: serveScript(imapGreeting, imapCapa, step{"z LOGOUT", []string{closeReply}}),
			ok:    true, saw: []string{"z LOGOUT"},
		},
		{
			name:  "LOGOUT answered by BYE and close",
			opts:  imap,
			serve: serveScript(imapGreeting, imapCapa, step{"z LOGOUT", []string{"* BYE bye", closeReply}}),
			ok:    true,
		},
		{
			name: "login and select with quoted password",
			opts: login,
			serve: serveScript(imapGreeting, imapCapa,
				step{`b LOGIN "probe@example.com" "se\"cr\\et"`, []string{"* CAPABILITY IMAP4rev1 IDLE", "b OK Logged in"}},
				step{"c SELECT INBOX", []string{"* FLAGS (\\Seen)", "* 3 EXISTS", "c OK [READ-WRITE] Select completed."}},
				imapLogout),
			ok: true, caps: imapCaps, saw: []string{"c SELECT INBOX", "z LOGOUT"},
		},
		{
			name: "8-bit password as non-synchronizing literal",
			opts: Options{Type: TypeIMAP, User: "u", Password: "pässwörd"},
			serve: serveScript(imapGreeting, imapCapa,
				step{`b LOGIN "u" {10+}`, nil},
				step{"pässwörd", []string{"b OK Logged in"}},
				imapLogout),
			ok: true,
		},
		{
			name: "8-bit password as synchronizing literal",
			opts: Options{Type: TypeIMAP, User: "u", Password: "pässwörd"},
			serve: serveScript(imapGreeting, imapCapaSync,
				step{`b LOGIN "u" {10}`, []string{"+ OK"}},
				step{"pässwörd", []string{"b OK Logged in"}},
				imapLogout),
			ok: true,
		},
		{
			name:  "literal in an untagged response is skipped",
			opts:  imap,
			serve: serveScript(imapGreeting, step{"a CAPABILITY", []string{"* ID (\"name\" {7}", "Dovecot)", "* CAPABILITY IMAP4rev1", "a OK"}}, imapLogout),
			ok:    true, caps: []string{"IMAP4rev1"},
		},
		{
			name:   "BYE greeting",
			opts:   imap,
			serve:  serveScript([]string{"* BYE Too many connections"}),
			reason: `imap: greeting "* BYE Too many connections", want "* OK"`,
			notSaw: []string{"z LOGOUT"},
		},
		{
			name:   "tagged greeting",
			opts:   imap,
			serve:  serveScript([]string{"a OK hello"}),
			reason: `imap: greeting "a OK hello", want "* OK"`,
		},
		{
			name:   "PREAUTH greeting",
			opts:   imap,
			serve:  serveScript([]string{"* PREAUTH welcome root"}),
			reason: `imap: greeting "* PREAUTH welcome root", want "* OK"`,
		},
		{
			name:   "CAPABILITY refused still logs out",
			opts:   imap,
			serve:  serveScript(imapGreeting, step{"a CAPABILITY", []string{"a BAD no"}}, imapLogout),
			reason: `imap: CAPABILITY answered "a BAD no", want OK`,
			saw:    []string{"z LOGOUT"},
		},
		{
			name: "LOGIN refused still logs out and hides the password",
			opts: login,
			serve: serveScript(imapGreeting, imapCapa,
				step{"b LOGIN", []string{"b NO [AUTHENTICATIONFAILED] Authentication failed."}},
				imapLogout),
			reason: `imap: LOGIN answered "b NO [AUTHENTICATIONFAILED] Authentication failed.", want OK`,
			saw:    []string{"z LOGOUT"},
			notSaw: []string{"c SELECT INBOX"},
		},
		{
			name: "SELECT refused",
			opts: login,
			serve: serveScript(imapGreeting, imapCapa,
				step{"b LOGIN", []string{"b OK"}},
				step{"c SELECT INBOX", []string{"c NO [SERVERBUG] Internal error"}},
				imapLogout),
			contains: `SELECT INBOX answered "c NO [SERVERBUG] Internal error"`,
			saw:      []string{"z LOGOUT"},
		},
		{
			name:   "wrong LOGOUT reply",
			opts:   imap,
			serve:  serveScript(imapGreeting, imapCapa, step{"z LOGOUT", []string{"z BAD what"}}),
			reason: `imap: LOGOUT answered "z BAD what", want OK`,
		},
		{
			name:   "slow greeting",
			opts:   Options{Type: TypeIMAP, Timeout: stallTimeout},
			serve:  serveScript([]string{hangReply}),
			reason: "imap: timeout after 300ms reading greeting",
		},
		{
			name:   "slow CAPABILITY",
			opts:   Options{Type: TypeIMAP, Timeout: stallTimeout},
			serve:  serveScript(imapGreeting, step{"a CAPABILITY", []string{hangReply}}),
			reason: "imap: timeout after 300ms reading CAPABILITY reply",
		},
		{
			name:   "closed after greeting",
			opts:   imap,
			serve:  serveScript(imapGreeting, step{"a CAPABILITY", []string{closeReply}}),
			reason: "imap: connection closed reading CAPABILITY reply",
		},
		{
			name:   "garbage line",
			opts:   imap,
			serve:  serveScript(imapGreeting, step{"a CAPABILITY", []string{"HTTP/1.1 400 Bad Request"}}, imapLogout),
			reason: `imap: CAPABILITY answered "HTTP/1.1 400 Bad Request", want a OK`,
		},
		{
			name:     "PROXY LOCAL header first",
			opts:     Options{Type: TypeIMAP, Proxy: ProxyLocal},
			serve:    serveScript(imapGreeting, imapCapa, imapLogout),
			fakeOpts: []fakeOption{withProxy()},
			ok:       true, saw: []string{"z LOGOUT"},
		},
		{
			// Without the header both sides wait: Dovecot for the header, the
			// probe for the greeting.
			name:     "listener demands a PROXY header",
			opts:     Options{Type: TypeIMAP, Timeout: stallTimeout},
			serve:    serveScript(imapGreeting, imapCapa, imapLogout),
			fakeOpts: []fakeOption{withProxy()},
			reason:   "imap: timeout after 300ms reading greeting",
		},
	})
}

func TestPOP3Probe(t *testing.T) {
	pop3 := Options{Type: TypePOP3}
	greeting := []string{"+OK Dovecot ready."}
	capa := step{"CAPA", []string{"+OK", "CAPA", "TOP", "UIDL", "..dotted", "SASL PLAIN", "."}}
	quit := step{"QUIT", []string{"+OK Logging out"}}
	runProbeCases(t, []probeCase{
		{
			name:  "good",
			opts:  pop3,
			serve: serveScript(greeting, capa, quit),
			ok:    true, caps: []string{"CAPA", "TOP", "UIDL", ".dotted", "SASL PLAIN"}, saw: []string{"QUIT"},
		},
		{
			name:  "no CAPA support",
			opts:  pop3,
			serve: serveScript(greeting, step{"CAPA", []string{"-ERR unknown command"}}, quit),
			ok:    true, saw: []string{"QUIT"},
		},
		{
			name:   "ERR greeting",
			opts:   pop3,
			serve:  serveScript([]string{"-ERR [SYS/TEMP] shutting down"}),
			reason: `pop3: greeting "-ERR [SYS/TEMP] shutting down", want "+OK"`,
		},
		{
			name:   "wrong CAPA reply still quits",
			opts:   pop3,
			serve:  serveScript(greeting, step{"CAPA", []string{"* OK imap?"}}, quit),
			reason: `pop3: CAPA answered "* OK imap?", want "+OK"`,
			saw:    []string{"QUIT"},
		},
		{
			name:   "wrong QUIT reply",
			opts:   pop3,
			serve:  serveScript(greeting, capa, step{"QUIT", []string{"-ERR no"}}),
			reason: `pop3: QUIT answered "-ERR no", want "+OK"`,
		},
		{
			name:   "CAPA list never ends",
			opts:   Options{Type: TypePOP3, Timeout: stallTimeout},
			serve:  serveScript(greeting, step{"CAPA", []string{"+OK", "TOP"}}),
			reason: "pop3: timeout after 300ms reading CAPA reply",
		},
		{
			name:   "slow greeting",
			opts:   Options{Type: TypePOP3, Timeout: stallTimeout},
			serve:  serveScript([]string{hangReply}),
			reason: "pop3: timeout after 300ms reading greeting",
		},
		{
			name:     "PROXY LOCAL header first",
			opts:     Options{Type: TypePOP3, Proxy: ProxyLocal},
			serve:    serveScript(greeting, capa, quit),
			fakeOpts: []fakeOption{withProxy()},
			ok:       true,
		},
	})
}

func TestManageSieveProbe(t *testing.T) {
	sieve := Options{Type: TypeManageSieve}
	// Dovecot 2.3.19's greeting through a haproxy = yes listener.
	greeting := []string{
		`"IMPLEMENTATION" "Dovecot (Debian) Pigeonhole"`,
		`"SIEVE" "fileinto reject envelope"`,
		`"NOTIFY" "mailto"`,
		`"SASL" "PLAIN LOGIN"`,
		`"VERSION" "1.0"`,
		`OK "Dovecot (Debian) ready."`,
	}
	caps := []string{"IMPLEMENTATION Dovecot (Debian) Pigeonhole", "SIEVE fileinto reject envelope", "NOTIFY mailto", "SASL PLAIN LOGIN", "VERSION 1.0"}
	logout := step{"LOGOUT", []string{`OK "Logout completed."`}}
	runProbeCases(t, []probeCase{
		{
			name:  "good",
			opts:  sieve,
			serve: serveScript(greeting, logout),
			ok:    true, caps: caps, saw: []string{"LOGOUT"},
		},
		{
			name:  "literal capability value",
			opts:  sieve,
			serve: serveScript([]string{`"SIEVE" {8}`, `fileinto`, `"STARTTLS"`, `OK`}, logout),
			ok:    true, caps: []string{"SIEVE fileinto", "STARTTLS"},
		},
		{
			name:   "BYE greeting",
			opts:   sieve,
			serve:  serveScript([]string{`BYE (TRYLATER) "Too many connections"`}),
			reason: `managesieve: greeting "BYE (TRYLATER) \"Too many connections\"", want "OK"`,
		},
		{
			name:   "not ManageSieve",
			opts:   sieve,
			serve:  serveScript([]string{"* OK [CAPABILITY IMAP4rev1] Dovecot ready."}),
			reason: `managesieve: greeting "* OK [CAPABILITY IMAP4rev1] Dovecot ready.", want "OK"`,
		},
		{
			name:   "wrong LOGOUT reply",
			opts:   sieve,
			serve:  serveScript(greeting, step{"LOGOUT", []string{`NO "no"`}}),
			reason: `managesieve: LOGOUT answered "NO \"no\"", want "OK"`,
		},
		{
			name:   "greeting never ends",
			opts:   Options{Type: TypeManageSieve, Timeout: stallTimeout},
			serve:  serveScript(greeting[:2]),
			reason: "managesieve: timeout after 300ms reading greeting",
		},
		{
			name:     "PROXY LOCAL header first",
			opts:     Options{Type: TypeManageSieve, Proxy: ProxyLocal},
			serve:    serveScript(greeting, logout),
			fakeOpts: []fakeOption{withProxy()},
			ok:       true,
		},
	})
}

func TestLMTPAndSMTPProbes(t *testing.T) {
	lmtp := Options{Type: TypeLMTP, Hostname: "director.example"}
	greeting := []string{"220-mail1.example Dovecot ready.", "220 more text"}
	lhlo := step{"LHLO director.example", []string{"250-mail1.example", "250-8BITMIME", "250-ENHANCEDSTATUSCODES", "250 PIPELINING"}}
	quit := step{"QUIT", []string{"221 2.0.0 OK"}}
	runProbeCases(t, []probeCase{
		{
			name:  "lmtp good",
			opts:  lmtp,
			serve: serveScript(greeting, lhlo, quit),
			ok:    true, caps: []string{"8BITMIME", "ENHANCEDSTATUSCODES", "PIPELINING"}, saw: []string{"QUIT"},
		},
		{
			name:  "smtp good with default hostname",
			opts:  Options{Type: TypeSMTP},
			serve: serveScript([]string{"220 mx ESMTP"}, step{"EHLO maildirector", []string{"250-mx", "250 SIZE 1000"}}, quit),
			ok:    true, caps: []string{"SIZE 1000"}, saw: []string{"EHLO maildirector", "QUIT"},
		},
		{
			name:   "LHLO refused still quits",
			opts:   lmtp,
			serve:  serveScript(greeting, step{"LHLO", []string{"421 4.3.2 Shutting down"}}, quit),
			reason: `lmtp: LHLO answered "421 4.3.2 Shutting down", want 250`,
			saw:    []string{"QUIT"},
			is:     ErrUnexpectedReply,
		},
		{
			name:   "554 greeting still quits",
			opts:   Options{Type: TypeSMTP},
			serve:  serveScript([]string{"554 5.7.1 go away"}, quit),
			reason: `smtp: greeting "554 5.7.1 go away", want 220`,
			saw:    []string{"QUIT"},
		},
		{
			name:   "malformed greeting",
			opts:   lmtp,
			serve:  serveScript([]string{"* OK IMAP here"}),
			reason: `lmtp: greeting "* OK IMAP here", want 220`,
		},
		{
			name:   "codes change mid-reply",
			opts:   lmtp,
			serve:  serveScript(greeting, step{"LHLO", []string{"250-a", "251 b"}}),
			reason: `lmtp: LHLO answered "251 b", want a reply line`,
		},
		{
			name:   "wrong QUIT reply",
			opts:   lmtp,
			serve:  serveScript(greeting, lhlo, step{"QUIT", []string{"250 what"}}),
			reason: `lmtp: QUIT answered "250 what", want 221`,
		},
		{
			name:   "slow LHLO",
			opts:   Options{Type: TypeLMTP, Timeout: stallTimeout, Hostname: "director.example"},
			serve:  serveScript(greeting, step{"LHLO", []string{hangReply}}),
			reason: "lmtp: timeout after 300ms reading LHLO reply",
			is:     os.ErrDeadlineExceeded,
		},
		{
			name:   "multi-line greeting cut short",
			opts:   Options{Type: TypeSMTP, Timeout: stallTimeout},
			serve:  serveScript([]string{"220-first"}),
			reason: "smtp: timeout after 300ms reading greeting",
		},
		{
			name:     "PROXY LOCAL header first",
			opts:     Options{Type: TypeLMTP, Proxy: ProxyLocal, Hostname: "director.example"},
			serve:    serveScript(greeting, lhlo, quit),
			fakeOpts: []fakeOption{withProxy()},
			ok:       true, saw: []string{"QUIT"},
		},
	})
}

// serveHTTP answers one request with status after checking its head.
func serveHTTP(status string, body string) func(*testing.T) func(*fakeConn) {
	return func(t *testing.T) func(*fakeConn) {
		return func(c *fakeConn) {
			for {
				line, ok := c.readLine()
				if !ok {
					t.Errorf("fake: request head cut short")
					return
				}
				if line == "" {
					break
				}
			}
			c.send("HTTP/1.1 "+status, "Content-Type: text/plain", "Connection: close", "")
			c.conn.Write([]byte(body))
		}
	}
}

func TestHTTPProbe(t *testing.T) {
	runProbeCases(t, []probeCase{
		{
			name:  "good",
			opts:  Options{Type: TypeHTTP, HTTPPath: "/health", HTTPHost: "sproxyd.example"},
			serve: serveHTTP("200 OK", "fine\n"),
			ok:    true, saw: []string{"GET /health HTTP/1.1", "Host: sproxyd.example", "Connection: close"},
		},
		{
			name:  "default host is the address host",
			opts:  Options{Type: TypeHTTP, HTTPMethod: "HEAD"},
			serve: serveHTTP("200 OK", ""),
			ok:    true, saw: []string{"HEAD / HTTP/1.1", "Host: 127.0.0.1"},
		},
		{
			name:   "wrong status",
			opts:   Options{Type: TypeHTTP},
			serve:  serveHTTP("503 Service Unavailable", "down\n"),
			reason: `http: GET / answered "HTTP/1.1 503 Service Unavailable", want 200`,
		},
		{
			name:  "expected other status",
			opts:  Options{Type: TypeHTTP, ExpectStatus: 204},
			serve: serveHTTP("204 No Content", ""),
			ok:    true,
		},
		{
			name:  "status in the expected range",
			opts:  Options{Type: TypeHTTP, ExpectStatus: 200, ExpectStatusMax: 399},
			serve: serveHTTP("302 Found", ""),
			ok:    true,
		},
		{
			name:   "status past the expected range",
			opts:   Options{Type: TypeHTTP, ExpectStatus: 200, ExpectStatusMax: 399},
			serve:  serveHTTP("405 Method Not Allowed", ""),
			reason: `http: GET / answered "HTTP/1.1 405 Method Not Allowed", want 200-399`,
		},
		{
			name:     "not HTTP",
			opts:     Options{Type: TypeHTTP},
			serve:    serveScript([]string{"* OK IMAP"}),
			contains: "http: reading GET / reply: malformed HTTP",
		},
		{
			name:   "slow",
			opts:   Options{Type: TypeHTTP, Timeout: stallTimeout},
			serve:  serveScript([]string{hangReply}),
			reason: "http: timeout after 300ms reading GET / reply",
		},
		{
			name:     "PROXY LOCAL header first",
			opts:     Options{Type: TypeHTTP, Proxy: ProxyLocal},
			serve:    serveHTTP("200 OK", ""),
			fakeOpts: []fakeOption{withProxy()},
			ok:       true,
		},
	})
}

func TestTCPProbe(t *testing.T) {
	runProbeCases(t, []probeCase{
		{
			name:  "connects",
			opts:  Options{Type: TypeTCP},
			serve: serveScript(nil),
			ok:    true,
		},
		{
			name:     "PROXY LOCAL header first",
			opts:     Options{Type: TypeTCP, Proxy: ProxyLocal},
			serve:    serveScript(nil),
			fakeOpts: []fakeOption{withProxy()},
			ok:       true,
		},
	})

	c, err := New(Options{Type: TypePOP3, Address: refusedAddr(t), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	res := c.CheckNow(t.Context())
	if want := "pop3: connection refused"; res.Reason != want {
		t.Errorf("got reason %q, want %q", res.Reason, want)
	}
	if !errors.Is(res.Err, syscall.ECONNREFUSED) {
		t.Errorf("got Err %v, want syscall.ECONNREFUSED inside", res.Err)
	}
}

func TestProxyHeaders(t *testing.T) {
	for _, tc := range []struct {
		kind ProxyHeader
		want proxyproto.ProtocolVersionAndCommand
	}{{ProxyLocal, proxyproto.LOCAL}, {ProxyV2, proxyproto.PROXY}} {
		t.Run(tc.kind.String(), func(t *testing.T) {
			f := startFake(t, script(t, nil), withProxy())
			c, err := New(Options{Type: TypeTCP, Address: f.addr(), Proxy: tc.kind, Logger: discardLogger(), Timeout: passTimeout})
			if err != nil {
				t.Fatal(err)
			}
			if res := c.CheckNow(t.Context()); !res.OK {
				t.Fatalf("got %q, want OK", res.Reason)
			}
			// The check may end before the fake accepted the connection:
			// wait (bounded) for the fake to read the header rather than
			// closing the listener under a connection still in its backlog.
			var h *proxyproto.Header
			for range 500 {
				if h = f.header(0); h != nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if h == nil {
				t.Fatal("fake saw no PROXY header")
			}
			if h.Version != 2 || h.Command != tc.want {
				t.Errorf("got version %d command %#x, want 2 and %#x", h.Version, h.Command, tc.want)
			}
			if tc.kind == ProxyV2 {
				src, dst, ok := h.TCPAddrs()
				if !ok {
					t.Fatalf("got addresses %v -> %v, want TCP", h.SourceAddr, h.DestinationAddr)
				}
				if got, want := src.AddrPort(), f.remotes[0]; got != want {
					t.Errorf("got source %v, want the checker's own address %v", got, want)
				}
				if got, want := dst.String(), f.addr(); got != want {
					t.Errorf("got destination %v, want %v", got, want)
				}
			}
		})
	}
}

func TestIMAPOverTLSAfterProxyHeader(t *testing.T) {
	srvCfg, pool := selfSigned(t)
	f := startFake(t, script(t, imapGreeting, imapCapa, imapLogout), withProxy(), withTLS(srvCfg))
	c, err := New(Options{
		Type: TypeIMAP, Address: f.addr(), Proxy: ProxyLocal, Timeout: passTimeout, Logger: discardLogger(),
		TLS: &tls.Config{RootCAs: pool}, // ServerName comes from Address
	})
	if err != nil {
		t.Fatal(err)
	}
	if res := c.CheckNow(t.Context()); !res.OK {
		t.Fatalf("got %q, want OK", res.Reason)
	}
	f.ln.Close()
	f.wg.Wait()
	if !f.saw("z LOGOUT") {
		t.Errorf("fake got %q, want z LOGOUT", f.received())
	}
}

func TestTLSFailure(t *testing.T) {
	srvCfg, _ := selfSigned(t)
	f := startFake(t, script(t, imapGreeting), withTLS(srvCfg))
	c, err := New(Options{Type: TypeIMAP, Address: f.addr(), Timeout: passTimeout, Logger: discardLogger(), TLS: &tls.Config{}})
	if err != nil {
		t.Fatal(err)
	}
	res := c.CheckNow(t.Context())
	if res.OK || !strings.HasPrefix(res.Reason, "imap: in TLS handshake: ") {
		t.Errorf("got %q, want an unverified certificate in the TLS handshake", res.Reason)
	}
}

// pipeDial returns a Dial hook whose connections are net.Pipe ends served
// by serve in a new goroutine, for probes on synctest's fake clock.
func pipeDial(serve func(net.Conn)) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		go serve(server)
		return client, nil
	}
}

// TestProbeTimeoutOnFakeClock checks the default 2s budget exactly: the
// server greets, then never answers CAPABILITY.
func TestProbeTimeoutOnFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stall := func(conn net.Conn) {
			defer conn.Close()
			conn.Write([]byte("* OK ready\r\n"))
			buf := make([]byte, 512)
			for {
				if _, err := conn.Read(buf); err != nil {
					return // the client closed
				}
			}
		}
		c, err := New(Options{Type: TypeIMAP, Address: "mail1:143", Logger: discardLogger(), Dial: pipeDial(stall)})
		if err != nil {
			t.Fatal(err)
		}
		res := c.CheckNow(t.Context())
		if want := "imap: timeout after 2s reading CAPABILITY reply"; res.Reason != want {
			t.Errorf("got %q, want %q", res.Reason, want)
		}
		if res.Latency != 2*time.Second {
			t.Errorf("got latency %v, want 2s on the fake clock", res.Latency)
		}
		if !errors.Is(res.Err, os.ErrDeadlineExceeded) {
			t.Errorf("got Err %v, want os.ErrDeadlineExceeded inside", res.Err)
		}
	})
}

func TestCheckNowCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		silent := func(conn net.Conn) {
			defer conn.Close()
			cancel()
			buf := make([]byte, 512)
			for {
				if _, err := conn.Read(buf); err != nil {
					return
				}
			}
		}
		c, err := New(Options{Type: TypePOP3, Address: "mail1:110", Logger: discardLogger(), Dial: pipeDial(silent)})
		if err != nil {
			t.Fatal(err)
		}
		res := c.CheckNow(ctx)
		if want := "pop3: canceled reading greeting"; res.Reason != want {
			t.Errorf("got %q, want %q", res.Reason, want)
		}
		if !errors.Is(res.Err, context.Canceled) {
			t.Errorf("got Err %v, want context.Canceled", res.Err)
		}
	})
}

// TestRunWithRealProbe drives Run against a fake that passes, then fails,
// on the fake clock, and checks the transition's reason.
func TestRunWithRealProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var down Transition
		serve := func(conn net.Conn) {
			defer conn.Close()
			conn.Write([]byte("421 4.3.2 Shutting down\r\n"))
			buf := make([]byte, 512)
			for {
				n, err := conn.Read(buf)
				if err != nil {
					return
				}
				if strings.HasPrefix(string(buf[:n]), "QUIT") {
					conn.Write([]byte("221 bye\r\n"))
				}
			}
		}
		c, err := New(Options{
			Server: "mail1", Type: TypeLMTP, Address: "mail1:24", Logger: discardLogger(),
			Rise: 1, Fall: 1, Dial: pipeDial(serve),
			OnChange: func(tr Transition) { down = tr; cancel() },
		})
		if err != nil {
			t.Fatal(err)
		}
		c.Run(ctx)
		if want := `lmtp: greeting "421 4.3.2 Shutting down", want 220`; down.Up || down.Reason != want {
			t.Errorf("got transition %+v, want down with reason %q", down, want)
		}
	})
}
