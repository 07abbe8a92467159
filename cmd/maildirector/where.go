package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/director"
	"github.com/maildirector/maildirector/route"
)

// whereContext is how the client of `where` connects, as far as the
// operator said: what the routing rules match on besides the user.
type whereContext struct {
	frontend string // only this frontend; "" for all
	sni      string
	local    netip.AddrPort
	client   netip.AddrPort
	unknown  route.Unknown // what was not said
}

// routeFor explains which backend f's rules choose for user in ctx, and
// which rules on what ctx does not say would have taken the session
// first ("route[1] (sni imap.b.example) → backend b").
func routeFor(cfg *config.Config, f *config.Frontend, user string, ctx whereContext) (route.Decision, []string) {
	t := routeTable(f, cfg.Backends[f.Backend])
	u := ctx.unknown
	u.SNI = u.SNI && f.TLS.Mode != config.TLSModeNone
	d, maybe := t.Explain(route.Request{User: user, SNI: ctx.sni, Local: ctx.local, Client: ctx.client}, u)
	var unless []string
	for _, i := range maybe {
		r := t.Rules[i]
		unless = append(unless, fmt.Sprintf("route[%d] (%s) → backend %s", i, r, r.Backend))
	}
	return d, unless
}

// cmdWhere prints, from the configuration, which server each user goes to
// on every backend balanced by user name (balance "user" or "director"): a
// freshly started maildirector (or any node with the same configuration)
// places users there while all servers are up. With control.state_file the
// moves and imported assignments it holds count too, as they do at start
// (the sticky ones are marked); a running maildirector may differ for users
// with a sticky assignment made since (ask it: ctl where).
//
// For each frontend with routing rules (or the one --frontend names) it
// then prints the backend the rules choose for the user, why, and the
// server there; --sni, --local and --client say how the client connects,
// and rules on what they leave unsaid are listed as "unless".
func cmdWhere(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("where", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", defaultConfig, "configuration file")
	var ctx whereContext
	fs.StringVar(&ctx.frontend, "frontend", "", "only this frontend's routing")
	fs.StringVar(&ctx.sni, "sni", "", "the TLS server name the client sends")
	local := fs.String("local", "", "the address IP:PORT the client connects to")
	client := fs.String("client", "", "the client's IP address")
	users, ok := parseInterleaved(fs, args)
	if !ok {
		return 2
	}
	if len(users) == 0 {
		fmt.Fprintln(stderr, "usage: maildirector where [-c FILE] [--frontend NAME] [--sni NAME] [--local IP:PORT] [--client IP] USER...")
		return 2
	}
	ctx.sni = strings.ToLower(ctx.sni)
	ctx.unknown = route.Unknown{SNI: ctx.sni == "", Local: *local == "", Client: *client == ""}
	var err error
	if *local != "" {
		if ctx.local, err = netip.ParseAddrPort(*local); err != nil {
			fmt.Fprintf(stderr, "maildirector where: --local %q: want IP:PORT, e.g. 127.0.0.1:143\n", *local)
			return 2
		}
	}
	if *client != "" {
		a, err := netip.ParseAddr(*client)
		if err != nil {
			fmt.Fprintf(stderr, "maildirector where: --client %q: want an IP address\n", *client)
			return 2
		}
		ctx.client = netip.AddrPortFrom(a, 0)
	}
	// Only the routing is needed: certificates and keys stay unread, so an
	// admin who cannot read the private keys can still ask.
	cfg, err := config.LoadRouting(*path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: configuration is invalid:\n  %s\n", *path, strings.Join(flatten(err), "\n  "))
		return 1
	}
	if ctx.frontend != "" && cfg.Frontends[ctx.frontend] == nil {
		fmt.Fprintf(stderr, "maildirector where: no frontend %q; the frontends are: %s\n", ctx.frontend, strings.Join(cfg.FrontendNames(), ", "))
		return 2
	}
	st, err := loadState(cfg.Control.StateFile)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	dirs := map[string]*director.Director{} // the backends balanced by user
	for _, name := range cfg.BackendNames() {
		bc := cfg.Backends[name]
		if bc.Balance != config.BalanceUser && bc.Balance != config.BalanceDirector {
			continue
		}
		opts, err := directorOptions(bc)
		if err != nil {
			fmt.Fprintf(stderr, "backend.%s: %v\n", name, err)
			return 1
		}
		d, err := director.New(opts)
		if err != nil {
			fmt.Fprintf(stderr, "backend.%s: %v\n", name, err)
			return 1
		}
		st.applyTo(name, d, true, bc.UserExpire.D())
		dirs[name] = d
	}
	server := func(backend, user string) string {
		d := dirs[backend]
		if d == nil {
			return fmt.Sprintf("(balance %s: by connection, not by user)", cfg.Backends[backend].Balance)
		}
		p := d.Where(user)
		s := p.Server
		if s == "" {
			s = "(no usable server)"
		}
		if strings.HasPrefix(p.Reason, "sticky") {
			s += " (" + p.Reason + ")"
		}
		return s
	}
	if ctx.frontend == "" {
		for _, name := range cfg.BackendNames() {
			if dirs[name] == nil {
				continue
			}
			for _, u := range users {
				fmt.Fprintf(stdout, "%-24s backend %-12s server %s\n", u, name, server(name, u))
			}
		}
	}
	for _, name := range cfg.FrontendNames() {
		f := cfg.Frontends[name]
		if ctx.frontend != name && (ctx.frontend != "" || len(f.Route) == 0) {
			continue
		}
		for _, u := range users {
			d, unless := routeFor(cfg, f, u, ctx)
			fmt.Fprintf(stdout, "%-24s frontend %-11s backend %-12s server %s by %s\n", u, name, d.Backend, server(d.Backend, u), d)
			for _, s := range unless {
				fmt.Fprintf(stdout, "%-24s   unless %s\n", "", s)
			}
		}
	}
	return 0
}
