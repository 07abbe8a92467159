package proxy

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"
)

// portRange is the ephemeral port range of the network namespace that
// TestDialPortsPerServer runs in: ten ports.
const portRange = "40000 40009"

// TestDialPortsPerServer: connections to servers take their source ports
// per destination, as connect(2) gives them, so a proxy's sessions are
// not capped at one ephemeral range for all servers together. In a
// network namespace of its own (unshare, run as root) with ten ephemeral
// ports, the engine's dial opens 8 connections to each of three servers;
// a bind to port 0 before connect (net.Dialer.DialTCP with a zero local
// address) would run out after ten.
func TestDialPortsPerServer(t *testing.T) {
	if os.Getenv("MAILDIRECTOR_NETNS_CHILD") == "" {
		cmd := exec.Command("unshare", "--net", "--", os.Args[0], "-test.run", "^TestDialPortsPerServer$", "-test.count", "1", "-test.v")
		cmd.Env = append(os.Environ(), "MAILDIRECTOR_NETNS_CHILD=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("in a network namespace of its own: %v\n%s", err, out)
		}
		return
	}
	if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up: %v\n%s", err, out)
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte(portRange), 0o644); err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for i := range 3 {
		// Fixed ports outside the range (the namespace is empty): a port 0
		// listener would take one of the ten.
		ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", 30001+i))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		addrs = append(addrs, ln.Addr().String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, addr := range addrs {
		for i := range 8 {
			c, err := dialTCP(ctx, addr)
			if err != nil {
				t.Fatalf("connection %d to %s: %v (ephemeral ports %s)", i+1, addr, err, portRange)
			}
			defer c.Close()
		}
	}
}
