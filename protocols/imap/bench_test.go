//go:build unix

package imap

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkLoginCycle measures the connection path of issue 15 through the
// frontend, over loopback to a fake Dovecot: connect, greeting, LOGIN
// (parsed, the server picked, dialled and the login replayed), SELECT and
// LOGOUT through the relay, close. One op is one such session. allocs/op
// and cpu-µs/op are the whole process's (client, frontend and fake
// server): compare them before and after a change, not with HAProxy.
//
//	go test -run '^$' -bench LoginCycle -benchmem -cpuprofile cpu.out ./protocols/imap
func BenchmarkLoginCycle(b *testing.B) {
	e := newEnv(b, envConfig{opts: Options{PlaintextLogin: true}})
	for range 16 { // the relay's epoll set, the pools: not per-session cost
		if err := loginCycle(e.addr); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU(b)
	for range b.N {
		if err := loginCycle(e.addr); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((processCPU(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
}

// loginCycle is one session: each command waits for its tagged reply.
func loginCycle(addr string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* OK") {
		return fmt.Errorf("greeting: %q %v", l, err)
	}
	for _, cmd := range []string{"a LOGIN alice " + goodPassword, "b SELECT INBOX", "c LOGOUT"} {
		if _, err := fmt.Fprintf(c, "%s\r\n", cmd); err != nil {
			return err
		}
		tag, _, _ := strings.Cut(cmd, " ")
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("%s: %v", cmd, err)
			}
			if strings.HasPrefix(l, tag+" ") {
				if !strings.HasPrefix(l, tag+" OK") {
					return fmt.Errorf("%s: %q", cmd, l)
				}
				break
			}
		}
	}
	return nil
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
