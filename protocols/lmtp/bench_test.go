//go:build unix

package lmtp

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/maildirector/maildirector/proxy"
)

// BenchmarkTransaction measures one LMTP transaction through the frontend:
// one client session over loopback delivers 10 KiB messages, as the bench's
// LMTP suite does, to recipients on a server that discards the data. One op
// is one message (MAIL, RCPT for each recipient, DATA, the body and the
// replies after it). The server's own cost is small and the same before and
// after a change; the profile of interest is the frontend's. cpu-µs/op is
// the CPU time of the whole process (client, frontend and server) per
// message, which on a loaded machine matters more than the latency.
//
//	go test -run '^$' -bench Transaction -benchmem -cpuprofile cpu.out ./protocols/lmtp
func BenchmarkTransaction(b *testing.B) {
	sink := startSinkServer(b)
	msg := benchMessage(10 << 10)
	for _, n := range []int{1, 2} {
		b.Run(fmt.Sprintf("rcpts=%d", n), func(b *testing.B) {
			var rcpts []string
			routes := map[string][]proxy.Target{}
			for i := range n {
				addr := fmt.Sprintf("user%d@example.org", i)
				rcpts = append(rcpts, addr)
				routes[addr] = []proxy.Target{sink.target()}
			}
			addr, _, _ := startFrontend(b, Options{Picker: &fakePicker{order: routes}})
			c := dialBenchClient(b, addr)
			c.send(rcpts, msg) // the server connection is pooled from here on
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU(b)
			for range b.N {
				c.send(rcpts, msg)
			}
			b.ReportMetric(float64((processCPU(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}

// processCPU is the CPU time (user and system) the process has used.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchMessage is a message of about size octets with 76-character lines,
// as the bench's LMTP suite sends.
func benchMessage(size int) []byte {
	var m bytes.Buffer
	m.WriteString("From: mta@example.net\r\nTo: user@example.org\r\nSubject: bench\r\n\r\n")
	line := append(bytes.Repeat([]byte("0123456789abcdefghij"), 4)[:76], "\r\n"...)
	for m.Len()+len(line) <= size {
		m.Write(line)
	}
	return m.Bytes()
}

// benchClient is a lean MTA side: one command at a time, as go-smtp's
// client (the bench's) sends them.
type benchClient struct {
	tb testing.TB
	r  *bufio.Reader
	w  *bufio.Writer
}

func dialBenchClient(tb testing.TB, addr string) *benchClient {
	tb.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { nc.Close() })
	c := &benchClient{tb: tb, r: bufio.NewReader(nc), w: bufio.NewWriter(nc)}
	c.expect(220)
	c.cmd("LHLO mta.example.net", 250)
	return c
}

// expect reads one reply, multi-line or not, and fails unless its code is code.
func (c *benchClient) expect(code int) {
	c.tb.Helper()
	want := fmt.Sprint(code)
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.tb.Fatalf("read reply: %v", err)
		}
		if !strings.HasPrefix(line, want) {
			c.tb.Fatalf("got %q, want %d", line, code)
		}
		if len(line) < 4 || line[3] != '-' {
			return
		}
	}
}

func (c *benchClient) cmd(line string, code int) {
	c.tb.Helper()
	c.w.WriteString(line + "\r\n")
	if err := c.w.Flush(); err != nil {
		c.tb.Fatal(err)
	}
	c.expect(code)
}

// send delivers msg (no line starting with a dot) to rcpts.
func (c *benchClient) send(rcpts []string, msg []byte) {
	c.tb.Helper()
	c.cmd("MAIL FROM:<mta@example.net>", 250)
	for _, rc := range rcpts {
		c.cmd("RCPT TO:<"+rc+">", 250)
	}
	c.cmd("DATA", 354)
	c.w.Write(msg)
	c.w.WriteString(".\r\n")
	if err := c.w.Flush(); err != nil {
		c.tb.Fatal(err)
	}
	for range rcpts {
		c.expect(250)
	}
}

// sinkServer is a lean LMTP server that advertises PIPELINING, accepts
// every recipient and discards the data, so that the frontend's cost
// stands out in a profile.
type sinkServer struct{ addr string }

func startSinkServer(tb testing.TB) *sinkServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go acceptSink(ln)
	return &sinkServer{addr: ln.Addr().String()}
}

func (s *sinkServer) target() proxy.Target { return proxy.Target{Server: "sink", Address: s.addr} }

// acceptSink serves each connection until the listener is closed.
func acceptSink(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go serveSink(c)
	}
}

// serveSink answers one connection until it closes.
func serveSink(c net.Conn) {
	defer c.Close()
	r, w := bufio.NewReaderSize(c, 64<<10), bufio.NewWriter(c)
	w.WriteString("220 sink LMTP\r\n")
	w.Flush()
	rcpts := 0
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		verb, args, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(" "))
		switch string(bytes.ToUpper(verb)) {
		case "LHLO": // Dovecot 2.3's keywords
			w.WriteString("250-sink\r\n250-8BITMIME\r\n250-CHUNKING\r\n250-ENHANCEDSTATUSCODES\r\n250 PIPELINING\r\n")
		case "BDAT": // one chunk, LAST, as the frontend sends it
			size, _, _ := bytes.Cut(args, []byte(" "))
			n, err := strconv.Atoi(string(size))
			if err != nil {
				return
			}
			if _, err := r.Discard(n); err != nil {
				return
			}
			for range rcpts {
				w.WriteString("250 2.0.0 Saved\r\n")
			}
			rcpts = 0
		case "MAIL", "RSET":
			rcpts = 0
			w.WriteString("250 2.0.0 OK\r\n")
		case "RCPT":
			rcpts++
			w.WriteString("250 2.1.5 OK\r\n")
		case "DATA":
			w.WriteString("354 go ahead\r\n")
			w.Flush()
			if !skipData(r) {
				return
			}
			for range rcpts {
				w.WriteString("250 2.0.0 Saved\r\n")
			}
			rcpts = 0
		case "QUIT":
			w.WriteString("221 2.0.0 Bye\r\n")
			w.Flush()
			return
		default:
			w.WriteString("500 5.5.1 Unknown command\r\n")
		}
		if r.Buffered() == 0 {
			w.Flush()
		}
	}
}

// skipData reads up to and including the end line "." after CRLF.
func skipData(r *bufio.Reader) bool {
	atStart := true
	for {
		line, err := r.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			return false
		}
		if atStart && string(line) == ".\r\n" {
			return true
		}
		atStart = err == nil
	}
}
