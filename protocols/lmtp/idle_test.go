package lmtp

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/proxy/proxytest"
)

// holdConn is a server's socket that can hold its writes and send them
// in one: two TLS records then reach the peer in one TCP segment.
type holdConn struct {
	net.Conn
	mu      sync.Mutex
	holding bool
	held    bytes.Buffer
}

func (h *holdConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.holding {
		return h.held.Write(p)
	}
	return h.Conn.Write(p)
}

// hold starts holding writes, or sends what was held in one write.
func (h *holdConn) hold(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.holding = on
	if !on && h.held.Len() > 0 {
		h.Conn.Write(h.held.Bytes())
		h.held.Reset()
	}
}

// TestExtraRecordOverTLSNotReused: a TLS server's extra reply after the
// data, in a TLS record of its own that came in the same TCP segment as
// the expected replies, is read off the socket by crypto/tls with them
// and waits inside the tls.Conn, where neither the reader's buffer nor
// the socket shows it. The pooled connection must not be reused: its
// stale 250 would answer the next transaction's RSET and put every reply
// after it out of step.
func TestExtraRecordOverTLSNotReused(t *testing.T) {
	bad := startRawServer(t, "bad")
	bad.mu.Lock()
	bad.tls = proxytest.ServerTLS(t)
	bad.mu.Unlock()
	target := bad.target()
	target.TLS = &tls.Config{InsecureSkipVerify: true}
	picker := &fakePicker{order: map[string][]proxy.Target{
		"a@example.org":       {target},
		"unknown@example.org": {target},
	}}
	addr, _, _ := startFrontend(t, Options{Picker: picker})
	c := dialLMTP(t, addr)
	bad.setMode("record")
	if _, replies := c.transaction([]string{"a@example.org"}, testBody); fmt.Sprint(codes(replies)) != "[250]" {
		t.Fatalf("first transaction: got %v, want [250]", replies)
	}
	bad.setMode("")
	rcptReplies, replies := c.transaction([]string{"unknown@example.org", "a@example.org"}, testBody)
	if got := codes(rcptReplies); fmt.Sprint(got) != "[550 250]" {
		t.Fatalf("RCPT after an extra reply in its own TLS record: got %v, want [550 250]", rcptReplies)
	}
	if got := codes(replies); fmt.Sprint(got) != "[250]" {
		t.Fatalf("after the data: got %v, want [250]", replies)
	}
	if conns, _, _, _ := bad.counts(); conns != 2 {
		t.Errorf("server connections: got %d, want 2 (the out-of-step one replaced)", conns)
	}
}
