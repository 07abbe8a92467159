package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/maildirector/maildirector/director"
	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/route"
)

// router is a frontend's proxy.Picker: it chooses the backend of each pick
// by the frontend's routing rules, then picks from that backend.
type router struct {
	table   route.Table        // the rules and the default backend
	pickers map[string]*picker // by backend name: every backend of table
}

// Pick implements proxy.Picker.
func (r *router) Pick(ctx context.Context, req proxy.PickRequest) (proxy.Lease, error) {
	return r.backend(req).Pick(ctx, req)
}

// PickHome implements lmtp.HomePicker.
func (r *router) PickHome(ctx context.Context, req proxy.PickRequest) (proxy.Lease, error) {
	return r.backend(req).PickHome(ctx, req)
}

// backend is the picker of the backend the rules choose for req.
func (r *router) backend(req proxy.PickRequest) *picker {
	d := r.table.Route(route.Request{User: req.User, SNI: req.SNI, Local: req.Local, Client: req.Client})
	return r.pickers[d.Backend] // built for every backend of the table
}

// picker lets a frontend pick servers from a backend's director: the
// director decides by name, the picker adds how this frontend's protocol
// dials each server.
type picker struct {
	dir     *director.Director
	targets map[string]proxy.Target // by server name, for one protocol
	// retries is how many other servers of this backend a login may try
	// after a failure (its backend's retries): the engine's count is the
	// largest over the frontend's backends.
	retries int
	// recipients: the frontend picks for LMTP recipient addresses, not
	// login names, and its leases are deliveries, not sessions: they do
	// not count against a server's maxconn nor for leastconn
	// (director.Request.Recipient).
	recipients bool
	// stay: logins go to the user's own server or nowhere
	// (login_server_down = "tempfail"; director.Request.Stay).
	stay bool
	// freezeWait is how long a login of a user an operator froze waits
	// for the release; recipients never wait.
	freezeWait time.Duration
}

func (p *picker) Pick(ctx context.Context, req proxy.PickRequest) (proxy.Lease, error) {
	exclude := req.Exclude
	if p.stay && len(exclude) > 0 {
		// The user's own server failed this login: no other server may
		// have the user, so the client is told to come back later.
		return nil, fmt.Errorf("%w: backend %s: %s failed and login_server_down is tempfail", proxy.ErrUnavailable, p.dir.Name(), exclude[0])
	}
	if len(exclude) > p.retries {
		return nil, fmt.Errorf("%w: backend %s: %d servers failed (retries %d)", proxy.ErrUnavailable, p.dir.Name(), len(exclude), p.retries)
	}
	return p.pick(ctx, director.Request{User: req.User, Recipient: p.recipients, Client: req.Client, Exclude: exclude, Stay: p.stay})
}

// PickHome returns a lease on the user's own server only, never another
// (LMTP with server_down = "tempfail"): see director.Request.Stay.
func (p *picker) PickHome(ctx context.Context, req proxy.PickRequest) (proxy.Lease, error) {
	return p.pick(ctx, director.Request{User: req.User, Recipient: p.recipients, Client: req.Client, Stay: true})
}

// pick asks the director. A login of a user an operator froze waits up to
// freezeWait for the release and asks again; a recipient of a frozen user
// gets proxy.ErrHeld at once (LMTP answers 451 4.2.0, the MTA retries).
func (p *picker) pick(ctx context.Context, req director.Request) (proxy.Lease, error) {
	l, err := p.dir.Pick(req)
	var held *director.HeldError
	if errors.As(err, &held) {
		l, err = p.waitRelease(ctx, req, held)
	}
	if errors.Is(err, director.ErrHeld) {
		return nil, fmt.Errorf("%w: backend %s: %w", proxy.ErrHeld, p.dir.Name(), err)
	}
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

// waitRelease waits, for a login, until the held user is released, then
// picks again; it gives up after freezeWait, when ctx ends, or at once for
// a recipient.
func (p *picker) waitRelease(ctx context.Context, req director.Request, held *director.HeldError) (*director.Lease, error) {
	if req.Recipient || p.freezeWait <= 0 {
		return nil, held
	}
	timer := time.NewTimer(p.freezeWait)
	defer timer.Stop()
	for {
		select {
		case <-held.Released:
		case <-timer.C:
			return nil, held
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		l, err := p.dir.Pick(req)
		if !errors.As(err, &held) {
			return l, err
		}
		// Frozen again before this login got through: wait on.
	}
}
