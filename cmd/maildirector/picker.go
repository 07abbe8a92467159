package main

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/maildirector/maildirector/director"
	"github.com/maildirector/maildirector/proxy"
)

// picker lets a frontend pick servers from a backend's director: the
// director decides by name, the picker adds how this frontend's protocol
// dials each server.
type picker struct {
	dir     *director.Director
	targets map[string]proxy.Target // by server name, for one protocol
	// recipients: the frontend picks for LMTP recipient addresses, not
	// login names, and its leases are deliveries, not sessions: they do
	// not count against a server's maxconn nor for leastconn
	// (director.Request.Recipient).
	recipients bool
	// stay: logins go to the user's own server or nowhere
	// (login_server_down = "tempfail"; director.Request.Stay).
	stay bool
}

func (p *picker) Pick(_ context.Context, user string, client netip.AddrPort, exclude []string) (proxy.Lease, error) {
	if p.stay && len(exclude) > 0 {
		// The user's own server failed this login: no other server may
		// have the user, so the client is told to come back later.
		return nil, fmt.Errorf("%w: backend %s: %s failed and login_server_down is tempfail", proxy.ErrUnavailable, p.dir.Name(), exclude[0])
	}
	return p.pick(director.Request{User: user, Recipient: p.recipients, Client: client, Exclude: exclude, Stay: p.stay})
}

// PickHome returns a lease on the user's own server only, never another
// (LMTP with server_down = "tempfail"): see director.Request.Stay.
func (p *picker) PickHome(_ context.Context, user string, client netip.AddrPort) (proxy.Lease, error) {
	return p.pick(director.Request{User: user, Recipient: p.recipients, Client: client, Stay: true})
}

func (p *picker) pick(req director.Request) (proxy.Lease, error) {
	l, err := p.dir.Pick(req)
	if err != nil {
		return nil, fmt.Errorf("%w: backend %s: %w", proxy.ErrUnavailable, p.dir.Name(), err)
	}
	t, ok := p.targets[l.Server]
	if !ok { // cannot happen: targets are built from the same server list
		l.Release()
		return nil, fmt.Errorf("%w: server %s has no address", proxy.ErrUnavailable, l.Server)
	}
	return lease{l: l, t: t}, nil
}

type lease struct {
	l *director.Lease
	t proxy.Target
}

func (l lease) Target() proxy.Target { return l.t }
func (l lease) User() string         { return l.l.User }
func (l lease) Established()         { l.l.Established() }
func (l lease) Answered()            { l.l.Answered() }
func (l lease) Failed(err error)     { l.l.Failed(err) }
func (l lease) Release()             { l.l.Release() }
