package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/director"
)

// cmdWhere prints, from the configuration alone, which server each user is
// hashed to on every backend balanced by user. A freshly started
// maildirector (or any node with the same configuration) places users
// there while all servers are up; a running one may differ for users with
// a sticky assignment elsewhere.
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
	for _, name := range cfg.BackendNames() {
		bc := cfg.Backends[name]
		if bc.Balance != config.BalanceUser {
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
		for _, u := range users {
			server := "(no usable server)"
			if order := d.HashOrder(u); len(order) > 0 {
				server = order[0]
			}
			fmt.Fprintf(stdout, "%-24s backend %-12s server %s\n", u, name, server)
		}
	}
	return 0
}
