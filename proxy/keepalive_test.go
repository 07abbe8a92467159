package proxy

import (
	"context"
	"net"
	"syscall"
	"testing"
)

// keepAliveOn reads SO_KEEPALIVE of c.
func keepAliveOn(t *testing.T, c net.Conn) bool {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	raw.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE) })
	if gerr != nil {
		t.Fatal(gerr)
	}
	return v != 0
}

// accepted dials ln and returns the connection it accepts.
func accepted(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestNoTCPKeepAlive: the engine's listening sockets, a listening socket it
// inherited (opened with Go's defaults, keepalive on) and its dialled
// server connections all have TCP keepalive off, as HAProxy's do.
func TestNoTCPKeepAlive(t *testing.T) {
	ln, err := Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if keepAliveOn(t, accepted(t, ln)) {
		t.Error("Listen: accepted connection has keepalive on")
	}

	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if !keepAliveOn(t, accepted(t, plain)) {
		t.Fatal("net.Listen: want Go's default, keepalive on, for the check below to mean anything")
	}
	if keepAliveOn(t, accepted(t, NoKeepAlive(plain))) {
		t.Error("NoKeepAlive: accepted connection has keepalive on")
	}

	c, err := dialTCP(context.Background(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if keepAliveOn(t, c) {
		t.Error("dialTCP: connection has keepalive on")
	}
}
