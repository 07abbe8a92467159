package main

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/maildirector/maildirector/config"
)

// cmdCheck validates a configuration file the way `run` and a reload would,
// and with --dovecot its pairing with the Dovecot backends (lintcheck.go).
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	a, ok := parseCheckArgs(args, stderr)
	if !ok {
		return 2
	}
	path := a.path
	cfg, err := config.Load(path)
	if err != nil {
		for _, e := range flatten(err) {
			fmt.Fprintln(stderr, e)
		}
		return 1
	}
	if err := dryRun(cfg); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", path, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK: %s\n", path, cfg.Summary())
	if len(a.dovecot) > 0 {
		return lintDovecot(cfg, a, stdout, stderr)
	}
	return 0
}

// dryRun builds everything `run` would build from cfg (directors,
// checkers, frontends with their TLS certificates and handlers) and throws
// it away, so that `check` refuses what `run` refuses. Only binding the
// listeners is left out.
func dryRun(cfg *config.Config) error {
	rt := &runtime{log: slog.New(slog.DiscardHandler), backends: map[string]*backend{}}
	rt.mu.Lock()
	defer rt.mu.Unlock()
	b, err := rt.buildLocked(cfg)
	if err != nil {
		return err
	}
	rt.abortLocked(b)
	return nil
}

// flatten lists the problems in err, one per line (config.Load joins them).
func flatten(err error) []string {
	return strings.Split(strings.TrimSpace(err.Error()), "\n")
}
