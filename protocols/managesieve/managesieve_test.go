package managesieve

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/proxy/proxytest"
)

func TestGreeting(t *testing.T) {
	learned := []string{
		"IMPLEMENTATION Dovecot (Debian) Pigeonhole", "SIEVE fileinto reject envelope", "NOTIFY mailto",
		"SASL PLAIN LOGIN GSSAPI", "STARTTLS", "VERSION 1.0", "OWNER user000", "MAXREDIRECTS 4",
		"LANGUAGE fr",
	}
	tests := []struct {
		name    string
		opts    Options
		tls     bool
		want    []string
		wantEnd string
	}{
		{
			name: "learned from the servers, plaintext allowed, no certificates",
			opts: Options{PlaintextLogin: true, ServerCapabilities: func() []string { return learned }},
			want: []string{
				`"IMPLEMENTATION" "Dovecot (Debian) Pigeonhole"`, `"SIEVE" "fileinto reject envelope"`,
				`"NOTIFY" "mailto"`, `"MAXREDIRECTS" "4"`, `"SASL" "PLAIN"`, `"VERSION" "1.0"`,
			},
			wantEnd: `OK "maildirector ready."`,
		},
		{
			name: "nothing learned yet, STARTTLS required first",
			opts: Options{Greeting: "Sieve\r\n here."},
			tls:  true,
			want: []string{
				`"IMPLEMENTATION" "maildirector"`, `"SIEVE" "` + strings.TrimPrefix(fallbackCapabilities[1], "SIEVE ") + `"`,
				`"NOTIFY" "mailto"`, `"SASL" ""`, `"STARTTLS"`, `"VERSION" "1.0"`,
			},
			wantEnd: `OK "Sieve here."`,
		},
		{
			name: "a server without IMPLEMENTATION and SIEVE still gets them",
			opts: Options{PlaintextLogin: true, ServerCapabilities: func() []string { return []string{"VERSION 1.0"} }},
			want: []string{
				`"IMPLEMENTATION" "maildirector"`, `"SIEVE" "` + strings.TrimPrefix(fallbackCapabilities[1], "SIEVE ") + `"`,
				`"SASL" "PLAIN"`, `"VERSION" "1.0"`,
			},
			wantEnd: `OK "maildirector ready."`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tlsCfg *tls.Config
			if tt.tls {
				tlsCfg = proxytest.ServerTLS(t)
			}
			addr := startFrontend(t, tt.opts, tlsCfg)
			c := dial(t, addr)
			var got []string
			for range len(tt.want) {
				got = append(got, c.readLine())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("greeting:\ngot  %q\nwant %q", got, tt.want)
			}
			if end := c.readLine(); end != tt.wantEnd {
				t.Errorf("greeting's end: got %q, want %q", end, tt.wantEnd)
			}
			// RFC 5804 section 2.4: CAPABILITY says the same, then OK.
			c.send("CAPABILITY")
			if caps := c.capabilityLines("CAPABILITY"); !slices.Equal(caps, tt.want) {
				t.Errorf("CAPABILITY:\ngot  %q\nwant %q", caps, tt.want)
			}
		})
	}
}

func TestLogin(t *testing.T) {
	ir := plainIR("alice", "secret")
	n := strconv.Itoa(len(ir))
	tests := []struct {
		name  string
		login func(c *client)
	}{
		{"initial response, quoted", func(c *client) {
			c.expect(`AUTHENTICATE "PLAIN" "`+ir+`"`, `OK "Logged in."`)
		}},
		{"initial response, non-synchronising literal", func(c *client) {
			c.expect("AUTHENTICATE \"PLAIN\" {"+n+"+}\r\n"+ir, `OK "Logged in."`)
		}},
		{"initial response, synchronising literal read without a continuation", func(c *client) {
			c.expect("authenticate \"plain\" {"+n+"}\r\n"+ir, `OK "Logged in."`)
		}},
		{"continuation, quoted", func(c *client) {
			c.expect(`AUTHENTICATE "PLAIN"`, `""`)
			c.expect(`"`+ir+`"`, `OK "Logged in."`)
		}},
		{"continuation, literal", func(c *client) {
			c.expect(`AUTHENTICATE "PLAIN"`, `""`)
			c.expect("{"+n+"+}\r\n"+ir, `OK "Logged in."`)
		}},
		{"pipelined", func(c *client) {
			c.send(`AUTHENTICATE "PLAIN" "` + ir + "\"\r\nLISTSCRIPTS")
			if got := c.readLine(); got != `OK "Logged in."` {
				t.Fatalf("got %q, want OK", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := startFake(t, &fakeServer{})
			picker := &proxytest.Picker{Targets: []proxy.Target{fake.target("s1")}}
			addr := startFrontend(t, Options{Picker: picker, PlaintextLogin: true}, nil)
			c, _ := greeted(t, addr)
			tt.login(c)
			if !strings.HasPrefix(tt.name, "pipelined") {
				c.send("LISTSCRIPTS")
			}
			for _, want := range []string{`"vacation" ACTIVE`, `"spam"`, `OK "Listscripts completed."`} {
				if got := c.readLine(); got != want {
					t.Fatalf("LISTSCRIPTS through the relay: got %q, want %q", got, want)
				}
			}
			c.expect("LOGOUT", `OK "Logout completed."`)
			c.expectClosed()
			if got := fake.received(); len(got) == 0 || got[0] != `AUTHENTICATE "PLAIN" "`+ir+`"` {
				t.Errorf("server got %q, want AUTHENTICATE PLAIN with the initial response first", got)
			}
			if got := picker.Users(); !slices.Equal(got, []string{"alice"}) {
				t.Errorf("picked for %q, want alice", got)
			}
		})
	}
}

// TestMasterUserRoutesOnTarget: a login with an authorization identity
// (a Dovecot master user acting as alice) is routed by alice, and the
// server gets the whole PLAIN message.
func TestMasterUserRoutesOnTarget(t *testing.T) {
	fake := startFake(t, &fakeServer{})
	picker := &proxytest.Picker{Targets: []proxy.Target{fake.target("s1")}}
	addr := startFrontend(t, Options{Picker: picker, PlaintextLogin: true}, nil)
	c, _ := greeted(t, addr)
	ir := sasl.EncodePlain("alice", "master", "secret")
	c.expect(`AUTHENTICATE "PLAIN" "`+ir+`"`, `OK "Logged in."`)
	if got := picker.Users(); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("picked for %q, want alice", got)
	}
	if got := fake.received(); len(got) == 0 || !strings.Contains(got[0], ir) {
		t.Errorf("server got %q, want the master login", got)
	}
}

// TestServerAsksForTheResponse: a server that ignores the initial
// response sends an empty challenge and gets the response as a string.
func TestServerAsksForTheResponse(t *testing.T) {
	fake := startFake(t, &fakeServer{noIR: true})
	addr := startFrontend(t, Options{Picker: &proxytest.Picker{Targets: []proxy.Target{fake.target("s1")}}, PlaintextLogin: true}, nil)
	c := authenticated(t, addr, "alice", "secret")
	c.expect("LOGOUT", `OK "Logout completed."`)
	if got := fake.received(); len(got) < 2 || got[1] != `"`+plainIR("alice", "secret")+`"` {
		t.Errorf("server got %q, want the response as a string after its challenge", got)
	}
}

func TestWrongPasswordRelayedAndRetry(t *testing.T) {
	fake := startFake(t, &fakeServer{authErr: `NO (WARNINGS) {22}` + "\r\nAuthentication failed."})
	addr := startFrontend(t, Options{Picker: &proxytest.Picker{Targets: []proxy.Target{fake.target("s1")}}, PlaintextLogin: true}, nil)
	c, _ := greeted(t, addr)
	c.expect(`AUTHENTICATE "PLAIN" "`+plainIR("alice", "wrong")+`"`, `NO (WARNINGS) {22}`)
	if got := c.readLine(); got != "Authentication failed." {
		t.Fatalf("the server's NO with its literal: got %q", got)
	}
	c.expect(`AUTHENTICATE "PLAIN" "`+plainIR("alice", "secret")+`"`, `OK "Logged in."`)
}

func TestTooManyFailedLogins(t *testing.T) {
	fake := startFake(t, &fakeServer{})
	addr := startFrontend(t, Options{
		Picker:           &proxytest.Picker{Targets: []proxy.Target{fake.target("s1")}},
		PlaintextLogin:   true,
		MaxLoginAttempts: 2,
	}, nil)
	c, _ := greeted(t, addr)
	c.expect(`AUTHENTICATE "PLAIN" "`+plainIR("alice", "x")+`"`, `NO "Authentication failed."`)
	c.expect(`AUTHENTICATE "PLAIN" "`+plainIR("alice", "y")+`"`, `NO "Authentication failed."`)
	if got := c.readLine(); got != `BYE "Too many invalid authentication attempts."` {
		t.Fatalf("got %q, want BYE", got)
	}
	c.expectClosed()
}

func TestServerFailover(t *testing.T) {
	tests := []struct {
		name       string
		first      func(t *testing.T) string // address of a server that cannot take the login
		wantFailed []string                  // servers reported to passive health
	}{
		{"connection refused", func(t *testing.T) string { return proxytest.DeadAddr(t) }, []string{"bad"}},
		{"BYE greeting", func(t *testing.T) string {
			return startFake(t, &fakeServer{greeting: []string{`BYE (TRYLATER) "Too many connections."`}}).addr
		}, []string{"bad"}},
		{"not ManageSieve", func(t *testing.T) string {
			return startFake(t, &fakeServer{greeting: []string{"* OK IMAP4rev1 ready."}}).addr
		}, []string{"bad"}},
		// NO (TRYLATER) and BYE to AUTHENTICATE try the next server but are
		// not the server's failure: an auth backend outage must not mark
		// the fleet down.
		{"NO (TRYLATER) to the login", func(t *testing.T) string {
			return startFake(t, &fakeServer{password: "other", authErr: `NO (TRYLATER) "Auth service down."`}).addr
		}, nil},
		{"BYE to the login", func(t *testing.T) string {
			return startFake(t, &fakeServer{password: "other", authErr: `BYE "Shutting down."`}).addr
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := startFake(t, &fakeServer{})
			picker := &proxytest.Picker{Targets: []proxy.Target{
				{Server: "bad", Address: tt.first(t)},
				good.target("good"),
			}}
			addr := startFrontendWith(t, proxy.Frontend{Handler: New(Options{Picker: picker, PlaintextLogin: true}), Retries: 1})
			c := authenticated(t, addr, "alice", "secret")
			c.expect("LOGOUT", `OK "Logout completed."`)
			if got := picker.Failures(); !slices.Equal(got, tt.wantFailed) {
				t.Errorf("failed servers: got %q, want %q", got, tt.wantFailed)
			}
		})
	}
}

func TestNoServer(t *testing.T) {
	tests := []struct {
		name   string
		picker proxy.Picker
	}{
		{"no picker", nil},
		{"none configured", &proxytest.Picker{}},
		{"the only one is down", &proxytest.Picker{Targets: []proxy.Target{{Server: "a", Address: "127.0.0.1:1"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if p, ok := tt.picker.(*proxytest.Picker); ok && len(p.Targets) > 0 {
				p.Targets[0].Address = proxytest.DeadAddr(t)
			}
			addr := startFrontend(t, Options{Picker: tt.picker, PlaintextLogin: true}, nil)
			c, _ := greeted(t, addr)
			c.expect(`AUTHENTICATE "PLAIN" "`+plainIR("alice", "secret")+`"`, `NO (TRYLATER) "Service temporarily unavailable."`)
			c.expect("NOOP", `OK "NOOP completed."`)
		})
	}
}

func TestPlaintextRefusedBeforeTLS(t *testing.T) {
	fake := startFake(t, &fakeServer{})
	addr := startFrontend(t, Options{Picker: &proxytest.Picker{Targets: []proxy.Target{fake.target("s1")}}}, proxytest.ServerTLS(t))
	c, caps := greeted(t, addr)
	if !slices.Contains(caps, `"SASL" ""`) || !slices.Contains(caps, `"STARTTLS"`) {
		t.Errorf("greeting before TLS: got %q, want an empty SASL and STARTTLS", caps)
	}
	const refused = `NO (ENCRYPT-NEEDED) "Plaintext authentication disallowed on non-secure (SSL/TLS) connections."`
	c.expect(`AUTHENTICATE "PLAIN" "`+plainIR("alice", "secret")+`"`, refused)
	c.expect(`AUTHENTICATE "PLAIN"`, refused)
	// RFC 5804 section 2.2: a command pipelined after STARTTLS is not
	// acted upon.
	c.send("STARTTLS\r\nLOGOUT")
	if got := c.readLine(); got != `OK "Begin TLS negotiation now."` {
		t.Fatalf("STARTTLS: got %q", got)
	}
	tc := tls.Client(c.conn, &tls.Config{InsecureSkipVerify: true, ServerName: "localhost"})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	c.conn, c.br = tc, bufio.NewReader(tc)
	caps = c.capabilityLines("after STARTTLS")
	if !slices.Contains(caps, `"SASL" "PLAIN"`) || slices.Contains(caps, `"STARTTLS"`) {
		t.Errorf("capabilities after TLS: got %q, want SASL PLAIN and no STARTTLS", caps)
	}
	c.expect("STARTTLS", `NO "TLS is already active."`)
	c.expect(`AUTHENTICATE "PLAIN" "`+plainIR("alice", "secret")+`"`, `OK "Logged in."`)
	if got := fake.received(); len(got) != 1 {
		t.Errorf("server got %q, want the one login after TLS", got)
	}
}

func TestSTARTTLSUnavailable(t *testing.T) {
	addr := startFrontend(t, Options{}, nil)
	c, caps := greeted(t, addr)
	if slices.Contains(caps, `"STARTTLS"`) {
		t.Errorf("greeting without certificates: got %q, want no STARTTLS", caps)
	}
	c.expect("STARTTLS", `NO "TLS support isn't enabled."`)
}

func TestCommandsBeforeLogin(t *testing.T) {
	fake := startFake(t, &fakeServer{})
	addr := startFrontend(t, Options{
		Picker:           &proxytest.Picker{Targets: []proxy.Target{fake.target("s1")}},
		PlaintextLogin:   true,
		MaxLoginAttempts: 20,
	}, nil)
	tests := []struct {
		name  string
		lines []string // all but the last are answered with an empty challenge
		want  string
	}{
		{"NOOP", []string{"NOOP"}, `OK "NOOP completed."`},
		{"NOOP with a tag", []string{`noop "STARTTLS-SYNC-42"`}, `OK (TAG "STARTTLS-SYNC-42") "Done"`},
		{"NOOP with a literal tag", []string{"NOOP {3+}\r\na\"b"}, `OK (TAG "a\"b") "Done"`},
		{"NOOP with two tags", []string{`NOOP "a" "b"`}, `NO "Error in MANAGESIEVE command received by server."`},
		{"CAPABILITY with an argument", []string{`CAPABILITY "x"`}, `NO "Error in MANAGESIEVE command received by server."`},
		{"LOGOUT with an argument", []string{`LOGOUT "x"`}, `NO "Error in MANAGESIEVE command received by server."`},
		{"a command of the authenticated state", []string{"LISTSCRIPTS"}, `NO "Not logged in."`},
		{"PUTSCRIPT with its literal", []string{"PUTSCRIPT \"a\" {7+}\r\nkeep;\r\n"}, `NO "Not logged in."`},
		{"unterminated string", []string{`AUTHENTICATE "PLAIN`}, `NO "Error in MANAGESIEVE command received by server."`},
		{"no mechanism", []string{"AUTHENTICATE"}, `NO "Error in MANAGESIEVE command received by server."`},
		{"mechanism as an atom", []string{"AUTHENTICATE PLAIN"}, `NO "Error in MANAGESIEVE command received by server."`},
		{"unsupported mechanism", []string{`AUTHENTICATE "LOGIN"`}, `NO "Unsupported authentication mechanism."`},
		{"invalid base64", []string{`AUTHENTICATE "PLAIN" "!!!"`}, `NO "Invalid base64 data in continued response."`},
		{"invalid base64 after the challenge", []string{`AUTHENTICATE "PLAIN"`, `"%%%"`}, `NO "Invalid base64 data in continued response."`},
		{"canceled", []string{`AUTHENTICATE "PLAIN"`, `"*"`}, `NO "Authentication aborted by client."`},
		{"not a string after the challenge", []string{`AUTHENTICATE "PLAIN"`, `abc`}, `NO "Error in MANAGESIEVE command received by server."`},
		{"empty initial response", []string{`AUTHENTICATE "PLAIN" ""`}, `NO "Authentication failed."`},
		{"malformed PLAIN", []string{`AUTHENTICATE "PLAIN" "` + base64.StdEncoding.EncodeToString([]byte("no nul")) + `"`}, `NO "Authentication failed."`},
		{"empty line", []string{""}, `NO "Error in MANAGESIEVE command received by server."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := greeted(t, addr)
			for _, l := range tt.lines[:len(tt.lines)-1] {
				c.expect(l, `""`)
			}
			c.expect(tt.lines[len(tt.lines)-1], tt.want)
			c.expect("LOGOUT", `OK "Logout completed."`)
			c.expectClosed()
		})
	}
	if got := fake.received(); len(got) != 0 {
		t.Errorf("server got %q, want nothing", got)
	}
}

func TestClosesOnBadInput(t *testing.T) {
	tests := []struct {
		name string
		send string
		want string
	}{
		{"unknown command", "HELO there\r\n", `BYE "Unknown command."`},
		{"HTTP request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", `BYE "Unknown command."`},
		{"TLS ClientHello, no line end", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", `BYE "Unknown command."`},
		{"IMAP command", "a1 LOGIN alice secret\r\n", `BYE "Unknown command."`},
		{"overlong command name", strings.Repeat("A", 40), `BYE "Unknown command."`},
		{"overlong line", "NOOP \"" + strings.Repeat("a", 5000) + "\"\r\n", `BYE "Command line too long."`},
		{"literal over the cap", "NOOP {100000+}\r\n", `BYE "Command line too long."`},
		{"overlong response after the challenge", "AUTHENTICATE \"PLAIN\"\r\n\"" + strings.Repeat("A", 5000) + "\"\r\n", `BYE "Command line too long."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := startFrontend(t, Options{PlaintextLogin: true}, nil)
			c, _ := greeted(t, addr)
			io.WriteString(c.conn, tt.send)
			got := c.readLine()
			if got == `""` {
				got = c.readLine()
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			c.expectClosed()
		})
	}
}

func TestTooManyBadCommands(t *testing.T) {
	addr := startFrontend(t, Options{}, nil)
	c, _ := greeted(t, addr)
	for range maxBadCommands {
		c.expect("LISTSCRIPTS", `NO "Not logged in."`)
	}
	if got := c.readLine(); got != `BYE "Too many invalid MANAGESIEVE commands."` {
		t.Fatalf("got %q, want BYE", got)
	}
	c.expectClosed()
}

func TestInactivity(t *testing.T) {
	addr := startFrontendWith(t, proxy.Frontend{Handler: New(Options{}), Timeouts: proxy.Timeouts{PreAuth: 200 * time.Millisecond}})
	c, _ := greeted(t, addr)
	if got := c.readLine(); got != `BYE "Disconnected for inactivity."` {
		t.Fatalf("got %q, want BYE", got)
	}
	c.expectClosed()
}

func TestShutdownAndRefusal(t *testing.T) {
	srv := proxy.New(proxy.Options{})
	fe := proxy.Frontend{Name: "sieve", Protocol: "managesieve", Addrs: []string{"127.0.0.1:0"}, Handler: New(Options{})}
	if err := srv.Configure([]proxy.Frontend{fe}); err != nil {
		t.Fatal(err)
	}
	c, _ := greeted(t, srv.ListenerAddr("sieve").String())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	go srv.Shutdown(ctx)
	if got := c.readLine(); got != `BYE "Server shutting down."` {
		t.Fatalf("goodbye: got %q", got)
	}
	c.expectClosed()

	if got, want := New(Options{}).Refusal("Too many connections, try again later"), "BYE (TRYLATER) \"Too many connections, try again later.\"\r\n"; got != want {
		t.Errorf("refusal: got %q, want %q", got, want)
	}
}
