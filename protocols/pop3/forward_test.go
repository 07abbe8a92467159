package pop3

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/maildirector/maildirector/protocols/internal/sasl"
	"github.com/maildirector/maildirector/proxy"
)

func TestXClientCommand(t *testing.T) {
	tests := []struct {
		name string
		c    forwarded
		want string
	}{
		{"ipv4", forwarded{Session: "k3j9x2qa-17", Remote: netip.MustParseAddrPort("198.51.100.7:50122")}, "XCLIENT ADDR=198.51.100.7 PORT=50122 SESSION=k3j9x2qa-17\r\n"},
		{"ipv6", forwarded{Session: "s-1", Remote: netip.MustParseAddrPort("[2001:db8::7%eth0]:1")}, "XCLIENT ADDR=2001:db8::7 PORT=1 SESSION=s-1\r\n"},
		{"mapped", forwarded{Session: "s-2", Remote: netip.MustParseAddrPort("[::ffff:192.0.2.1]:2")}, "XCLIENT ADDR=192.0.2.1 PORT=2 SESSION=s-2\r\n"},
		{"no address", forwarded{Session: "s-3"}, "XCLIENT SESSION=s-3\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := xclientCommand(tt.c); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestServerLoginXClient: XCLIENT goes between the greeting and AUTH; a
// refusal (Dovecot's answer outside login_trusted_networks) is the
// server's failure, and no login is sent.
func TestServerLoginXClient(t *testing.T) {
	fwd := &forwarded{Session: "abcdefgh-3", Remote: netip.MustParseAddrPort("127.0.0.7:4000")}
	for _, tt := range []struct {
		name, reply string
		wantOK      bool
	}{
		{"trusted", "+OK Updated\r\n", true},
		{"untrusted", "-ERR You are not from trusted IP\r\n", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			proxySide, serverSide := net.Pipe()
			t.Cleanup(func() { proxySide.Close(); serverSide.Close() })
			proxySide.SetDeadline(time.Now().Add(10 * time.Second))
			serverSide.SetDeadline(time.Now().Add(10 * time.Second))
			got := make(chan []string, 1)
			go func() {
				var lines []string
				defer func() { got <- lines }()
				br := bufio.NewReader(serverSide)
				io.WriteString(serverSide, "+OK [XCLIENT] ready\r\n")
				for _, answer := range []string{tt.reply, "+OK Logged in.\r\n"} {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					lines = append(lines, l)
					io.WriteString(serverSide, answer)
				}
			}()
			login := serverLogin(sasl.Credentials{Mechanism: sasl.MechPlain, User: "alice", Password: "pw"}, fwd)
			out, err := login(context.Background(), proxySide, proxy.Target{Server: "s1"})
			if tt.wantOK && (err != nil || string(out) != "+OK Logged in.\r\n") {
				t.Errorf("got %q, %v; want the login's +OK", out, err)
			}
			if !tt.wantOK && !errors.Is(err, proxy.ErrServerFailed) {
				t.Errorf("got %q, %v; want a server failure", out, err)
			}
			proxySide.Close()
			lines := <-got
			if len(lines) == 0 || lines[0] != xclientCommand(*fwd) {
				t.Errorf("first command: got %q, want %q", lines, xclientCommand(*fwd))
			}
			if tt.wantOK != (len(lines) == 2) {
				t.Errorf("commands: got %q; want AUTH after XCLIENT only when it was accepted", lines)
			}
		})
	}
}
