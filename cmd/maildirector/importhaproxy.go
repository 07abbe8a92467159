package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/internal/haproxycfg"
)

// cmdImportHAProxy translates an HAProxy configuration into a maildirector
// one (package haproxycfg): the TOML on standard output (or -o FILE), a
// warning on standard error for every line that could not be carried over,
// naming it. The result is checked as `maildirector check` would read it
// (certificate files included); exit 1 when it does not pass.
func cmdImportHAProxy(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("import-haproxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write the configuration to this file instead of standard output")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: maildirector import-haproxy [-o FILE] haproxy.cfg\n\n"+
			"Prints an equivalent maildirector configuration, and a warning for every line it could not translate.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	name := fs.Arg(0)
	f, err := os.Open(name)
	if err != nil {
		fmt.Fprintf(stderr, "maildirector import-haproxy: %v\n", err)
		return 1
	}
	parsed, err := haproxycfg.Parse(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(stderr, "maildirector import-haproxy: %s: %v\n", name, err)
		return 1
	}
	res := haproxycfg.Translate(parsed)
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "%s:%d: %s: %s\n", name, w.Line, w.Text, w.Why)
	}
	if *out != "" {
		if err := os.WriteFile(*out, res.TOML, 0o644); err != nil {
			fmt.Fprintf(stderr, "maildirector import-haproxy: %v\n", err)
			return 1
		}
	} else if _, err := stdout.Write(res.TOML); err != nil {
		return 1
	}
	fmt.Fprintf(stderr, "%s: %d lines not translated (above)\n", name, len(res.Warnings))
	if _, err := config.Parse(res.TOML); err != nil {
		fmt.Fprintln(stderr, "the translated configuration does not pass maildirector check yet:")
		for _, e := range flatten(err) {
			fmt.Fprintln(stderr, "  "+e)
		}
		return 1
	}
	return 0
}
