package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/maildirector/maildirector/cluster"
	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/director"
	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/route"
	"github.com/maildirector/maildirector/stats"
)

// controller carries out the control socket's commands on the running
// service (stats.Controller).
type controller struct{ rt *runtime }

var _ stats.Controller = controller{}

// freezeSettle bounds how long freeze waits for the user's sessions and
// deliveries under way to end before it answers.
const freezeSettle = 10 * time.Second

// cutServer splits "backend/server".
func cutServer(s string) (backend, server string, ok bool) {
	return strings.Cut(s, "/")
}

// resolve finds the backend of a server named "BACKEND/SERVER", or
// "SERVER" when exactly one backend has it.
func (c controller) resolve(name string) (*backend, string, string, error) {
	rt := c.rt
	rt.mu.Lock()
	cfg, backends := rt.cfg, rt.backends
	rt.mu.Unlock()
	if b, s, ok := cutServer(name); ok {
		be := backends[b]
		if be == nil {
			return nil, "", "", fmt.Errorf("no backend %q", b)
		}
		if !slices.ContainsFunc(be.config().Servers, func(x *config.Server) bool { return x.Name == s }) {
			return nil, "", "", fmt.Errorf("backend %s has no server %q", b, s)
		}
		return be, b, s, nil
	}
	var found []string
	for _, bn := range cfg.BackendNames() {
		if slices.ContainsFunc(backends[bn].config().Servers, func(x *config.Server) bool { return x.Name == name }) {
			found = append(found, bn)
		}
	}
	switch len(found) {
	case 0:
		return nil, "", "", fmt.Errorf("no server %q in any backend", name)
	case 1:
		return backends[found[0]], found[0], name, nil
	}
	return nil, "", "", fmt.Errorf("server %q is in backends %s: write BACKEND/%s", name, strings.Join(found, ", "), name)
}

// eachBackend calls f for every running backend, in configuration order.
func (c controller) eachBackend(f func(name string, b *backend)) {
	rt := c.rt
	rt.mu.Lock()
	cfg, backends := rt.cfg, rt.backends
	rt.mu.Unlock()
	for _, name := range cfg.BackendNames() {
		if b := backends[name]; b != nil {
			f(name, b)
		}
	}
}

func (c controller) Info() stats.Info {
	rt := c.rt
	cfg := rt.currentConfig()
	in := stats.Info{
		Version: version, PID: os.Getpid(), Uptime: time.Since(rt.started).Seconds(),
		Config: rt.path, StateFile: cfg.Control.StateFile,
		Sessions: len(rt.srv.Sessions()), MaxConn: cfg.Global.MaxConn,
		Frontends: len(cfg.Frontends), Backends: len(cfg.Backends), Frozen: len(rt.holds.Held()),
	}
	if data, err := os.ReadFile(rt.path); err == nil {
		sum := sha256.Sum256(data)
		in.ConfigSHA256 = hex.EncodeToString(sum[:])
	}
	return in
}

// session converts a live session for the control socket.
func (c controller) session(i proxy.Info) stats.Session {
	return stats.Session{
		ID: i.ID, SessionID: i.Session, Since: i.Start, Frontend: i.Frontend, Protocol: i.Protocol, Backend: i.Backend,
		Remote: i.Remote.String(), User: i.User, Server: i.Server, TLS: i.TLS,
		Age: time.Since(i.Start).Seconds(), BytesIn: i.BytesIn, BytesOut: i.BytesOut,
	}
}

// Sessions lists the live sessions, of a user or of a server when filter
// names one.
func (c controller) Sessions(filter string) []stats.Session {
	var out []stats.Session
	b, s, isServer := cutServer(filter)
	for _, i := range c.rt.srv.Sessions() {
		ss := c.session(i)
		switch {
		case filter == "":
		case isServer && ss.Backend == b && ss.Server == s:
		case !isServer && (ss.Server == filter || strings.EqualFold(ss.User, filter) || c.userMatches(ss.Backend, ss.User, filter)):
		default:
			continue
		}
		out = append(out, ss)
	}
	slices.SortFunc(out, func(a, b stats.Session) int { return int(a.ID) - int(b.ID) })
	return out
}

// userMatches reports whether a session routed as routed in backend is
// user's (as that backend normalises names).
func (c controller) userMatches(backend, routed, user string) bool {
	c.rt.mu.Lock()
	b := c.rt.backends[backend]
	c.rt.mu.Unlock()
	return b != nil && routed != "" && b.dir.Where(user).User == routed
}

func (c controller) Users(server string) ([]stats.User, error) {
	b, bn, sn, err := c.resolve(server)
	if err != nil {
		return nil, err
	}
	as, err := b.dir.Users(sn)
	if err != nil {
		return nil, err
	}
	out := make([]stats.User, 0, len(as))
	for _, a := range as {
		out = append(out, stats.User{Backend: bn, Server: sn, User: a.User, Sessions: a.Sessions, Since: a.Since, Active: a.Active, Expires: a.Expires, Moved: a.Moved})
	}
	return out, nil
}

func (c controller) SetState(server, state string) error {
	b, bn, sn, err := c.resolve(server)
	if err != nil {
		return err
	}
	a, err := director.ParseAdminState(state)
	if err != nil || state == "" {
		return fmt.Errorf("state %q: want ready, drain or maint", state)
	}
	if err := c.rt.fleetDo(func(f *cluster.Cluster) error { return f.SetServer(bn, sn, a.String(), nil) }); err != nil {
		return err
	}
	if err := b.dir.SetAdmin(sn, a); err != nil {
		return err
	}
	return c.rt.state.setServer(bn, sn, func(o *serverOverride) { o.State = a.String() })
}

func (c controller) SetWeight(server string, weight int) error {
	b, bn, sn, err := c.resolve(server)
	if err != nil {
		return err
	}
	if weight < 0 || weight > director.MaxWeight {
		return fmt.Errorf("weight %d: want 0..%d", weight, director.MaxWeight)
	}
	if err := c.rt.fleetDo(func(f *cluster.Cluster) error { return f.SetServer(bn, sn, "", &weight) }); err != nil {
		return err
	}
	if err := b.dir.SetWeight(sn, weight); err != nil {
		return fmt.Errorf("weight %d: want 0..%d", weight, director.MaxWeight)
	}
	return c.rt.state.setServer(bn, sn, func(o *serverOverride) { o.Weight = &weight })
}

func (c controller) ShutdownSessions(server string) (int, error) {
	_, bn, sn, err := c.resolve(server)
	if err != nil {
		return 0, err
	}
	return c.rt.srv.Kick(func(i proxy.Info) bool {
		return i.Server == sn && i.Backend == bn
	}, "kicked"), nil
}

func (c controller) Where(user string) ([]stats.Where, error) {
	if user == "" {
		return nil, errors.New("empty user")
	}
	sessions := c.rt.srv.Sessions()
	cfg := c.rt.currentConfig()
	routes := map[string][]stats.WhereRoute{} // by backend
	for _, name := range cfg.FrontendNames() {
		f := cfg.Frontends[name]
		if len(f.Route) == 0 {
			continue
		}
		d, unless := routeFor(cfg, f, user, whereContext{unknown: route.Unknown{SNI: true, Local: true, Client: true}})
		routes[d.Backend] = append(routes[d.Backend], stats.WhereRoute{Frontend: name, Rule: d.Rule, Why: d.String(), Unless: unless})
	}
	var out []stats.Where
	c.eachBackend(func(name string, b *backend) {
		p := b.dir.Where(user)
		w := stats.Where{Backend: name, User: p.User, Server: p.Server, Reason: p.Reason, Hashed: p.Hashed, Since: p.Since, Moved: p.Moved, Frozen: p.Frozen, Sessions: []stats.Session{}, Routes: routes[name]}
		for _, i := range sessions {
			if i.User == p.User && i.Backend == name {
				w.Sessions = append(w.Sessions, c.session(i))
			}
		}
		out = append(out, w)
	})
	return out, nil
}

// kickUser ends the user's sessions in backend (as it normalises the name)
// and returns how many. LMTP sessions are an MTA's, carrying mail for many
// users: they are left alone (a freeze waits for their deliveries).
func (c controller) kickUser(backend string, b *backend, user string) int {
	routed := b.dir.Where(user).User
	if routed == "" {
		return 0
	}
	return c.rt.srv.Kick(func(i proxy.Info) bool {
		return i.User == routed && i.Protocol != string(config.ProtocolLMTP) && i.Backend == backend
	}, "kicked")
}

func (c controller) Move(user, server string) (stats.Moved, error) {
	b, bn, sn, err := c.resolve(server)
	if err != nil {
		return stats.Moved{}, err
	}
	if err := c.rt.fleetReady(); err != nil {
		return stats.Moved{}, err
	}
	if err := b.dir.Move(user, sn); err != nil {
		return stats.Moved{}, err
	}
	routed := b.dir.Where(user).User
	if err := c.rt.fleetDo(func(f *cluster.Cluster) error { return f.Move(bn, routed, sn) }); err != nil {
		return stats.Moved{}, err
	}
	if err := c.rt.state.setMove(bn, routed, sn); err != nil {
		return stats.Moved{}, err
	}
	c.rt.log.Info("user moved by an operator", "backend", bn, "user", routed, "server", sn)
	return stats.Moved{User: routed, Server: bn + "/" + sn, Kicked: c.kickUser(bn, b, user)}, nil
}

func (c controller) Kick(user string) (int, error) {
	if user == "" {
		return 0, errors.New("empty user")
	}
	n := 0
	c.eachBackend(func(name string, b *backend) { n += c.kickUser(name, b, user) })
	return n, nil
}

func (c controller) Flush(server string, maxParallel int) (stats.Flushed, error) {
	b, bn, sn, err := c.resolve(server)
	if err != nil {
		return stats.Flushed{}, err
	}
	users, err := b.dir.Flush(sn)
	if err != nil {
		return stats.Flushed{}, err
	}
	c.rt.state.forgetMoves(bn, sn, nil)
	if err := c.rt.fleetDo(func(f *cluster.Cluster) error { return f.Forget(bn, users) }); err != nil {
		return stats.Flushed{}, err
	}
	res := stats.Flushed{Server: bn + "/" + sn, Users: len(users)}
	kick := func(u string) int {
		return c.rt.srv.Kick(func(i proxy.Info) bool {
			return i.User == u && i.Server == sn && i.Protocol != string(config.ProtocolLMTP) && i.Backend == bn
		}, "kicked")
	}
	if maxParallel <= 0 {
		for _, u := range users {
			res.Kicked += kick(u)
		}
		return res, nil
	}
	// At a bounded rate: maxParallel users a second, in the background, so
	// that the server is not hit by every client reconnecting at once.
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for i := 0; i < len(users); i += maxParallel {
			if i > 0 {
				<-t.C
			}
			for _, u := range users[i:min(i+maxParallel, len(users))] {
				kick(u)
			}
		}
		c.rt.log.Info("flush: sessions kicked", "backend", bn, "server", sn, "users", len(users), "max_parallel", maxParallel)
	}()
	return res, nil
}

func (c controller) Freeze(user string) (stats.Frozen, error) {
	if user == "" {
		return stats.Frozen{}, errors.New("empty user")
	}
	var names []string
	c.eachBackend(func(_ string, b *backend) {
		if u := b.dir.Where(user).User; u != "" && !slices.Contains(names, u) {
			names = append(names, u)
		}
	})
	for _, u := range names {
		if err := c.rt.fleetDo(func(f *cluster.Cluster) error { return f.Freeze(u) }); err != nil {
			return stats.Frozen{}, err
		}
		c.rt.holds.Freeze(u)
	}
	if err := c.rt.state.setFrozen(c.rt.holds.Held()); err != nil {
		return stats.Frozen{}, err
	}
	res := stats.Frozen{User: strings.Join(names, ",")}
	res.Kicked, _ = c.Kick(user)
	c.rt.log.Info("user frozen by an operator", "user", res.User, "kicked", res.Kicked)
	// Wait (bounded) for the user's sessions and deliveries under way to
	// end, so that once this answers nothing more lands on any server.
	deadline := time.Now().Add(freezeSettle)
	for {
		res.Live = 0
		c.eachBackend(func(_ string, b *backend) { res.Live += b.dir.Where(user).Sessions })
		if res.Live == 0 || time.Now().After(deadline) {
			return res, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c controller) Release(user, server string) (stats.Released, error) {
	if user == "" {
		return stats.Released{}, errors.New("empty user")
	}
	res := stats.Released{}
	if server != "" {
		b, bn, sn, err := c.resolve(server)
		if err != nil {
			return res, err
		}
		// Lift the hold only for Move: the director refuses a frozen
		// user's picks, not moves.
		if err := c.rt.fleetReady(); err != nil {
			return res, err
		}
		if err := b.dir.Move(user, sn); err != nil {
			return res, err
		}
		routed := b.dir.Where(user).User
		if err := c.rt.fleetDo(func(f *cluster.Cluster) error { return f.Move(bn, routed, sn) }); err != nil {
			return res, err
		}
		if err := c.rt.state.setMove(bn, b.dir.Where(user).User, sn); err != nil {
			return res, err
		}
		res.Server = bn + "/" + sn
	}
	var names []string
	c.eachBackend(func(_ string, b *backend) {
		if u := b.dir.Where(user).User; u != "" && !slices.Contains(names, u) {
			names = append(names, u)
		}
	})
	released := false
	for _, u := range names {
		// The fleet's release reaches this node's holds through its watch
		// too, maybe first: whether u was held is asked before.
		wasHeld := slices.Contains(c.rt.holds.Held(), u)
		if err := c.rt.fleetDo(func(f *cluster.Cluster) error { return f.Release(u) }); err != nil {
			return res, err
		}
		released = c.rt.holds.Release(u) || wasHeld || released
	}
	if !released {
		return res, fmt.Errorf("%s is not frozen", user)
	}
	res.User = strings.Join(names, ",")
	if err := c.rt.state.setFrozen(c.rt.holds.Held()); err != nil {
		return res, err
	}
	c.rt.log.Info("user released by an operator", "user", res.User, "server", res.Server)
	return res, nil
}

func (c controller) Frozen() []string { return c.rt.holds.Held() }

func (c controller) Reload() error { return c.rt.reload() }

// controlSocket is the running control socket.
type controlSocket struct {
	conf config.Control
	ln   net.Listener
}

// openControl opens the control socket cfg asks for, with its mode and
// owner: the permission of the socket is the access control. A stale
// socket file (left by a process that died) is replaced; a live one is an
// error.
func (rt *runtime) openControl(cfg config.Control) (*controlSocket, error) {
	if cfg.Socket == "" {
		return nil, nil
	}
	// An upgrade (or systemd) hands over the socket itself: commands keep
	// reaching a process through the same path, without a gap.
	ln := rt.inh.take("unix " + cfg.Socket)
	var err error
	if ln == nil {
		if conn, err := net.Dial("unix", cfg.Socket); err == nil {
			conn.Close()
			return nil, fmt.Errorf("control.socket %s: another process is listening on it", cfg.Socket)
		}
		os.Remove(cfg.Socket)
		if ln, err = net.Listen("unix", cfg.Socket); err != nil {
			return nil, fmt.Errorf("control.socket: %w", err)
		}
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(true)
	fail := func(err error) (*controlSocket, error) {
		ln.Close()
		return nil, fmt.Errorf("control.socket %s: %w", cfg.Socket, err)
	}
	uid, gid := -1, -1
	if cfg.User != "" {
		if uid, err = lookupID(cfg.User, func(n string) (string, error) {
			u, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		}); err != nil {
			return fail(fmt.Errorf("user: %w", err))
		}
	}
	if cfg.Group != "" {
		if gid, err = lookupID(cfg.Group, func(n string) (string, error) {
			g, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		}); err != nil {
			return fail(fmt.Errorf("group: %w", err))
		}
	}
	if uid >= 0 || gid >= 0 {
		if err := os.Chown(cfg.Socket, uid, gid); err != nil {
			return fail(err)
		}
	}
	if err := os.Chmod(cfg.Socket, os.FileMode(cfg.SocketMode())); err != nil {
		return fail(err)
	}
	go rt.stats.NewControl(controller{rt}).Serve(ln)
	rt.log.Info("control socket open", "socket", cfg.Socket, "mode", cfg.Mode)
	return &controlSocket{conf: cfg, ln: ln}, nil
}

// lookupID takes a numeric id as it is, else looks the name up.
func lookupID(s string, lookup func(string) (string, error)) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return n, nil
	}
	id, err := lookup(s)
	if err != nil {
		return -1, err
	}
	return strconv.Atoi(id)
}

// sameSocket reports whether a and b open the same socket the same way.
func sameSocket(a, b config.Control) bool {
	return a.Socket == b.Socket && a.Mode == b.Mode && a.User == b.User && a.Group == b.Group
}

// cfg is the settings s was opened with; the zero value for none.
func (s *controlSocket) cfg() config.Control {
	if s == nil {
		return config.Control{}
	}
	return s.conf
}

func (s *controlSocket) close() {
	if s != nil {
		s.ln.Close()
	}
}
