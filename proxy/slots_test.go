package proxy

import (
	"testing"
	"time"
)

// TestReserveKeepsAFrontendReachable: with the server's only slot taken by
// one frontend, another frontend's Reserve still lets its client in, and
// the first frontend's next client waits.
func TestReserveKeepsAFrontendReachable(t *testing.T) {
	s := New(Options{MaxConn: 1})
	t.Cleanup(func() { s.Close() })
	if err := s.Configure([]Frontend{
		{Name: "imap", Addrs: []string{"127.0.0.1:0"}, Handler: named("imap")},
		{Name: "lmtp", Addrs: []string{"127.0.0.2:0"}, Handler: named("lmtp"), Reserve: 1},
	}); err != nil {
		t.Fatal(err)
	}
	imap, lmtp := s.ListenerAddr("imap").String(), s.ListenerAddr("lmtp").String()
	_, r1 := dialLine(t, imap)
	if l, _ := r1.ReadString('\n'); l != "* OK imap\r\n" {
		t.Fatalf("first imap client: %q", l)
	}
	_, r2 := dialLine(t, imap) // waits in the backlog: the server is full
	waiting := make(chan string, 1)
	go func() {
		l, _ := r2.ReadString('\n')
		waiting <- l
	}()
	_, r3 := dialLine(t, lmtp)
	if l, _ := r3.ReadString('\n'); l != "* OK lmtp\r\n" {
		t.Fatalf("lmtp client with the server full: %q, want it served from its reserve", l)
	}
	select {
	case l := <-waiting:
		t.Fatalf("a second imap client was served beyond maxconn: %q", l)
	default:
	}
}

// TestBacklogWaitRefuses: a frontend full for longer than its BacklogWait
// accepts the next client and refuses it in the protocol's words.
func TestBacklogWaitRefuses(t *testing.T) {
	_, addr := startServer(t, Frontend{Handler: refuser{named("x")}, MaxConn: 1, BacklogWait: 100 * time.Millisecond})
	_, r1 := dialLine(t, addr)
	if l, _ := r1.ReadString('\n'); l != "* OK x\r\n" {
		t.Fatalf("first client: %q", l)
	}
	c2, r2 := dialLine(t, addr)
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if l, err := r2.ReadString('\n'); l != "* BYE Too many connections, try again later\r\n" {
		t.Fatalf("second client of a full frontend: %q, %v; want the refusal", l, err)
	}
	if _, err := r2.ReadString('\n'); err == nil {
		t.Error("the refused client stays connected")
	}
}
