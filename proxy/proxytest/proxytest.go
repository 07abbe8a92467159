// Package proxytest helps test frontends on the real engine: a scripted
// Picker, a proxy.Server on 127.0.0.1:0, a self-signed TLS config and an
// address nobody listens on.
//
//	p := &proxytest.Picker{Targets: []proxy.Target{{Server: "s1", Address: fake.Addr()}}}
//	addr := proxytest.Serve(t, proxy.Frontend{Name: "imap", Handler: imap.New(imap.Options{Picker: p})})
//	...
//	if got := p.Failures(); len(got) != 0 { ... }
package proxytest

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/tlsutil"
)

// Picker hands out its Targets in order, skipping excluded ones, and
// records the users it was asked for and the servers reported failed.
type Picker struct {
	Targets []proxy.Target
	Err     error // returned by every Pick when set

	mu       sync.Mutex
	users    []string
	requests []proxy.PickRequest
	failed   []string
}

// Pick implements proxy.Picker.
func (p *Picker) Pick(_ context.Context, req proxy.PickRequest) (proxy.Lease, error) {
	user, exclude := req.User, req.Exclude
	p.mu.Lock()
	p.users = append(p.users, user)
	p.requests = append(p.requests, req)
	p.mu.Unlock()
	if p.Err != nil {
		return nil, p.Err
	}
	for _, t := range p.Targets {
		if !slices.Contains(exclude, t.Server) {
			return &lease{p: p, t: t}, nil
		}
	}
	return nil, errors.New("no usable server")
}

// Users returns the users picks were asked for, in order.
func (p *Picker) Users() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.users)
}

// Requests returns the requests picks were asked with, in order.
func (p *Picker) Requests() []proxy.PickRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.requests)
}

// Failures returns the servers whose lease reported Failed, in order.
func (p *Picker) Failures() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.failed)
}

type lease struct {
	p *Picker
	t proxy.Target
}

func (l *lease) Target() proxy.Target { return l.t }
func (l *lease) User() string         { return "" }
func (l *lease) Established()         {}
func (l *lease) Answered()            {}
func (l *lease) Release()             {}
func (l *lease) Failed(error) {
	l.p.mu.Lock()
	l.p.failed = append(l.p.failed, l.t.Server)
	l.p.mu.Unlock()
}

// Serve runs fe on a proxy.Server (on 127.0.0.1:0 unless fe.Addrs is set),
// closes it when the test ends, and returns the listening address.
func Serve(t testing.TB, fe proxy.Frontend) string {
	t.Helper()
	if len(fe.Addrs) == 0 {
		fe.Addrs = []string{"127.0.0.1:0"}
	}
	srv := proxy.New(proxy.Options{})
	if err := srv.Configure([]proxy.Frontend{fe}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv.ListenerAddr(fe.Name).String()
}

// DeadAddr returns a loopback address nobody listens on, for the test's
// whole life: the port is held by a TCP socket that is bound but never
// listens, so a connection to it is refused and no other test (or
// process) can take the port meanwhile, as it could a port merely closed.
func DeadAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
}

// ServerTLS returns a server config with a self-signed certificate for localhost.
func ServerTLS(t testing.TB) *tls.Config {
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
