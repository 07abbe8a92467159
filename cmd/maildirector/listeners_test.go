package main

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/maildirector/maildirector/proxy"
)

// socketPair returns the two ends of a unix stream connection.
func socketPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.DialUnix("unix", nil, ln.Addr().(*net.UnixAddr))
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	a.SetDeadline(time.Now().Add(10 * time.Second))
	b.SetDeadline(time.Now().Add(10 * time.Second))
	return a, b
}

// TestListenersHandOver: the sockets sent over a unix connection arrive as
// listeners on the same addresses, sharing the sender's sockets (a client
// of the sender's address is accepted by the receiver), and an inherited
// pool gives them to the configuration by address; what follows the
// answer on the connection is kept.
func TestListenersHandOver(t *testing.T) {
	var lns []net.Listener
	for range 2 {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		lns = append(lns, ln)
	}
	ctl, err := net.Listen("unix", filepath.Join(t.TempDir(), "ctl.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	lns = append(lns, ctl)

	send, recv := socketPair(t)
	go func() {
		sendListeners(send, lns)
		send.Write([]byte("OK\n\n")) // the next answer on the connection
	}()
	got, rest, err := receiveListeners(recv)
	if err != nil {
		t.Fatalf("receiveListeners: %v", err)
	}
	if len(got) != len(lns) {
		t.Fatalf("got %d listeners, want %d", len(got), len(lns))
	}
	for i, ln := range got {
		defer ln.Close()
		if listenKey(ln.Addr()) != listenKey(lns[i].Addr()) {
			t.Errorf("listener %d: got %s, want %s", i, listenKey(ln.Addr()), listenKey(lns[i].Addr()))
		}
	}
	if string(rest) != "" && !strings.HasPrefix("OK\n\n", string(rest)) {
		t.Errorf("after the answer: got %q, want the start of the next one", rest)
	}

	in := &inherited{}
	in.add(got)
	addr := lns[0].Addr().String()
	taken, err := in.listen("tcp4", addr)
	if err != nil || taken != proxy.NoKeepAlive(got[0]) {
		t.Fatalf("listen %s: got %v, %v; want the inherited socket (keepalive off)", addr, taken, err)
	}
	lns[0].Close() // the sender lets go: the socket lives on in the receiver
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial the handed-over address: %v", err)
	}
	defer c.Close()
	taken.(interface{ SetDeadline(time.Time) error }).SetDeadline(time.Now().Add(10 * time.Second))
	if a, err := taken.Accept(); err != nil {
		t.Errorf("accept on the handed-over socket: %v", err)
	} else {
		a.Close()
	}
	if ln := in.take("unix " + ctl.Addr().String()); ln == nil {
		t.Errorf("the control socket is not in the pool by its path")
	}
	in.closeUnused(slog.New(slog.DiscardHandler))
	if _, err := net.Dial("tcp", lns[1].Addr().String()); err != nil {
		t.Errorf("closing the unused copy closed the sender's socket too: %v", err)
	}
}

// TestReceiveListenersRefusesMismatches: an answer whose count, lines and
// descriptors disagree is refused, and nothing received stays open.
func TestReceiveListenersRefusesMismatches(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tt := range []struct {
		name, answer string
		fds          int
		want         string
	}{
		{"error", "error: not here\n\n", 0, "not here"},
		{"fewer sockets", "listeners 2\ntcp 127.0.0.1:1\ntcp 127.0.0.1:2\n\n", 1, "2 sockets announced, 1 received"},
		{"wrong address", "listeners 1\ntcp 127.0.0.1:1\n\n", 1, "is tcp " + ln.Addr().String()},
		{"count and lines", "listeners 3\ntcp 127.0.0.1:1\n\n", 1, "answer to _listeners"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			send, recv := socketPair(t)
			before := openFDs(t)
			go func() {
				if tt.fds == 0 {
					send.Write([]byte(tt.answer))
					return
				}
				first, rest, _ := strings.Cut(tt.answer, "\n")
				send.Write([]byte(first + "\n"))
				raw, _ := ln.(*net.TCPListener).SyscallConn()
				raw.Control(func(fd uintptr) {
					send.WriteMsgUnix([]byte(rest), rightsOf(int(fd)), nil)
				})
			}()
			_, _, err := receiveListeners(recv)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error with %q", err, tt.want)
			}
			if after := openFDs(t); after != before {
				t.Errorf("open descriptors: %d before, %d after; want the received ones closed", before, after)
			}
		})
	}
}

func rightsOf(fd int) []byte { return unix.UnixRights(fd) }

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
