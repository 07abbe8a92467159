package main

import (
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/director"
	"github.com/maildirector/maildirector/internal/doveadm"
)

// cmdImportDirector takes over a Dovecot 2.3 director's placements: it reads
// `doveadm director map` output (and optionally `status` or `dump` output,
// to compare the servers), and writes every named, unexpired assignment
// into control.state_file, where a starting maildirector restores it with
// the director's own expiry (runState.applyTo, director.Assign). It refuses
// while maildirector runs: a running instance writes its own state over the
// file.
//
//	doveadm director map -f users.txt > map.txt
//	doveadm director status >> map.txt
//	maildirector import-director -c /etc/maildirector/maildirector.toml map.txt
func cmdImportDirector(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import-director", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", defaultConfig, "configuration file")
	backendName := fs.String("b", "", "backend to import into (default: the one with balance \"director\")")
	dryRun := fs.Bool("n", false, "report what would be imported; write nothing")
	tz := fs.String("tz", "Local", "the director's time zone, in which doveadm printed the expire times")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: maildirector import-director [-c FILE] [-b BACKEND] [-n] [-tz ZONE] [FILE...]\n\n"+
			"Reads `doveadm director map -f USERS` output (and optionally `doveadm director status` or `dump`)\n"+
			"from the files or standard input, and writes the assignments into control.state_file.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		fmt.Fprintf(stderr, "maildirector import-director: -tz: %v\n", err)
		return 2
	}
	cfg, err := config.LoadRouting(*path)
	if err != nil {
		fmt.Fprintf(stderr, "%s: configuration is invalid:\n  %s\n", *path, strings.Join(flatten(err), "\n  "))
		return 1
	}
	bc, err := importBackend(cfg, *backendName)
	if err != nil {
		fmt.Fprintf(stderr, "maildirector import-director: %v\n", err)
		return 1
	}
	out, err := readDirectorOutput(fs.Args(), loc)
	if err != nil {
		fmt.Fprintf(stderr, "maildirector import-director: %v\n", err)
		return 1
	}
	imp, err := planImport(bc, out, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "maildirector import-director: backend.%s: %v\n", bc.Name, err)
		return 1
	}
	for _, w := range imp.warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	target := cfg.Control.StateFile
	switch {
	case *dryRun:
		target = "(not written: -n)"
	case target == "":
		fmt.Fprintln(stderr, "maildirector import-director: control.state_file is not set: set it, so that maildirector restores the assignments at start")
		return 1
	default:
		if err := refuseWhileRunning(cfg.Control.Socket); err != nil {
			fmt.Fprintf(stderr, "maildirector import-director: %v\n", err)
			return 1
		}
		st, err := loadState(target)
		if err == nil {
			err = st.importAssignments(bc.Name, imp.moves, time.Now())
		}
		if err != nil {
			fmt.Fprintf(stderr, "maildirector import-director: %v\n", err)
			return 1
		}
	}
	fmt.Fprintf(stdout, "backend %s: %d assignments imported (%d of them away from where the ring puts the user now), %d expired, %d not imported; %s\n",
		bc.Name, len(imp.moves), imp.away, imp.expired, imp.skipped, target)
	return 0
}

// importBackend is the backend named by -b, else the only backend with
// balance "director".
func importBackend(cfg *config.Config, name string) (*config.Backend, error) {
	if name != "" {
		bc := cfg.Backends[name]
		if bc == nil {
			return nil, fmt.Errorf("-b %s: no such backend", name)
		}
		if bc.Balance == config.BalanceSource {
			return nil, fmt.Errorf("-b %s: balance \"source\" keeps no assignments", name)
		}
		return bc, nil
	}
	var found []string
	for _, n := range cfg.BackendNames() {
		if cfg.Backends[n].Balance == config.BalanceDirector {
			found = append(found, n)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("%d backends have balance \"director\" (%s): name one with -b", len(found), strings.Join(found, ", "))
	}
	return cfg.Backends[found[0]], nil
}

// readDirectorOutput parses the files, or standard input without any.
func readDirectorOutput(files []string, loc *time.Location) (*doveadm.Output, error) {
	if len(files) == 0 {
		return doveadm.Parse(os.Stdin, loc)
	}
	all := new(doveadm.Output)
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return nil, err
		}
		out, err := doveadm.Parse(f, loc)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for i := range out.Problems {
			out.Problems[i].Text = name + ": " + out.Problems[i].Text
		}
		all.Assignments = append(all.Assignments, out.Assignments...)
		all.Hosts = append(all.Hosts, out.Hosts...)
		all.Problems = append(all.Problems, out.Problems...)
	}
	return all, nil
}

// directorImport is what an import would write, and what it has to say.
type directorImport struct {
	moves    map[string]move // by user name, as the map printed it
	away     int             // assignments off the user's ring placement now
	expired  int             // assignments past their expiry: nothing to keep
	skipped  int             // assignments that cannot be imported
	warnings []string
}

// planImport matches the director's output with backend bc: assignments
// to its servers by IP, the director's servers with the configured ones.
func planImport(bc *config.Backend, out *doveadm.Output, now time.Time) (*directorImport, error) {
	imp := &directorImport{moves: make(map[string]move)}
	warn := func(format string, a ...any) { imp.warnings = append(imp.warnings, fmt.Sprintf(format, a...)) }
	for _, p := range out.Problems {
		warn("%s", p)
	}
	opts, err := directorOptions(bc)
	if err != nil {
		return nil, err
	}
	d, err := director.New(opts)
	if err != nil {
		return nil, err
	}
	byIP := make(map[netip.Addr]int)
	for i, s := range bc.Servers {
		if ip, err := netip.ParseAddr(s.Host()); err == nil {
			byIP[ip.Unmap()] = i
		}
	}
	serverAt := func(i int) string { return fmt.Sprintf("backend.%s.server[%d] (%s)", bc.Name, i, bc.Servers[i].Name) }

	// The director's servers against the configuration.
	for _, h := range out.Hosts {
		i, ok := byIP[h.IP]
		switch {
		case h.Removed:
			if ok {
				warn("line %d: the director removed %s, but %s has it", h.Line, h.IP, serverAt(i))
			}
		case !ok:
			warn("line %d: the director has server %s, which backend.%s lacks: its users would move", h.Line, h.IP, bc.Name)
		case bc.Balance == config.BalanceDirector && h.VhostCount >= 0 && h.VhostCount != bc.Servers[i].VhostCount:
			warn("line %d: the director gives %s vhost_count %d, %s has vhost_count = %d: users would move; set it to %d",
				h.Line, h.IP, h.VhostCount, serverAt(i), bc.Servers[i].VhostCount, h.VhostCount)
		}
		if ok && h.State == "down" && bc.Servers[i].State == config.ServerStateReady {
			warn("line %d: the director has %s down; %s takes users as soon as its checks pass (state = \"maint\" keeps it out)", h.Line, h.IP, serverAt(i))
		}
	}

	// The assignments.
	for _, a := range out.Assignments {
		i, ok := byIP[a.IP]
		switch {
		case a.User == "":
			imp.skipped++
			warn("line %d: hash %d on %s has no user name (give doveadm director map the user list: -f FILE); not imported", a.Line, a.Hash, a.IP)
			continue
		case !ok:
			imp.skipped++
			warn("line %d: %s is on %s, which backend.%s lacks; not imported", a.Line, a.User, a.IP, bc.Name)
			continue
		case !a.Expires.After(now):
			imp.expired++
			continue
		}
		if bc.Balance == config.BalanceDirector {
			if h, err := director.UserHash(bc.DirectorUsernameHash, a.User); err == nil && h != a.Hash {
				warn("line %d: %s: the director's hash is %d, backend.%s.director_username_hash = %q gives %d: set it to the director's director_username_hash",
					a.Line, a.User, a.Hash, bc.Name, bc.DirectorUsernameHash, h)
			}
		}
		if prev, dup := imp.moves[a.User]; dup && prev.Server != bc.Servers[i].Name {
			warn("line %d: %s appears twice, on two servers; the later line counts", a.Line, a.User)
		}
		imp.moves[a.User] = move{Server: bc.Servers[i].Name, At: now, Expires: a.Expires}
		if order := d.HashOrder(a.User); len(order) == 0 || order[0] != bc.Servers[i].Name {
			imp.away++
		}
	}
	return imp, nil
}

// importAssignments merges imported assignments into the backend's moves
// and saves the state: an operator's move of a user gives way to the
// director's newer word; imported assignments already expired are dropped.
func (st *runState) importAssignments(backend string, moves map[string]move, now time.Time) error {
	return st.update(func() {
		if st.Moves == nil {
			st.Moves = make(map[string]map[string]move)
		}
		m := st.Moves[backend]
		if m == nil {
			m = make(map[string]move)
			st.Moves[backend] = m
		}
		for u, old := range m {
			if !old.Expires.IsZero() && !old.Expires.After(now) {
				delete(m, u)
			}
		}
		maps.Copy(m, moves)
	})
}

// refuseWhileRunning fails when a maildirector answers on socket: it would
// save its own state over the file at its next change.
func refuseWhileRunning(socket string) error {
	if socket == "" {
		return nil
	}
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return nil // no socket, or a stale one nobody listens on
	}
	c.Close()
	return fmt.Errorf("maildirector is running (control socket %s answers): stop it, import, then start it; a running instance saves its own state over the file", socket)
}
