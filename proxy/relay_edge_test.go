package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/maildirector/maildirector/tlsutil"
)

// Edge cases of the relay: half-closes, resets, and ends that race the
// bytes. Deadlines on the test's own sockets only turn a hang into a
// failure; no test asserts how long anything takes.

// hangGuard bounds every blocking step of these tests.
const hangGuard = 20 * time.Second

// relayLeg names the client leg of a relayed session: plain TCP (both legs
// plain: the detached splice path) or TLS on the client leg only (the
// buffered pump path).
type relayLeg struct {
	name   string
	tls    bool
	splice bool // the frontend's Splice
}

// relayLegs: both plain relays (bulk by read and write, the default, and
// by splice) and a TLS one. Tests that take relayLegs[0] get the default.
var relayLegs = []relayLeg{{name: "plain"}, {name: "plain (splice)", splice: true}, {name: "tls client leg", tls: true}}

// backend listens on loopback and hands every connection it accepts to the test.
func backend(t *testing.T) (string, <-chan *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan *net.TCPConn, 64)
	t.Cleanup(func() {
		ln.Close()
		for {
			select {
			case c := <-conns:
				c.Close()
			default:
				return
			}
		}
	})
	go acceptInto(ln, conns)
	return ln.Addr().String(), conns
}

func acceptInto(ln net.Listener, conns chan<- *net.TCPConn) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.SetDeadline(time.Now().Add(hangGuard))
		conns <- c.(*net.TCPConn)
	}
}

// nextBackend returns the backend's next accepted connection.
func nextBackend(t *testing.T, conns <-chan *net.TCPConn) *net.TCPConn {
	t.Helper()
	select {
	case c := <-conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(hangGuard):
		t.Fatal("backend: no connection")
		return nil
	}
}

// sessionLog records the end reason of every session log line.
type sessionLog struct {
	mu   sync.Mutex
	ends []string
}

func (h *sessionLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *sessionLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *sessionLog) WithGroup(string) slog.Handler            { return h }
func (h *sessionLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "session" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "end" {
			h.mu.Lock()
			h.ends = append(h.ends, a.Value.String())
			h.mu.Unlock()
		}
		return true
	})
	return nil
}

// waitEnds waits (bounded) for a session log line, then returns them all:
// a session leaves Sessions just before its line is written.
func (h *sessionLog) waitEnds(t *testing.T) []string {
	t.Helper()
	waitFor(t, func() bool { return len(h.endReasons()) > 0 })
	return h.endReasons()
}

func (h *sessionLog) endReasons() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ends...)
}

// relayServer runs a relaying frontend toward backendAddr (no PROXY header)
// and returns the Server, its address and its session log. The test may
// Close the Server itself; Cleanup closes it again, which is harmless.
func relayServer(t *testing.T, backendAddr string, leg relayLeg) (*Server, string, *sessionLog) {
	t.Helper()
	log := &sessionLog{}
	s := New(Options{Logger: slog.New(log)})
	fe := Frontend{
		Name:    "edge",
		Addrs:   []string{"127.0.0.1:0"},
		Handler: relayHandler(fixedPicker{Target{Server: "b", Address: backendAddr, Proxy: ProxyNone}}),
		Splice:  leg.splice,
	}
	if leg.tls {
		fe.TLS, fe.ImplicitTLS = testServerTLS(t), true
	}
	if err := s.Configure([]Frontend{fe}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, s.ListenerAddr(fe.Name).String(), log
}

func testServerTLS(t *testing.T) *tls.Config {
	t.Helper()
	certPEM, keyPEM, err := tlsutil.SelfSigned("localhost")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}
}

// halfCloser is a client conn that can shut its sending side:
// *net.TCPConn, or *tls.Conn (close_notify, then TCP shutdown).
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// loggedIn dials the relaying frontend, logs in as user and returns the
// client once the relay has it (after the "ok" the handler's login sends).
func loggedIn(t *testing.T, addr string, leg relayLeg, user string) (halfCloser, *bufio.Reader) {
	t.Helper()
	var c halfCloser
	if leg.tls {
		tc, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		c = tc
	} else {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c = nc.(*net.TCPConn)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(hangGuard))
	if _, err := io.WriteString(c, user+"\n"); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	if l, err := r.ReadString('\n'); l != "ok\n" {
		t.Fatalf("login: got %q, %v; want ok", l, err)
	}
	return c, r
}

// readLine reads one line from r, failing the test on error.
func readLine(t *testing.T, who string, r *bufio.Reader) string {
	t.Helper()
	l, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("%s: read: got %q, %v", who, l, err)
	}
	return l
}

// wantEOF reads r to its end and fails unless it ends with a clean EOF and
// no more bytes.
func wantEOF(t *testing.T, who string, r io.Reader) {
	t.Helper()
	rest, err := io.ReadAll(r)
	if err != nil || len(rest) != 0 {
		t.Fatalf("%s: got %q, %v; want a clean EOF", who, rest, err)
	}
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// wantFDsBack fails unless the process's descriptors come back to base
// (other tests' connections may still be closing, so it polls, bounded).
func wantFDsBack(t *testing.T, base int) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if openFDs(t) <= base {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("open descriptors: got %d, want at most %d (a leak)", openFDs(t), base)
}

func TestRelayHalfClose(t *testing.T) {
	for _, leg := range relayLegs {
		t.Run(leg.name+"/client closes first", func(t *testing.T) {
			baddr, conns := backend(t)
			srv, addr, log := relayServer(t, baddr, leg)
			c, cr := loggedIn(t, addr, leg, "alice")
			b := nextBackend(t, conns)
			br := bufio.NewReader(b)

			// A round trip first, through both legs.
			io.WriteString(c, "ping\n")
			if l := readLine(t, "server", br); l != "ping\n" {
				t.Fatalf("server: got %q, want ping", l)
			}
			io.WriteString(b, "pong\n")
			if l := readLine(t, "client", cr); l != "pong\n" {
				t.Fatalf("client: got %q, want pong", l)
			}

			if err := c.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			wantEOF(t, "server after the client's half-close", br)
			// The other direction still works.
			if _, err := io.WriteString(b, "after\n"); err != nil {
				t.Fatalf("server write after the client's half-close: %v", err)
			}
			if l := readLine(t, "client", cr); l != "after\n" {
				t.Fatalf("client after its half-close: got %q, want after", l)
			}
			b.CloseWrite()
			wantEOF(t, "client after both half-closes", cr)
			waitFor(t, func() bool { return len(srv.Sessions()) == 0 })
			if got := log.waitEnds(t); len(got) != 1 || got[0] != EndClientClosed {
				t.Errorf("session log: got end %q, want one %q (the client closed first)", got, EndClientClosed)
			}
		})
		t.Run(leg.name+"/server closes first", func(t *testing.T) {
			baddr, conns := backend(t)
			srv, addr, log := relayServer(t, baddr, leg)
			c, cr := loggedIn(t, addr, leg, "bob")
			b := nextBackend(t, conns)
			br := bufio.NewReader(b)

			io.WriteString(b, "hello\n")
			if l := readLine(t, "client", cr); l != "hello\n" {
				t.Fatalf("client: got %q, want hello", l)
			}
			if err := b.CloseWrite(); err != nil {
				t.Fatal(err)
			}
			wantEOF(t, "client after the server's half-close", cr)
			if _, err := io.WriteString(c, "after\n"); err != nil {
				t.Fatalf("client write after the server's half-close: %v", err)
			}
			if l := readLine(t, "server", br); l != "after\n" {
				t.Fatalf("server after its half-close: got %q, want after", l)
			}
			if n := len(srv.Sessions()); n != 1 {
				t.Errorf("live sessions while the client still sends: got %d, want 1", n)
			}
			c.CloseWrite()
			wantEOF(t, "server after both half-closes", br)
			waitFor(t, func() bool { return len(srv.Sessions()) == 0 })
			if got := log.waitEnds(t); len(got) != 1 || got[0] != EndServerClosed {
				t.Errorf("session log: got end %q, want one %q (the server closed first)", got, EndServerClosed)
			}
		})
	}
}

// TestRelayServerClosesClientFollows: the server closes (as after LOGOUT)
// and the client closes the moment it sees the EOF: the session still
// ended because the server closed, however fast the client answers.
func TestRelayServerClosesClientFollows(t *testing.T) {
	const rounds = 30
	for _, leg := range relayLegs {
		t.Run(leg.name, func(t *testing.T) {
			baddr, conns := backend(t)
			srv, addr, log := relayServer(t, baddr, leg)
			for i := range rounds {
				c, cr := loggedIn(t, addr, leg, "bob")
				b := nextBackend(t, conns)
				io.WriteString(b, "* BYE\r\nZ OK LOGOUT\r\n")
				b.Close()
				io.Copy(io.Discard, cr)
				c.Close()
				waitFor(t, func() bool { return len(log.endReasons()) == i+1 })
				if got := log.endReasons()[i]; got != EndServerClosed {
					t.Fatalf("round %d: end: got %q, want %q", i, got, EndServerClosed)
				}
			}
			waitFor(t, func() bool { return len(srv.Sessions()) == 0 })
		})
	}
}

// stream writes chunks to w until a write fails or max chunks went out,
// then closes done.
func stream(w io.Writer, max int, done chan<- struct{}) {
	defer close(done)
	chunk := []byte(strings.Repeat("x", 32<<10))
	for i := 0; i < max; i++ {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// echo writes back what it reads from c until either fails, then closes
// done. It copies through a buffer: io.Copy would splice through a pipe of
// the runtime's own, which outlives the test and reads as a leak.
func echo(c net.Conn, done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// streamChunks bounds a stream: far more than any test waits for.
const streamChunks = 1 << 14 // 512 MiB

func TestRelayPeerResetMidTransfer(t *testing.T) {
	for _, leg := range relayLegs {
		t.Run(leg.name, func(t *testing.T) {
			baddr, conns := backend(t)
			base := openFDs(t)
			srv, addr, log := relayServer(t, baddr, leg)
			c, cr := loggedIn(t, addr, leg, "carol")
			b := nextBackend(t, conns)

			wrote := make(chan struct{})
			go stream(c, streamChunks, wrote)
			// Bytes are flowing: the server resets the connection with
			// data still in flight (SO_LINGER 0 sends RST on close).
			if _, err := io.ReadFull(b, make([]byte, 1<<20)); err != nil {
				t.Fatalf("server: %v", err)
			}
			b.SetLinger(0)
			b.Close()

			io.Copy(io.Discard, cr) // ends with EOF or a reset: either is clean
			<-wrote
			waitFor(t, func() bool { return len(srv.Sessions()) == 0 })
			if got := log.waitEnds(t); len(got) != 1 || got[0] != EndServerClosed {
				t.Errorf("session log: got end %q, want one %q (the server reset)", got, EndServerClosed)
			}
			c.Close()
			srv.Close()
			wantFDsBack(t, base)
		})
	}
}

func TestRelayKickDuringTransfer(t *testing.T) {
	for _, leg := range relayLegs {
		t.Run(leg.name, func(t *testing.T) {
			baddr, conns := backend(t)
			base := openFDs(t)
			srv, addr, log := relayServer(t, baddr, leg)
			c, cr := loggedIn(t, addr, leg, "dave")
			b := nextBackend(t, conns)

			// Both directions busy: the server echoes what the client streams.
			wrote, echoed := make(chan struct{}), make(chan struct{})
			go stream(c, streamChunks, wrote)
			go echo(b, echoed)
			if _, err := io.ReadFull(cr, make([]byte, 4<<20)); err != nil {
				t.Fatalf("client: %v", err)
			}
			if n := srv.Kick(func(i Info) bool { return i.User == "dave" }, "kicked"); n != 1 {
				t.Fatalf("Kick: got %d sessions, want 1", n)
			}
			io.Copy(io.Discard, cr)
			<-wrote
			<-echoed
			waitFor(t, func() bool { return len(srv.Sessions()) == 0 })
			if got := log.waitEnds(t); len(got) != 1 || got[0] != "kicked" {
				t.Errorf("session log: got end %q, want one kicked", got)
			}
			c.Close()
			b.Close()
			srv.Close()
			wantFDsBack(t, base)
		})
	}
}

// TestRelayEndRacesData ends sessions (Kick, or Server.Close) at the moment
// bytes arrive from both sides, at every stage of a session's life from
// login to relay, a bounded number of times.
func TestRelayEndRacesData(t *testing.T) {
	const rounds = 40
	for _, leg := range relayLegs {
		t.Run(leg.name, func(t *testing.T) {
			baddr, conns := backend(t)
			base := openFDs(t)
			for i := 0; i < rounds; i++ {
				useClose := i%2 == 1
				srv, addr, log := relayServer(t, baddr, leg)
				c, cr := loggedIn(t, addr, leg, "erin")
				b := nextBackend(t, conns)

				start := make(chan struct{})
				var wg sync.WaitGroup
				wg.Add(2)
				go burst(&wg, start, c)
				go burst(&wg, start, b)
				close(start)
				want := "shutdown"
				if useClose {
					srv.Close()
				} else {
					want = "kicked"
					if n := srv.Kick(func(Info) bool { return true }, want); n != 1 {
						t.Fatalf("round %d: Kick: got %d sessions, want 1", i, n)
					}
				}
				io.Copy(io.Discard, cr)
				io.Copy(io.Discard, b)
				wg.Wait()
				waitFor(t, func() bool { return len(srv.Sessions()) == 0 })
				if got := log.waitEnds(t); len(got) != 1 || got[0] != want {
					t.Fatalf("round %d: session log: got end %q, want one %s", i, got, want)
				}
				c.Close()
				b.Close()
				srv.Close()
			}
			wantFDsBack(t, base)
		})
	}
}

// burst writes a few chunks to w once start is closed; errors are expected
// (the engine is ending the session).
func burst(wg *sync.WaitGroup, start <-chan struct{}, w io.Writer) {
	defer wg.Done()
	<-start
	chunk := []byte(strings.Repeat("y", 16<<10))
	for i := 0; i < 8; i++ {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// TestRelayRefusedHandOffClosesServer: a session the engine ends between
// login and handoff is not relayed, and Relay closes the server leg it was
// given (it takes it whatever happens).
func TestRelayRefusedHandOffClosesServer(t *testing.T) {
	baddr, conns := backend(t)
	loggedInCh, kicked := make(chan struct{}), make(chan struct{})
	relayErr := make(chan error, 1)
	p := fixedPicker{Target{Server: "b", Address: baddr, Proxy: ProxyNone}}
	srv, addr := startServer(t, Frontend{Handler: HandlerFunc(func(ctx context.Context, c *Conn) error {
		line, err := c.Reader().ReadString('\n')
		if err != nil {
			return err
		}
		c.SetUser(strings.TrimSpace(line))
		server, from, err := c.Connect(ctx, p, c.Info().User, func(context.Context, net.Conn, Target) ([]byte, error) {
			return nil, nil
		})
		if err != nil {
			return err
		}
		close(loggedInCh)
		<-kicked
		err = c.Relay(server, from)
		relayErr <- err
		return err // and server is not closed here: Relay owns it
	})})
	c, r := dialLine(t, addr)
	io.WriteString(c, "frank\n")
	b := nextBackend(t, conns)
	<-loggedInCh
	if n := srv.Kick(func(i Info) bool { return i.User == "frank" }, "kicked"); n != 1 {
		t.Fatalf("Kick: got %d sessions, want 1", n)
	}
	close(kicked)
	if err := <-relayErr; err == nil || !strings.Contains(err.Error(), "ending") {
		t.Errorf("Relay of a session being ended: got %v, want an error that it is ending", err)
	}
	wantEOF(t, "server leg after a refused handoff", b)
	if _, err := io.ReadAll(r); err != nil && !errors.Is(err, io.EOF) {
		t.Errorf("client: %v", err)
	}
	waitFor(t, func() bool { return len(srv.Sessions()) == 0 })
}

// TestRelayCopiesSmallSplicesBulk: a command's worth of bytes crosses a
// plain relay by read and write, with no pipe taken from the pool; a
// transfer that fills the pump's buffer moves on by splice(2) when the
// frontend says Splice, by read and write when it does not; both arrive
// byte for byte.
func TestRelayCopiesSmallSplicesBulk(t *testing.T) {
	for _, leg := range relayLegs[:2] {
		t.Run(leg.name, func(t *testing.T) {
			baddr, conns := backend(t)
			srv, addr, _ := relayServer(t, baddr, leg)
			c, cr := loggedIn(t, addr, leg, "alice")
			b := nextBackend(t, conns)
			br := bufio.NewReader(b)
			for i := range 20 {
				io.WriteString(c, fmt.Sprintf("a%d NOOP\n", i))
				if l := readLine(t, "server", br); l != fmt.Sprintf("a%d NOOP\n", i) {
					t.Fatalf("server: got %q", l)
				}
				io.WriteString(b, fmt.Sprintf("a%d OK done\n", i))
				if l := readLine(t, "client", cr); l != fmt.Sprintf("a%d OK done\n", i) {
					t.Fatalf("client: got %q", l)
				}
			}
			if n := srv.relay.pipes.borrowed.Load(); n != 0 {
				t.Errorf("pipes borrowed for 40 short lines: got %d, want 0 (read and write)", n)
			}

			big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
			done := make(chan error, 1)
			go func() {
				_, err := b.Write(big)
				done <- err
			}()
			got := make([]byte, len(big))
			if _, err := io.ReadFull(cr, got); err != nil {
				t.Fatalf("client: read 1 MiB: %v", err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, big) {
				t.Fatal("client: the 1 MiB arrived changed")
			}
			n := srv.relay.pipes.borrowed.Load()
			if leg.splice && n == 0 {
				t.Error("pipes borrowed for 1 MiB with Splice: got 0, want the bulk to move by splice")
			}
			if !leg.splice && n != 0 {
				t.Errorf("pipes borrowed for 1 MiB without Splice: got %d, want 0 (read and write)", n)
			}
		})
	}
}
