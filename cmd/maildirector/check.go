package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/maildirector/maildirector/config"
)

// cmdCheck validates a configuration file the way `run` and a reload would.
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("check", args, stderr)
	if !ok {
		return 2
	}
	cfg, err := config.Load(path)
	if err != nil {
		for _, e := range flatten(err) {
			fmt.Fprintln(stderr, e)
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK: %s\n", path, cfg.Summary())
	return 0
}

// flatten lists the problems in err, one per line (config.Load joins them).
func flatten(err error) []string {
	return strings.Split(strings.TrimSpace(err.Error()), "\n")
}
