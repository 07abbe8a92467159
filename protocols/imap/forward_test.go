package imap

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
)

func TestIDCommand(t *testing.T) {
	tests := []struct {
		name string
		c    forwarded
		want string
	}{
		{"ipv4", forwarded{Session: "k3j9x2qa-17", Remote: netip.MustParseAddrPort("198.51.100.7:50122"), Local: netip.MustParseAddrPort("192.0.2.10:143")},
			`L0 ID ("x-session-ext-id" "k3j9x2qa-17" "x-originating-ip" "198.51.100.7" "x-originating-port" "50122" "x-connected-ip" "192.0.2.10" "x-connected-port" "143")` + "\r\n"},
		{"ipv6 with zone, mapped ipv4", forwarded{Session: "s-1", Remote: netip.MustParseAddrPort("[fe80::1%eth0]:1"), Local: netip.MustParseAddrPort("[::ffff:192.0.2.10]:993")},
			`L0 ID ("x-session-ext-id" "s-1" "x-originating-ip" "fe80::1" "x-originating-port" "1" "x-connected-ip" "192.0.2.10" "x-connected-port" "993")` + "\r\n"},
		{"no addresses", forwarded{Session: "s-2"}, `L0 ID ("x-session-ext-id" "s-2")` + "\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(idCommand(tt.c)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestReplayLoginForwardID: with a Client to forward, the ID command goes
// between the greeting and the login, its answer is not relayed, and a
// server that does not answer it OK has failed.
func TestReplayLoginForwardID(t *testing.T) {
	const greeting = "* OK [CAPABILITY IMAP4rev1] ready\r\n"
	fwd := &forwarded{Session: "abcdefgh-9", Remote: netip.MustParseAddrPort("127.0.0.7:4000"), Local: netip.MustParseAddrPort("127.0.0.1:143")}
	tests := []struct {
		name     string
		idReply  string
		wantOut  string
		wantFail bool
		wantBusy bool
	}{
		{name: "ok", idReply: "* ID (\"name\" \"Dovecot\")\r\nL0 OK ID completed.\r\n", wantOut: "a OK Logged in\r\n"},
		{name: "ok without untagged", idReply: "L0 OK\r\n", wantOut: "a OK Logged in\r\n"},
		{name: "refused", idReply: "L0 BAD no ID here\r\n", wantFail: true},
		{name: "bye", idReply: "* BYE shutting down\r\n", wantBusy: true},
		{name: "eof", idReply: "", wantFail: true},
		{name: "too many lines", idReply: strings.Repeat("* ID NIL\r\n", maxServerLines+1), wantFail: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proxySide, serverSide := net.Pipe()
			t.Cleanup(func() { proxySide.Close(); serverSide.Close() })
			proxySide.SetDeadline(time.Now().Add(10 * time.Second))
			serverSide.SetDeadline(time.Now().Add(10 * time.Second))
			lines := make(chan []string, 1)
			go func() {
				var got []string
				defer func() { lines <- got }()
				br := bufio.NewReader(serverSide)
				io.WriteString(serverSide, greeting)
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				got = append(got, l)
				if tt.idReply == "" {
					serverSide.Close()
					return
				}
				io.WriteString(serverSide, tt.idReply)
				if l, err = br.ReadString('\n'); err != nil {
					return
				}
				got = append(got, l)
				io.WriteString(serverSide, "L1 OK Logged in\r\n")
			}()
			req := loginRequest{creds: sasl.Credentials{Mechanism: sasl.MechLogin, User: "alice", Password: "pw"}, forward: fwd}
			out, err := replayLogin(context.Background(), proxySide, "a", req)
			switch {
			case tt.wantFail:
				if !errors.Is(err, proxy.ErrServerFailed) {
					t.Errorf("got %q, %v; want a server failure", out, err)
				}
			case tt.wantBusy:
				if !errors.Is(err, proxy.ErrServerBusy) {
					t.Errorf("got %q, %v; want ErrServerBusy", out, err)
				}
			default:
				if err != nil || string(out) != tt.wantOut {
					t.Errorf("got %q, %v; want %q", out, err, tt.wantOut)
				}
			}
			proxySide.Close()
			got := <-lines
			if len(got) == 0 || got[0] != string(idCommand(*fwd)) {
				t.Errorf("first command: got %q, want the ID command %q", got, idCommand(*fwd))
			}
			if tt.wantOut != "" && (len(got) < 2 || !strings.HasPrefix(got[1], "L1 LOGIN ")) {
				t.Errorf("second command: got %q, want the login", got)
			}
		})
	}
}
