package imap

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
)

func TestReplayLogin(t *testing.T) {
	const greeting = "* OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN] ready\r\n"
	tests := []struct {
		name        string
		greeting    string
		reply       string // written after the login command was read
		wantOut     string // for success
		wantRej     string // for a rejection: the reply relayed
		wantRefused bool   // errServerRefused: the client's input, not a failure
		wantFail    bool   // a server failure
		wantBusy    bool   // proxy.ErrServerBusy: next server, no failure counted
	}{
		{name: "ok with pipelined data", greeting: greeting,
			reply:   "* CAPABILITY IMAP4rev1\r\nL1 OK Logged in\r\n* 3 EXISTS\r\n",
			wantOut: "* CAPABILITY IMAP4rev1\r\na OK Logged in\r\n* 3 EXISTS\r\n"},
		{name: "no", greeting: greeting, reply: "L1 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
			wantRej: "a NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"},
		{name: "bad with untagged", greeting: greeting, reply: "* OK hm\r\nL1 BAD what\r\n", wantRej: "* OK hm\r\na BAD what\r\n"},
		{name: "untagged bad", greeting: greeting, reply: "* BAD Error in IMAP command received by server.\r\n", wantRefused: true},
		{name: "bye after the login", greeting: greeting, reply: "* BYE Input buffer full, aborting\r\n", wantBusy: true},
		{name: "shutting down", greeting: greeting, reply: "* BYE Server shutting down.\r\n", wantBusy: true},
		{name: "client tag is garbage", greeting: greeting, reply: "a OK\r\n", wantFail: true},
		{name: "other tag is garbage", greeting: greeting, reply: "b OK\r\n", wantFail: true},
		{name: "unknown status", greeting: greeting, reply: "L1 MAYBE\r\n", wantFail: true},
		{name: "eof before answer", greeting: greeting, reply: "", wantFail: true},
		{name: "unexpected continuation", greeting: "* OK [CAPABILITY IMAP4rev1] x\r\n", reply: "+ go on\r\n", wantFail: true},
		{name: "bye greeting", greeting: "* BYE busy\r\n", wantFail: true},
		{name: "preauth greeting", greeting: "* PREAUTH hi\r\n", wantFail: true},
		{name: "garbage greeting", greeting: "220 smtp.example.org ESMTP\r\n", wantFail: true},
		{name: "greeting without capabilities", greeting: "* OK hi\r\n", reply: "L1 OK\r\n", wantOut: "a OK\r\n"},
		{name: "too many untagged lines", greeting: greeting,
			reply: strings.Repeat("* OK x\r\n", maxServerLines) + "L1 OK\r\n", wantFail: true},
		{name: "just enough untagged lines", greeting: greeting,
			reply:   strings.Repeat("* OK x\r\n", maxServerLines-1) + "L1 OK\r\n",
			wantOut: strings.Repeat("* OK x\r\n", maxServerLines-1) + "a OK\r\n"},
		{name: "too many untagged bytes", greeting: greeting,
			reply: strings.Repeat("* OK "+strings.Repeat("x", 8000)+"\r\n", 9) + "L1 OK\r\n", wantFail: true},
		{name: "huge greeting", greeting: "* OK " + strings.Repeat("x", maxLoginReplyBytes) + "\r\n", wantFail: true},
	}
	req := loginRequest{creds: sasl.Credentials{Mechanism: sasl.MechLogin, User: "alice", Password: "pw"}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxySide, serverSide := net.Pipe()
			t.Cleanup(func() { proxySide.Close(); serverSide.Close() })
			proxySide.SetDeadline(time.Now().Add(10 * time.Second))
			got := make(chan string, 1)
			go playServer(serverSide, tt.greeting, tt.reply, got)
			out, err := replayLogin(context.Background(), proxySide, "a", req)
			var rej *rejectedError
			switch {
			case tt.wantFail:
				if !errors.Is(err, proxy.ErrServerFailed) {
					t.Errorf("got %q, %v; want a server failure", out, err)
				}
			case tt.wantBusy:
				if !errors.Is(err, proxy.ErrServerBusy) || errors.Is(err, proxy.ErrServerFailed) {
					t.Errorf("got %q, %v; want ErrServerBusy and no server failure", out, err)
				}
			case tt.wantRefused:
				if !errors.Is(err, errServerRefused) || errors.Is(err, proxy.ErrServerFailed) {
					t.Errorf("got %q, %v; want errServerRefused and no server failure", out, err)
				}
			case tt.wantRej != "":
				if !errors.As(err, &rej) || string(rej.reply) != tt.wantRej {
					t.Errorf("got %v, want rejection %q", err, tt.wantRej)
				}
			default:
				if err != nil || string(out) != tt.wantOut {
					t.Errorf("got %q, %v; want %q", out, err, tt.wantOut)
				}
			}
			proxySide.Close()
			if cmd := <-got; cmd != "" && !strings.HasPrefix(cmd, serverTag+" ") {
				t.Errorf("server got %q, want it tagged %q", cmd, serverTag)
			}
		})
	}
}

// TestReplayLoginUsesOwnTag: whatever tag the client chose (RFC 9051
// allows "]" and any length; Dovecot does not), the server sees ours and
// the client gets its own back.
func TestReplayLoginUsesOwnTag(t *testing.T) {
	req := loginRequest{creds: sasl.Credentials{Mechanism: sasl.MechLogin, User: "alice", Password: "pw"}}
	for _, tag := range []string{"a]b", strings.Repeat("t", 200), strings.Repeat("u", 5000)} {
		t.Run(tag[:3], func(t *testing.T) {
			proxySide, serverSide := net.Pipe()
			t.Cleanup(func() { proxySide.Close(); serverSide.Close() })
			proxySide.SetDeadline(time.Now().Add(10 * time.Second))
			got := make(chan string, 1)
			go playServer(serverSide, "* OK [CAPABILITY IMAP4rev1] hi\r\n", serverTag+" NO [AUTHENTICATIONFAILED] no\r\n", got)
			_, err := replayLogin(context.Background(), proxySide, tag, req)
			var rej *rejectedError
			if !errors.As(err, &rej) || string(rej.reply) != tag+" NO [AUTHENTICATIONFAILED] no\r\n" {
				t.Errorf("got %v, want the server's NO under the client's tag", err)
			}
			if cmd := <-got; cmd != serverTag+` LOGIN "alice" "pw"`+"\r\n" {
				t.Errorf("server got %q, want the login under %q", cmd, serverTag)
			}
		})
	}
}

// playServer greets, reads one command line (sent on got, "" if none),
// replies and hangs up. It exits when its conn is closed.
func playServer(c net.Conn, greeting, reply string, got chan<- string) {
	defer c.Close()
	cmd := ""
	defer func() { got <- cmd }()
	if _, err := io.WriteString(c, greeting); err != nil {
		return
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	cmd = line
	io.WriteString(c, reply)
}

func TestReplayLoginCanceled(t *testing.T) {
	proxySide, serverSide := net.Pipe()
	t.Cleanup(func() { proxySide.Close(); serverSide.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // shutdown before the server said anything: the read must not wait
	req := loginRequest{creds: sasl.Credentials{Mechanism: sasl.MechLogin, User: "alice", Password: "pw"}}
	if _, err := replayLogin(ctx, proxySide, "a", req); !errors.Is(err, proxy.ErrServerFailed) {
		t.Errorf("got %v, want a server failure", err)
	}
}

func TestLoginCommand(t *testing.T) {
	plainCreds := sasl.Credentials{Mechanism: sasl.MechPlain, User: "alice", Password: "pw"}
	tests := []struct {
		name       string
		req        loginRequest
		caps       string
		wantParts  []string
		wantIsAuth bool
	}{
		{name: "sasl-ir", req: loginRequest{creds: plainCreds}, caps: "SASL-IR AUTH=PLAIN",
			wantParts: []string{"t AUTHENTICATE PLAIN " + sasl.EncodePlain("", "alice", "pw") + "\r\n"}, wantIsAuth: true},
		{name: "login quoted", req: loginRequest{creds: plainCreds}, caps: "",
			wantParts: []string{`t LOGIN "alice" "pw"` + "\r\n"}},
		{name: "login escapes", req: loginRequest{creds: sasl.Credentials{Mechanism: sasl.MechLogin, User: `a"b`, Password: `c\d`}},
			wantParts: []string{`t LOGIN "a\"b" "c\\d"` + "\r\n"}},
		{name: "login synchronising literals", req: loginRequest{creds: sasl.Credentials{Mechanism: sasl.MechLogin, User: "ü", Password: "p\xff"}},
			wantParts: []string{"t LOGIN {2}\r\n", "ü {2}\r\n", "p\xff\r\n"}},
		{name: "login literal+", caps: "LITERAL+", req: loginRequest{creds: sasl.Credentials{Mechanism: sasl.MechLogin, User: "ü", Password: "pw"}},
			wantParts: []string{"t LOGIN {2+}\r\nü \"pw\"\r\n"}},
		{name: "authzid needs AUTHENTICATE", caps: "",
			req:       loginRequest{creds: sasl.Credentials{Mechanism: sasl.MechPlain, Authzid: "bob", User: "alice", Password: "pw"}},
			wantParts: []string{"t AUTHENTICATE PLAIN\r\n", sasl.EncodePlain("bob", "alice", "pw") + "\r\n"}, wantIsAuth: true},
		{name: "logindisabled", caps: "LOGINDISABLED AUTH=PLAIN", req: loginRequest{creds: plainCreds},
			wantParts: []string{"t AUTHENTICATE PLAIN\r\n", sasl.EncodePlain("", "alice", "pw") + "\r\n"}, wantIsAuth: true},
		{name: "oauth replayed as sent", caps: "SASL-IR",
			req:       loginRequest{creds: sasl.Credentials{Mechanism: sasl.MechOAuthBearer, User: "alice", Token: "t"}, response: "b2F1dGg="},
			wantParts: []string{"t AUTHENTICATE OAUTHBEARER b2F1dGg=\r\n"}, wantIsAuth: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			caps, err := parseGreeting("* OK [CAPABILITY IMAP4rev1 " + tt.caps + "] hi\r\n")
			if err != nil {
				t.Fatal(err)
			}
			parts, isAuth := loginCommand("t", tt.req, caps)
			var got []string
			for _, p := range parts {
				got = append(got, string(p))
			}
			if len(got) != len(tt.wantParts) || isAuth != tt.wantIsAuth {
				t.Fatalf("got %q (auth %v), want %q (auth %v)", got, isAuth, tt.wantParts, tt.wantIsAuth)
			}
			for i := range got {
				if got[i] != tt.wantParts[i] {
					t.Errorf("part %d: got %q, want %q", i, got[i], tt.wantParts[i])
				}
			}
		})
	}
}
