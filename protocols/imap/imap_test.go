package imap

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/proxy/proxytest"
)

func plain(authzid, user, pass string) string { return sasl.EncodePlain(authzid, user, pass) }

func TestGreeting(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{name: "default", opts: Options{PlaintextLogin: true},
			want: "* OK [CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ AUTH=PLAIN] maildirector ready."},
		{name: "custom text, login disabled", opts: Options{Greeting: "Hi."},
			want: "* OK [CAPABILITY IMAP4rev1 SASL-IR ID LITERAL+ LOGINDISABLED] Hi."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envConfig{opts: tt.opts})
			c := e.dial(t, false)
			if got := c.expect("* OK"); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCapability(t *testing.T) {
	serverCaps := func() []string {
		return []string{"IMAP4rev1", "IDLE", "STARTTLS", "AUTH=XOAUTH2", "AUTH=SCRAM-SHA-1", "LOGINDISABLED", "sasl-ir", "bad cap", "ENABLE", "idle"}
	}
	tests := []struct {
		name     string
		cfg      envConfig
		starttls bool
		want     []string
		wantNot  []string
	}{
		{
			name:    "plaintext allowed, no certificate",
			cfg:     envConfig{opts: Options{PlaintextLogin: true}},
			want:    []string{"IMAP4rev1", "SASL-IR", "ID", "LITERAL+", "AUTH=PLAIN"},
			wantNot: []string{"STARTTLS", "LOGINDISABLED"},
		},
		{
			name:    "plaintext refused before STARTTLS",
			cfg:     envConfig{tls: true},
			want:    []string{"IMAP4rev1", "STARTTLS", "LOGINDISABLED"},
			wantNot: []string{"AUTH=PLAIN"},
		},
		{
			name:     "after STARTTLS",
			cfg:      envConfig{tls: true},
			starttls: true,
			want:     []string{"IMAP4rev1", "SASL-IR", "AUTH=PLAIN"},
			wantNot:  []string{"STARTTLS", "LOGINDISABLED"},
		},
		{
			name:    "plaintext allowed with certificate",
			cfg:     envConfig{tls: true, opts: Options{PlaintextLogin: true}},
			want:    []string{"STARTTLS", "AUTH=PLAIN"},
			wantNot: []string{"LOGINDISABLED"},
		},
		{
			name:    "server capabilities merged",
			cfg:     envConfig{opts: Options{PlaintextLogin: true, ServerCapabilities: serverCaps}},
			want:    []string{"IMAP4rev1", "IDLE", "ENABLE", "AUTH=PLAIN", "AUTH=XOAUTH2"},
			wantNot: []string{"STARTTLS", "LOGINDISABLED", "AUTH=SCRAM-SHA-1", "idle", "sasl-ir", "bad", "cap"},
		},
		{
			name:    "server capabilities without login",
			cfg:     envConfig{tls: true, opts: Options{ServerCapabilities: serverCaps}},
			want:    []string{"STARTTLS", "LOGINDISABLED", "IDLE"},
			wantNot: []string{"AUTH=PLAIN", "AUTH=XOAUTH2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.cfg)
			c := e.greeted(t)
			if tt.starttls {
				c.startTLS("s")
			}
			got := c.capabilities("a")
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("got %v, want it to contain %s", got, w)
				}
			}
			for _, w := range tt.wantNot {
				if slices.Contains(got, w) {
					t.Errorf("got %v, want it without %s", got, w)
				}
			}
			seen := map[string]bool{}
			for _, c := range got {
				if seen[strings.ToUpper(c)] {
					t.Errorf("got %s twice in %v", c, got)
				}
				seen[strings.ToUpper(c)] = true
			}
		})
	}
}

func TestImplicitTLS(t *testing.T) {
	e := newEnv(t, envConfig{implicitTLS: true})
	c := e.dial(t, true)
	greeting := c.expect("* OK [CAPABILITY ")
	if strings.Contains(greeting, "STARTTLS") || strings.Contains(greeting, "LOGINDISABLED") || !strings.Contains(greeting, "AUTH=PLAIN") {
		t.Errorf("got greeting %q, want AUTH=PLAIN without STARTTLS or LOGINDISABLED", greeting)
	}
	c.send("a STARTTLS\r\n")
	c.expect("a BAD TLS is already active")
	c.send("b LOGIN alice " + goodPassword + "\r\n")
	c.expect("* OK welcome alice")
	c.expect("b OK [CAPABILITY")
}

func TestStartTLS(t *testing.T) {
	t.Run("discards pipelined plaintext", func(t *testing.T) {
		e := newEnv(t, envConfig{tls: true, opts: Options{PlaintextLogin: true}})
		c := e.greeted(t)
		// RFC 9051 section 6.2.1: what follows STARTTLS in the same
		// packet was not protected and must not be acted upon.
		c.send("a STARTTLS\r\nb LOGIN alice " + goodPassword + "\r\n")
		c.expect("a OK")
		c.handshakeTLS()
		c.send("c NOOP\r\n")
		if got := c.expect("c "); got != "c OK NOOP completed." {
			t.Errorf("got %q, want c OK NOOP completed.", got)
		}
		if logins, _ := e.servers[0].seen(); len(logins) != 0 {
			t.Errorf("got logins %v on the server, want none", logins)
		}
	})
	t.Run("second STARTTLS is BAD", func(t *testing.T) {
		e := newEnv(t, envConfig{tls: true})
		c := e.greeted(t)
		c.startTLS("a")
		c.send("b STARTTLS\r\n")
		c.expect("b BAD TLS is already active")
	})
	t.Run("without certificate is BAD", func(t *testing.T) {
		e := newEnv(t, envConfig{opts: Options{PlaintextLogin: true}})
		c := e.greeted(t)
		c.send("a STARTTLS\r\n")
		c.expect("a BAD STARTTLS not available")
	})
	t.Run("login after STARTTLS", func(t *testing.T) {
		e := newEnv(t, envConfig{tls: true})
		c := e.greeted(t)
		c.send("a LOGIN alice " + goodPassword + "\r\n")
		c.expect("a NO [PRIVACYREQUIRED]")
		c.send("b AUTHENTICATE PLAIN " + plain("", "alice", goodPassword) + "\r\n")
		c.expect("b NO [PRIVACYREQUIRED]")
		c.startTLS("c")
		c.send("d LOGIN alice " + goodPassword + "\r\n")
		c.expect("* OK welcome alice")
		c.expect("d OK [CAPABILITY")
	})
}

func TestLogin(t *testing.T) {
	noIR := "IMAP4rev1 AUTH=PLAIN"
	tests := []struct {
		name       string
		serverCaps string
		send       []string // client lines; "<+" waits for the continuation request
		wantLogin  string   // what the server saw
	}{
		{name: "atoms", serverCaps: dovecotCaps,
			send: []string{"a LOGIN alice s3cret\r\n"}, wantLogin: "AUTHENTICATE alice"},
		{name: "quoted", serverCaps: dovecotCaps,
			send: []string{`a LOGIN "alice" "s3cret"` + "\r\n"}, wantLogin: "AUTHENTICATE alice"},
		{name: "synchronising literals", serverCaps: dovecotCaps,
			send: []string{"a LOGIN {5}\r\n", "<+", "alice {6}\r\n", "<+", "s3cret\r\n"}, wantLogin: "AUTHENTICATE alice"},
		{name: "non-synchronising literals", serverCaps: dovecotCaps,
			send: []string{"a LOGIN {5+}\r\nalice {6+}\r\ns3cret\r\n"}, wantLogin: "AUTHENTICATE alice"},
		{name: "authenticate with initial response", serverCaps: dovecotCaps,
			send: []string{"a AUTHENTICATE PLAIN " + plain("", "alice", goodPassword) + "\r\n"}, wantLogin: "AUTHENTICATE alice"},
		{name: "authenticate with continuation", serverCaps: dovecotCaps,
			send: []string{"a AUTHENTICATE plain\r\n", "<+", plain("", "alice", goodPassword) + "\r\n"}, wantLogin: "AUTHENTICATE alice"},
		{name: "authenticate with empty initial response", serverCaps: dovecotCaps,
			send: []string{"a AUTHENTICATE PLAIN =\r\n", "<+", plain("", "alice", goodPassword) + "\r\n"}, wantLogin: "AUTHENTICATE alice"},
		{name: "server without SASL-IR gets LOGIN", serverCaps: noIR,
			send: []string{"a LOGIN alice s3cret\r\n"}, wantLogin: "LOGIN alice"},
		{name: "server without SASL-IR, authenticate becomes LOGIN", serverCaps: noIR,
			send: []string{"a AUTHENTICATE PLAIN " + plain("", "alice", goodPassword) + "\r\n"}, wantLogin: "LOGIN alice"},
		{name: "server without SASL-IR, user needs quoting", serverCaps: noIR,
			send: []string{`a LOGIN "al\"i ce" s3cret` + "\r\n"}, wantLogin: `LOGIN al"i ce`},
		{name: "server without SASL-IR, 8-bit user as synchronising literal", serverCaps: noIR,
			send: []string{"a LOGIN {6+}\r\nj\xc3\xbcrgn s3cret\r\n"}, wantLogin: "LOGIN j\xc3\xbcrgn"},
		{name: "server with LITERAL+ only, 8-bit user as literal+", serverCaps: "IMAP4rev1 LITERAL+",
			send: []string{"a LOGIN \"j\xc3\xbcrgn\" s3cret\r\n"}, wantLogin: "LOGIN j\xc3\xbcrgn"},
		{name: "server with LOGINDISABLED gets AUTHENTICATE without IR", serverCaps: "IMAP4rev1 LOGINDISABLED AUTH=PLAIN",
			send: []string{"a LOGIN alice s3cret\r\n"}, wantLogin: "AUTHENTICATE alice"},
		{name: "lower-case verb and odd tag", serverCaps: dovecotCaps,
			send: []string{"x.1] login alice s3cret\r\n"}, wantLogin: "AUTHENTICATE alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := startFake(t, "dovecot1", fakeOK, tt.serverCaps)
			e := newEnv(t, envConfig{opts: Options{PlaintextLogin: true}, servers: []*fakeServer{fake}})
			c := e.greeted(t)
			for _, s := range tt.send {
				if s == "<+" {
					c.expect("+ ")
					continue
				}
				c.send(s)
			}
			c.expect("* OK welcome")
			tag, _, _ := strings.Cut(tt.send[0], " ")
			c.expect(tag + " OK [CAPABILITY IMAP4rev1 IDLE MOVE] Logged in")
			logins, _ := fake.seen()
			if len(logins) != 1 || logins[0] != tt.wantLogin {
				t.Errorf("server saw %q, want [%q]", logins, tt.wantLogin)
			}
			users := e.picker.Users()
			if want := strings.TrimPrefix(strings.TrimPrefix(tt.wantLogin, "LOGIN "), "AUTHENTICATE "); len(users) != 1 || users[0] != want {
				t.Errorf("picker got users %q, want [%q]", users, want)
			}
			// The session is relayed now: the server answers.
			c.send("z SELECT INBOX\r\n")
			c.expect("* 0 EXISTS")
			c.expect("z OK [READ-WRITE]")
		})
	}
}

func TestLoginRoutesOnAuthzid(t *testing.T) {
	e := newEnv(t, envConfig{opts: Options{PlaintextLogin: true}})
	c := e.greeted(t)
	c.send("a AUTHENTICATE PLAIN " + plain("alice", "master", goodPassword) + "\r\n")
	c.expect("* OK welcome master")
	c.expect("a OK")
	if len(e.picker.Users()) != 1 || e.picker.Users()[0] != "alice" {
		t.Errorf("got picks for %q, want [alice]", e.picker.Users())
	}
}

func TestXOAUTH2(t *testing.T) {
	offer := func() []string { return []string{"AUTH=XOAUTH2"} }
	good := base64.StdEncoding.EncodeToString([]byte("user=alice\x01auth=Bearer goodtoken\x01\x01"))
	bad := base64.StdEncoding.EncodeToString([]byte("user=alice\x01auth=Bearer expired\x01\x01"))
	e := newEnv(t, envConfig{opts: Options{PlaintextLogin: true, ServerCapabilities: offer}})
	c := e.greeted(t)
	c.send("a AUTHENTICATE XOAUTH2 " + bad + "\r\n")
	c.expect("a NO [AUTHENTICATIONFAILED]")
	c.send("b AUTHENTICATE XOAUTH2\r\n")
	c.expect("+ ")
	c.send(good + "\r\n")
	c.expect("b OK [CAPABILITY")
	// The client's initial response reached the server as it was sent.
	if logins, _ := e.servers[0].seen(); !slices.Equal(logins, []string{"XOAUTH2 " + bad, "XOAUTH2 " + good}) {
		t.Errorf("server saw %q, want the client's two responses", logins)
	}
	if !slices.Equal(e.picker.Users(), []string{"alice", "alice"}) {
		t.Errorf("got picks for %q, want [alice alice]", e.picker.Users())
	}
}

func TestAuthenticateRefusals(t *testing.T) {
	tests := []struct {
		name string
		send []string
		want string
	}{
		{name: "cancel", send: []string{"a AUTHENTICATE PLAIN\r\n", "<+", "*\r\n"}, want: "a BAD Authentication canceled."},
		{name: "bad base64", send: []string{"a AUTHENTICATE PLAIN !!!\r\n"}, want: "a BAD"},
		{name: "malformed plain", send: []string{"a AUTHENTICATE PLAIN " + base64.StdEncoding.EncodeToString([]byte("alice")) + "\r\n"},
			want: "a NO [AUTHENTICATIONFAILED]"},
		{name: "unknown mechanism", send: []string{"a AUTHENTICATE CRAM-MD5\r\n"}, want: "a NO Unsupported authentication mechanism."},
		{name: "oauth not offered by servers", send: []string{"a AUTHENTICATE XOAUTH2 dXNlcj1h\r\n"}, want: "a NO Unsupported"},
		{name: "no mechanism", send: []string{"a AUTHENTICATE\r\n"}, want: "a BAD"},
		{name: "login without password", send: []string{"a LOGIN alice\r\n"}, want: "a BAD"},
		{name: "login with empty password", send: []string{`a LOGIN alice ""` + "\r\n"}, want: "a NO [AUTHENTICATIONFAILED]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envConfig{opts: Options{PlaintextLogin: true}})
			c := e.greeted(t)
			for _, s := range tt.send {
				if s == "<+" {
					c.expect("+ ")
					continue
				}
				c.send(s)
			}
			c.expect(tt.want)
			c.send("b NOOP\r\n")
			c.expect("b OK NOOP completed.")
			if logins, _ := e.servers[0].seen(); len(logins) != 0 {
				t.Errorf("server saw %q, want no login", logins)
			}
		})
	}
}

func TestWrongPasswordThenRetry(t *testing.T) {
	e := newEnv(t, envConfig{opts: Options{PlaintextLogin: true}})
	c := e.greeted(t)
	c.send("a LOGIN alice wrong\r\n")
	if got := c.expect("a "); got != "a NO [AUTHENTICATIONFAILED] Authentication failed." {
		t.Errorf("got %q, want the server's NO", got)
	}
	c.send("b LOGIN alice " + goodPassword + "\r\n")
	c.expect("* OK welcome alice")
	c.expect("b OK [CAPABILITY")
	if f := e.picker.Failures(); len(f) != 0 {
		t.Errorf("got server failures %v, want none (a NO is not a server failure)", f)
	}
}

func TestMaxLoginAttempts(t *testing.T) {
	tests := []struct {
		name string
		max  int
		want int // failures before BYE
	}{
		{name: "default", max: 0, want: 3},
		{name: "one", max: 1, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envConfig{opts: Options{PlaintextLogin: true, MaxLoginAttempts: tt.max}})
			c := e.greeted(t)
			for i := range tt.want {
				c.send("a LOGIN alice wrong\r\n")
				c.expect("a NO [AUTHENTICATIONFAILED]")
				if i < tt.want-1 {
					c.send("n NOOP\r\n")
					c.expect("n OK")
				}
			}
			lines := c.expectClosed(2)
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "* BYE") {
				t.Errorf("got %q, want one * BYE and EOF", lines)
			}
		})
	}
}

func TestServerFailover(t *testing.T) {
	for _, mode := range []fakeMode{fakeDropOnLogin, fakeByeGreeting, fakeGarbage, fakeSilent} {
		t.Run(strings.Fields("drop bye garbage silent")[mode-1], func(t *testing.T) {
			bad := startFake(t, "bad", mode, dovecotCaps)
			good := startFake(t, "good", fakeOK, dovecotCaps)
			e := newEnv(t, envConfig{
				opts:     Options{PlaintextLogin: true},
				servers:  []*fakeServer{bad, good},
				timeouts: proxy.Timeouts{ServerLogin: 300 * time.Millisecond},
			})
			c := e.loggedIn(t)
			if f := e.picker.Failures(); !slices.Equal(f, []string{"bad"}) {
				t.Errorf("got failures %v, want [bad]", f)
			}
			if logins, _ := good.seen(); len(logins) != 1 {
				t.Errorf("good server saw %q, want one login", logins)
			}
			c.send("b NOOP\r\n")
			c.expect("b OK NOOP completed.")
		})
	}
}

// TestServerRefusesLogin: a server that answers the login with an untagged
// BAD (as Dovecot does with input it cannot take) is answering for the
// client: the client gets BAD, no other server is tried, none is counted
// as failed.
func TestServerRefusesLogin(t *testing.T) {
	first := startFake(t, "first", fakeRefuseLogin, dovecotCaps)
	second := startFake(t, "second", fakeOK, dovecotCaps)
	e := newEnv(t, envConfig{opts: Options{PlaintextLogin: true}, servers: []*fakeServer{first, second}})
	c := e.greeted(t)
	for i := range 3 {
		tag := fmt.Sprintf("a%d]", i)
		c.send(tag + " LOGIN alice " + goodPassword + "\r\n")
		if got, want := c.expect(tag+" "), tag+" BAD Error in IMAP command received by server."; got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	c.send("b NOOP\r\n")
	c.expect("b OK")
	if f := e.picker.Failures(); len(f) != 0 {
		t.Errorf("got failures %v, want none", f)
	}
	if logins, _ := first.seen(); len(logins) != 3 {
		t.Errorf("first server saw %q, want three logins", logins)
	}
	if logins, _ := second.seen(); len(logins) != 0 {
		t.Errorf("second server saw %q, want nothing", logins)
	}
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		name    string
		picker  func(t *testing.T) proxy.Picker
		opts    Options
		retries int
	}{
		{name: "every server fails", picker: func(t *testing.T) proxy.Picker {
			a := startFake(t, "a", fakeDropOnLogin, dovecotCaps)
			b := startFake(t, "b", fakeByeGreeting, dovecotCaps)
			return &proxytest.Picker{Targets: []proxy.Target{a.target(), b.target()}}
		}},
		{name: "retries exhausted", retries: -1, picker: func(t *testing.T) proxy.Picker {
			a := startFake(t, "a", fakeDropOnLogin, dovecotCaps)
			b := startFake(t, "b", fakeOK, dovecotCaps)
			return &proxytest.Picker{Targets: []proxy.Target{a.target(), b.target()}}
		}},
		{name: "picker has nothing", picker: func(*testing.T) proxy.Picker {
			return &proxytest.Picker{Err: errors.New("no server up")}
		}},
		{name: "nothing listens", picker: func(*testing.T) proxy.Picker {
			return &proxytest.Picker{Targets: []proxy.Target{{Server: "gone", Address: "127.0.0.1:1"}}}
		}},
		{name: "no picker", picker: func(*testing.T) proxy.Picker { return nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.PlaintextLogin = true
			opts.Picker = tt.picker(t)
			e := newEnv(t, envConfig{opts: opts, retries: tt.retries, noPicker: opts.Picker == nil})
			c := e.greeted(t)
			c.send("a LOGIN alice " + goodPassword + "\r\n")
			if got := c.expect("a "); got != "a NO [UNAVAILABLE] Service temporarily unavailable" {
				t.Errorf("got %q, want NO [UNAVAILABLE]", got)
			}
			c.send("b NOOP\r\n")
			c.expect("b OK")
		})
	}
}

func TestPipelinedAfterLogin(t *testing.T) {
	e := newEnv(t, envConfig{opts: Options{PlaintextLogin: true}})
	c := e.greeted(t)
	c.send("a LOGIN alice " + goodPassword + "\r\nb SELECT INBOX\r\nc LOGOUT\r\n")
	c.expect("* OK welcome alice")
	c.expect("a OK [CAPABILITY")
	c.expect("* 0 EXISTS")
	c.expect("b OK [READ-WRITE]")
	c.expect("* BYE Logging out")
	c.expect("c OK Logout completed.")
	c.expectClosed(0)
	if _, cmds := e.servers[0].seen(); !slices.Equal(cmds, []string{"SELECT", "LOGOUT"}) {
		t.Errorf("server saw %v, want [SELECT LOGOUT]", cmds)
	}
}

func TestLocalCommands(t *testing.T) {
	tests := []struct {
		name string
		send string
		want []string
	}{
		{name: "noop", send: "a NOOP\r\n", want: []string{"a OK NOOP completed."}},
		{name: "id nil", send: "a ID NIL\r\n", want: []string{`* ID ("name" "maildirector")`, "a OK ID completed."}},
		{name: "id list", send: `a ID ("name" "Thunderbird" "version" "128")` + "\r\n",
			want: []string{`* ID ("name" "maildirector")`, "a OK ID completed."}},
		{name: "id literal", send: "a ID ({4}\r\n", want: []string{"+ Ready for literal data"}},
		{name: "id bad", send: "a ID foo\r\n", want: []string{"a BAD"}},
		{name: "noop with args", send: "a NOOP x\r\n", want: []string{"a BAD"}},
		{name: "capability with args", send: "a CAPABILITY x\r\n", want: []string{"a BAD"}},
		{name: "empty line", send: "\r\n", want: []string{"* BAD Empty command line"}},
		{name: "bare LF", send: "a NOOP\n", want: []string{"a OK NOOP completed."}},
		{name: "select before login", send: "a SELECT INBOX\r\n", want: []string{"a BAD Command not permitted before login"}},
		{name: "append with synchronising literal", send: "a APPEND INBOX {10}\r\n", want: []string{"a BAD Command not permitted before login"}},
		{name: "uid fetch", send: "a UID FETCH 1:* (FLAGS)\r\n", want: []string{"a BAD"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envConfig{opts: Options{PlaintextLogin: true}})
			c := e.greeted(t)
			c.send(tt.send)
			for _, w := range tt.want {
				if got := c.expect(w); strings.HasSuffix(w, ".") && got != w {
					t.Errorf("got %q, want %q", got, w)
				}
			}
		})
	}
}

func TestLogout(t *testing.T) {
	e := newEnv(t, envConfig{})
	c := e.greeted(t)
	c.send("a LOGOUT\r\n")
	lines := c.expectClosed(2)
	if want := []string{"* BYE Logging out", "a OK Logout completed."}; !slices.Equal(lines, want) {
		t.Errorf("got %q, want %q", lines, want)
	}
}

func TestTooManyBadCommands(t *testing.T) {
	e := newEnv(t, envConfig{})
	c := e.greeted(t)
	for range maxBadCommands - 1 {
		c.send("a FETCH 1 FLAGS\r\n")
		c.expect("a BAD Command not permitted before login")
	}
	c.send("a SELECT INBOX\r\n")
	lines := c.expectClosed(2)
	if len(lines) != 2 || lines[0] != "a BAD Command not permitted before login" || !strings.HasPrefix(lines[1], "* BYE") {
		t.Errorf("got %q, want a BAD and a BYE", lines)
	}
}

// TestHostileClients: whatever a client sends, the session answers with a
// bounded number of lines and closes; nothing reaches a server.
func TestHostileClients(t *testing.T) {
	garbage := strings.Repeat("garbage line\r\n", 1000)
	noise := make([]byte, 4096)
	for i := range noise {
		noise[i] = byte(i*7 + i/13)
	}
	clientHello := "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + strings.Repeat("\x00\x2f", 100)
	tests := []struct {
		name     string
		send     string
		timeouts proxy.Timeouts
		want     string // the last line before EOF
	}{
		{name: "http request", send: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", want: "* BYE Unknown command"},
		{name: "smtp", send: "EHLO example.org\r\n", want: "* BYE Unknown command"},
		{name: "tls client hello", send: clientHello, want: "* BYE Unknown command"},
		{name: "binary noise", send: string(noise), want: "* BYE Unknown command"},
		{name: "1000 garbage lines", send: garbage, want: "* BYE Unknown command"},
		{name: "tag without command", send: "a1\r\n", want: "* BYE Unknown command"},
		{name: "overlong line", send: "a LOGIN " + strings.Repeat("x", 20000) + "\r\n", want: "* BYE Line too long"},
		{name: "overlong line without end", send: "a LOGIN " + strings.Repeat("x", 20000), want: "* BYE Line too long"},
		{name: "literal too big", send: "a LOGIN {5000}\r\n", want: "* BYE [TOOBIG] Literal too big"},
		{name: "literal+ too big", send: "a LOGIN {99999+}\r\n", want: "* BYE [TOOBIG] Literal too big"},
		{name: "literal+ with a bad length", send: "a LOGIN {1x+}\r\nab c\r\n", want: "* BYE Literal out of sync"},
		{name: "literal+ with too many digits", send: "a LOGIN {123456789012+}\r\n", want: "* BYE Literal out of sync"},
		{name: "literals over the line cap", send: "a ID (" + strings.Repeat("{4000+}\r\n"+strings.Repeat("y", 4000)+" ", 3), want: "* BYE [TOOBIG] Literal too big"},
		{name: "unterminated literal", send: "a LOGIN {10+}\r\nabc", timeouts: proxy.Timeouts{PreAuth: 300 * time.Millisecond},
			want: "* BYE Disconnected for inactivity."},
		{name: "idle client", send: "", timeouts: proxy.Timeouts{PreAuth: 300 * time.Millisecond}, want: "* BYE Disconnected for inactivity."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envConfig{opts: Options{PlaintextLogin: true}, timeouts: tt.timeouts})
			c := e.greeted(t)
			go writeBestEffort(c, tt.send)
			lines := c.expectClosed(3)
			if len(lines) == 0 || lines[len(lines)-1] != tt.want {
				t.Errorf("got %q, want it to end with %q", lines, tt.want)
			}
			if logins, _ := e.servers[0].seen(); len(logins) != 0 {
				t.Errorf("server saw %q, want nothing", logins)
			}
		})
	}
}

// writeBestEffort writes s and ignores errors: the proxy may hang up first.
// It exits when the write completes or fails.
func writeBestEffort(c *client, s string) {
	if s != "" {
		c.conn.Write([]byte(s))
	}
}

func TestShutdownSaysBye(t *testing.T) {
	e := newEnv(t, envConfig{})
	c := e.greeted(t)
	c.send("a NOOP\r\n")
	c.expect("a OK")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go e.srv.Shutdown(ctx)
	lines := c.expectClosed(1)
	if want := []string{"* BYE Server shutting down."}; !slices.Equal(lines, want) {
		t.Errorf("got %q, want %q", lines, want)
	}
}

// TestNoSecretsInLogs runs logins of every kind with Debug logging on and
// checks that no password, token or SASL payload reaches the log.
func TestNoSecretsInLogs(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	offer := func() []string { return []string{"AUTH=XOAUTH2"} }
	e := newEnv(t, envConfig{opts: Options{PlaintextLogin: true, ServerCapabilities: offer}, logger: logger})
	c := e.greeted(t)
	ir := plain("", "alice", "wrongpass1")
	token := base64.StdEncoding.EncodeToString([]byte("user=alice\x01auth=Bearer tokensecret\x01\x01"))
	c.send("a LOGIN alice wrongpass2\r\n")
	c.expect("a NO")
	c.send("b AUTHENTICATE PLAIN " + ir + "\r\n")
	c.expect("b NO")
	c.send("c AUTHENTICATE XOAUTH2 " + token + "\r\n")
	c.expect("c NO")
	c.expectClosed(1)
	waitFor(t, func() bool { return len(e.srv.Sessions()) == 0 })
	logs := buf.String()
	if !strings.Contains(logs, "imap login") {
		t.Fatalf("got logs %q, want Debug lines about the logins", logs)
	}
	for _, secret := range []string{"wrongpass1", "wrongpass2", "tokensecret", ir, token} {
		if strings.Contains(logs, secret) {
			t.Errorf("log contains the secret %q:\n%s", secret, logs)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met in 5s")
}

func TestOptionDefaults(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		maxLogins int
		greeting  string
	}{
		{name: "zero", opts: Options{}, maxLogins: 3, greeting: "maildirector ready."},
		{name: "negative", opts: Options{MaxLoginAttempts: -5}, maxLogins: math.MaxInt, greeting: "maildirector ready."},
		{name: "set", opts: Options{MaxLoginAttempts: 7, Greeting: "Hello"}, maxLogins: 7, greeting: "Hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.opts.maxLoginAttempts(); got != tt.maxLogins {
				t.Errorf("maxLoginAttempts: got %d, want %d", got, tt.maxLogins)
			}
			if got := tt.opts.greeting(); got != tt.greeting {
				t.Errorf("greeting: got %q, want %q", got, tt.greeting)
			}
		})
	}
}

func TestTooManyCommandsBeforeLogin(t *testing.T) {
	e := newEnv(t, envConfig{opts: Options{PlaintextLogin: true}})
	c := e.greeted(t)
	var b strings.Builder
	for i := 0; i < maxCommands; i++ {
		fmt.Fprintf(&b, "n%d NOOP\r\n", i)
	}
	c.send(b.String())
	lines := c.expectClosed(2*maxCommands + 2)
	if len(lines) == 0 || lines[len(lines)-1] != "* BYE Too many commands before login." {
		t.Fatalf("after %d NOOPs: got last lines %q, want the BYE and a close", maxCommands, lines[max(0, len(lines)-2):])
	}
}

// TestLoginDeadline: a client that keeps the pre-login timeout from firing
// with a NOOP now and then is still closed at the login deadline, well
// before its commands run out (found by an adversarial review: one byte a
// minute held a slot for hours).
func TestLoginDeadline(t *testing.T) {
	e := newEnv(t, envConfig{timeouts: proxy.Timeouts{PreAuth: 5 * time.Second, LoginDeadline: time.Second}})
	c := e.greeted(t)
	const noops = 60 // 60 × 100ms: 6 pre-login timeouts' worth of chatter, under maxCommands
	for i := range noops {
		if _, err := fmt.Fprintf(c.conn, "n%d NOOP\r\n", i); err != nil {
			break // closed: the deadline hit
		}
		l, err := c.line()
		if err != nil || strings.HasPrefix(l, "* BYE") {
			if !strings.HasPrefix(l, "* BYE") && l != "" {
				t.Fatalf("after %d NOOPs: %q, %v; want a BYE", i, l, err)
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the session is still open after %d NOOPs spread over 6s with a 1s login deadline", noops)
}
