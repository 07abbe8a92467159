package integration

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

// correlationClient is the source address of the test's clients: not
// 127.0.0.1, maildirector's own source address toward Dovecot, so that
// Dovecot's rip says which one it took.
const correlationClient = "127.0.0.7"

// ctlSessionDetail is "show session ID --json".
type ctlSessionDetail struct {
	ID        uint64    `json:"id"`
	SessionID string    `json:"session"`
	Since     time.Time `json:"since"`
	Frontend  string    `json:"frontend"`
	Protocol  string    `json:"protocol"`
	Backend   string    `json:"backend"`
	Remote    string    `json:"remote"`
	User      string    `json:"user"`
	Server    string    `json:"server"`
	TLS       bool      `json:"tls"`
	BytesIn   int64     `json:"bytes_in"`
	BytesOut  int64     `json:"bytes_out"`
}

// TestE2ESessionCorrelation: with forward = "id" an IMAP and a POP3
// session reach Dovecot's plain listeners without a PROXY header, and
// Dovecot's login line (login_trusted_networks = 127.0.0.1, maildirector's
// address) shows session=<maildirector's session id of that connection>
// and rip/rport of the real client (127.0.0.7, not maildirector); `ctl show
// session ID` finds the live session by that id. With forward = "proxy"
// (the default) the identity is as before: the PROXY header's rip and
// rport, and Dovecot's own session id.
func TestE2ESessionCorrelation(t *testing.T) {
	for _, forward := range []string{"id", "proxy"} {
		t.Run(forward, func(t *testing.T) {
			spec := setupSpec{
				Frontends: []frontendSpec{
					{Name: "imap", Protocol: "imap", Plaintext: "allow", Extra: `forward = "` + forward + `"`},
					{Name: "pop3", Protocol: "pop3", Plaintext: "allow", Extra: `forward = "` + forward + `"`},
				},
			}
			if forward == "id" {
				spec.ForwardID = true
				// disable_plaintext_auth = yes: the plaintext logins below
				// work because Dovecot counts trusted networks as secured.
				spec.Lab = dovecotlab.Options{LoginTrustedNetworks: "127.0.0.1/32", DisablePlaintextAuth: true}
			}
			e := startCtlEnv(t, spec)
			for _, tt := range []struct {
				proto, user string
				login       func(c net.Conn, user string) (logout func())
			}{
				{"imap", "user081", func(c net.Conn, user string) func() {
					r := newRawIMAP(t, c)
					r.line()
					r.login(user)
					return func() { r.send("Z LOGOUT\r\n"); waitServerClose(t, c) }
				}},
				{"pop3", "user082", func(c net.Conn, user string) func() {
					p := pop3Greet(t, c)
					p.login(user)
					return func() { p.send("QUIT\r\n"); waitServerClose(t, c) }
				}},
			} {
				t.Run(tt.proto, func(t *testing.T) {
					c := dialFrom(t, net.ParseIP(correlationClient), e.addrs[tt.proto])
					client := c.LocalAddr().(*net.TCPAddr)
					logout := tt.login(c, tt.user)

					// The live session, found by its session id.
					ss := e.ctlSessions(tt.user)
					if len(ss) != 1 {
						t.Fatalf("show sessions %s: got %d sessions, want 1", tt.user, len(ss))
					}
					id := ss[0].SessionID
					var d ctlSessionDetail
					e.ctlJSON(&d, "show", "session", id)
					if d.SessionID != id || d.ID != ss[0].ID || d.Frontend != tt.proto || d.Protocol != tt.proto ||
						d.Backend != "dovecot" || d.Remote != client.String() || d.User != tt.user || d.Server == "" ||
						d.TLS || d.BytesIn <= 0 || d.BytesOut <= 0 || time.Since(d.Since) < 0 || time.Since(d.Since) > time.Minute {
						t.Errorf("show session %s: got %+v, want frontend/protocol %s, backend dovecot, client %s, user %s, a server, no TLS, bytes both ways, since within the last minute",
							id, d, tt.proto, client, tt.user)
					}
					human := e.ctl("show", "session", id)
					for _, want := range []string{"session:", id, "client:", client.String(), "user:", tt.user, "backend:", "dovecot", "server:", d.Server, "since:", "bytes in:", "bytes out:", "tls:"} {
						if !strings.Contains(human, want) {
							t.Errorf("show session %s: %q missing in\n%s", id, want, human)
						}
					}
					if got := e.ctl("show", "session", strconv.FormatUint(d.ID, 10)); got != human && !strings.Contains(got, id) {
						t.Errorf("show session %d (the conn number): got\n%s\nwant the same session", d.ID, got)
					}
					logout()

					_, login := e.landedOnce(t, tt.user)
					if login.RemoteIP != correlationClient || login.RemotePort != client.Port {
						t.Errorf("Dovecot's login line: rip=%s rport=%d, want the client %s", login.RemoteIP, login.RemotePort, client)
					}
					kv := waitSession(t, e, tt.user, func(kv map[string]string) bool { return kv["user"] == tt.user })
					if kv["session"] != id {
						t.Errorf("maildirector's session line: session=%q, want %q (what ctl showed)", kv["session"], id)
					}
					switch forward {
					case "id":
						if !strings.HasPrefix(login.Session, id) {
							t.Errorf("Dovecot's login line: session=<%s>, want it to begin with maildirector's session id %s", login.Session, id)
						}
					case "proxy":
						if strings.HasPrefix(login.Session, id) {
							t.Errorf("Dovecot's login line: session=<%s>: with forward = \"proxy\" Dovecot makes its own", login.Session)
						}
					}
				})
			}
			if forward == "id" {
				if out := e.ctlFails("show", "session", "nosuch-1"); !strings.Contains(out, "no live session") {
					t.Errorf("show session nosuch-1: got %q, want \"no live session\"", out)
				}
			}
		})
	}
}
