package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestIsLocalResource(t *testing.T) {
	wrap := func(errno syscall.Errno) error {
		return fmt.Errorf("dial s1: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", errno)})
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "emfile", err: wrap(syscall.EMFILE), want: true},
		{name: "enfile", err: wrap(syscall.ENFILE), want: true},
		{name: "enobufs", err: wrap(syscall.ENOBUFS), want: true},
		{name: "enomem", err: wrap(syscall.ENOMEM), want: true},
		{name: "refused", err: wrap(syscall.ECONNREFUSED), want: false},
		{name: "unreachable", err: wrap(syscall.EHOSTUNREACH), want: false},
		{name: "timeout", err: context.DeadlineExceeded, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isLocalResource(tt.err); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// countingPicker hands out its targets in order and records picks and
// failures.
type countingPicker struct {
	targets []Target

	mu                    sync.Mutex
	picks                 int
	failed                []string
	established, answered int
}

type countingLease struct {
	p *countingPicker
	t Target
}

func (l countingLease) Target() Target { return l.t }
func (countingLease) User() string     { return "" }
func (l countingLease) Established() {
	l.p.mu.Lock()
	l.p.established++
	l.p.mu.Unlock()
}

func (l countingLease) Answered() {
	l.p.mu.Lock()
	l.p.answered++
	l.p.mu.Unlock()
}
func (countingLease) Release() {}
func (l countingLease) Failed(error) {
	l.p.mu.Lock()
	l.p.failed = append(l.p.failed, l.t.Server)
	l.p.mu.Unlock()
}

func (p *countingPicker) Pick(_ context.Context, req PickRequest) (Lease, error) {
	exclude := req.Exclude
	p.mu.Lock()
	defer p.mu.Unlock()
	p.picks++
	for _, t := range p.targets {
		if !slices.Contains(exclude, t.Server) {
			return countingLease{p: p, t: t}, nil
		}
	}
	return nil, errors.New("no usable server")
}

func (p *countingPicker) counts() (picks int, failed []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.picks, append([]string(nil), p.failed...)
}

// TestConnectLocalResource: a dial that fails with EMFILE is the proxy's
// problem, not the server's: no failure is counted, no other server is
// tried, and the frontend gets ErrUnavailable.
func TestConnectLocalResource(t *testing.T) {
	tests := []struct {
		name       string
		errno      syscall.Errno
		wantPicks  int
		wantFailed []string
		wantLocal  bool
	}{
		{name: "emfile", errno: syscall.EMFILE, wantPicks: 1, wantLocal: true},
		{name: "enfile", errno: syscall.ENFILE, wantPicks: 1, wantLocal: true},
		{name: "refused is the server's", errno: syscall.ECONNREFUSED, wantPicks: 3, wantFailed: []string{"s1", "s2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			saved := dialTCP
			t.Cleanup(func() { dialTCP = saved })
			dialTCP = func(context.Context, string) (net.Conn, error) {
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("socket", tt.errno)}
			}
			p := &countingPicker{targets: []Target{{Server: "s1", Address: "192.0.2.1:143"}, {Server: "s2", Address: "192.0.2.2:143"}}}
			errc := make(chan error, 1)
			_, addr := startServer(t, Frontend{Handler: HandlerFunc(func(ctx context.Context, c *Conn) error {
				_, _, err := c.Connect(ctx, p, "alice", func(context.Context, net.Conn, Target) ([]byte, error) {
					return nil, errors.New("login must not run")
				})
				errc <- err
				return err
			})})
			dialLine(t, addr)
			var err error
			select {
			case err = <-errc:
			case <-time.After(10 * time.Second):
				t.Fatal("Connect did not return")
			}
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrLocalResource) != tt.wantLocal {
				t.Errorf("got %v, want ErrUnavailable (local resource: %v)", err, tt.wantLocal)
			}
			picks, failed := p.counts()
			if picks != tt.wantPicks || strings.Join(failed, " ") != strings.Join(tt.wantFailed, " ") {
				t.Errorf("got %d picks and failures %q, want %d and %q", picks, failed, tt.wantPicks, tt.wantFailed)
			}
		})
	}
}

func TestLogLocalResourceIsRateLimited(t *testing.T) {
	saved := localResourceLog.last.Load()
	t.Cleanup(func() { localResourceLog.last.Store(saved) })
	localResourceLog.last.Store(0)
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	t0 := time.Unix(1_700_000_000, 0)
	steps := []struct {
		at   time.Duration
		want bool
	}{{0, true}, {time.Millisecond, false}, {999 * time.Millisecond, false}, {time.Second, true}, {1500 * time.Millisecond, false}, {3 * time.Second, true}}
	for _, s := range steps {
		if got := logLocalResource(log, t0.Add(s.at), syscall.EMFILE); got != s.want {
			t.Errorf("at +%v: logged %v, want %v", s.at, got, s.want)
		}
	}
	if n := strings.Count(buf.String(), "\n"); n != 3 {
		t.Errorf("got %d log lines, want 3:\n%s", n, buf.String())
	}
}

// TestConnectEstablishesOnlyAcceptedLogins: only a login the server
// accepted establishes the session (which pins the user to the server); a
// refused one (a wrong password: the client's doing) or a busy server
// only tells the director that the server answered.
func TestConnectEstablishesOnlyAcceptedLogins(t *testing.T) {
	up := listenEcho(t)
	tests := []struct {
		name                  string
		loginErr              error
		established, answered int
	}{
		{name: "accepted", loginErr: nil, established: 1},
		{name: "wrong password", loginErr: errors.New("NO [AUTHENTICATIONFAILED]"), answered: 1},
		{name: "busy", loginErr: ServerBusy(errors.New("-ERR [SYS/TEMP]")), answered: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &countingPicker{targets: []Target{{Server: "s1", Address: up}}}
			errc := make(chan error, 1)
			_, addr := startServer(t, Frontend{Retries: -1, Handler: HandlerFunc(func(ctx context.Context, c *Conn) error {
				srv, _, err := c.Connect(ctx, p, "alice", func(context.Context, net.Conn, Target) ([]byte, error) {
					return nil, tt.loginErr
				})
				if srv != nil {
					srv.Close()
				}
				errc <- err
				return err
			})})
			dialLine(t, addr)
			select {
			case <-errc:
			case <-time.After(10 * time.Second):
				t.Fatal("Connect did not return")
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.established != tt.established || p.answered != tt.answered {
				t.Errorf("got %d established, %d answered; want %d, %d", p.established, p.answered, tt.established, tt.answered)
			}
		})
	}
}

// listenEcho is a server that accepts connections and keeps them open
// until the test ends.
func listenEcho(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go acceptAndHold(ln)
	return ln.Addr().String()
}

func acceptAndHold(ln net.Listener) {
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		conns = append(conns, c)
	}
}
