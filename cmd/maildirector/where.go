package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/director"
)

// cmdWhere prints, from the configuration, which server each user goes to
// on every backend balanced by user name (balance "user" or "director"): a
// freshly started maildirector (or any node with the same configuration)
// places users there while all servers are up. With control.state_file the
// moves and imported assignments it holds count too, as they do at start
// (the sticky ones are marked); a running maildirector may differ for users
// with a sticky assignment made since (ask it: ctl where).
func cmdWhere(args []string, stdout, stderr io.Writer) int {
	path, users, ok := configFlagArgs("where", args, stderr)
	if !ok {
		return 2
	}
	if len(users) == 0 {
		fmt.Fprintln(stderr, "usage: maildirector where [-c FILE] USER...")
		return 2
	}
	// Only the routing is needed: certificates and keys stay unread, so an
	// admin who cannot read the private keys can still ask.
	cfg, err := config.LoadRouting(path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: configuration is invalid:\n  %s\n", path, strings.Join(flatten(err), "\n  "))
		return 1
	}
	st, err := loadState(cfg.Control.StateFile)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
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
		for _, u := range users {
			p := d.Where(u)
			server, note := p.Server, ""
			if server == "" {
				server = "(no usable server)"
			}
			if strings.HasPrefix(p.Reason, "sticky") {
				note = " (" + p.Reason + ")"
			}
			fmt.Fprintf(stdout, "%-24s backend %-12s server %s%s\n", u, name, server, note)
		}
	}
	return 0
}
