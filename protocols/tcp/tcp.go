// Package tcp is maildirector's plain TCP frontend, HAProxy's "mode tcp":
// it picks a server (with no user: the balance algorithm decides, e.g.
// source or roundrobin), dials it with the PROXY header the server wants,
// and relays bytes both ways without reading them. It suits any protocol
// the proxy need not understand: doveadm, ManageSieve, a replicator port.
//
// Bytes the client sends before the server is connected are kept and
// forwarded; a server that speaks first (ManageSieve, doveadm) greets the
// client through the relay.
//
//	fe := proxy.Frontend{
//		Name: "sieve", Protocol: "tcp", Addrs: []string{":4190"},
//		Handler: tcp.New(tcp.Options{Picker: picker}),
//	}
package tcp

import (
	"context"
	"fmt"
	"net"

	"github.com/maildirector/maildirector/proxy"
)

// Options configure a [Frontend]. The zero value of each field is usable
// except Picker, which is required.
type Options struct {
	// Picker chooses the server; it is asked with an empty user name.
	Picker proxy.Picker
}

// Frontend relays TCP connections; it is a [proxy.Handler] and is safe for
// concurrent use.
type Frontend struct {
	opts Options
}

// New returns a TCP frontend.
func New(opts Options) *Frontend { return &Frontend{opts: opts} }

// ServeConn connects c to a server and hands both to the relay. The
// engine closes c when ServeConn fails; when no server can be reached the
// client is closed without a word (there is no protocol to say it in), and
// the error, wrapping [proxy.ErrUnavailable], goes to the session's log line.
func (f *Frontend) ServeConn(ctx context.Context, c *proxy.Conn) error {
	srv, fromServer, err := c.Connect(ctx, f.opts.Picker, "", noLogin)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if err := c.Relay(srv, fromServer); err != nil { // Relay closes srv on error
		return fmt.Errorf("hand off to relay: %w", err)
	}
	return nil
}

// noLogin is the login step of a protocol the proxy does not speak: a
// connected server is a usable one.
func noLogin(context.Context, net.Conn, proxy.Target) ([]byte, error) { return nil, nil }
