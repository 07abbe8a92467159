package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/internal/doveconf"
)

// checkArgs are check's flags: the configuration and the Dovecot
// backends' doveconf outputs to lint it against.
type checkArgs struct {
	path    string
	dovecot []string // files of `doveconf -n` (or -a) output
	source  string   // maildirector's source address toward the servers; "" asks the kernel
}

// parseCheckArgs reads "check -c FILE [--dovecot DOVECONF]... [--source IP]".
func parseCheckArgs(args []string, stderr io.Writer) (checkArgs, bool) {
	var a checkArgs
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&a.path, "c", defaultConfig, "configuration file")
	fs.Func("dovecot", "`doveconf -n` output of a Dovecot backend to check the pairing against (repeatable)", func(s string) error {
		a.dovecot = append(a.dovecot, s)
		return nil
	})
	fs.StringVar(&a.source, "source", "", "the address maildirector connects to the servers from (default: the kernel's route from this host)")
	if err := fs.Parse(args); err != nil {
		return a, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "maildirector check: unexpected argument %q\n", fs.Arg(0))
		return a, false
	}
	return a, true
}

// lintDovecot checks cfg against each doveconf output: every mismatch that
// breaks or weakens the pairing, with the key on both sides. It returns
// check's exit code: 1 when any output has a mismatch or cannot be read.
func lintDovecot(cfg *config.Config, a checkArgs, stdout, stderr io.Writer) int {
	src := kernelSource
	if a.source != "" {
		ip, err := netip.ParseAddr(a.source)
		if err != nil {
			fmt.Fprintf(stderr, "maildirector check: --source %q: %v\n", a.source, err)
			return 2
		}
		src = func(string, int) (netip.Addr, error) { return ip, nil }
	}
	code := 0
	for _, name := range a.dovecot {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "dovecot %s: %v\n", name, err)
			code = 1
			continue
		}
		conf, err := doveconf.Parse(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "dovecot %s: not doveconf output: %v\n", name, err)
			code = 1
			continue
		}
		findings, notes := doveconf.Lint(cfg, conf, doveconf.LintOptions{Source: src})
		for _, n := range notes {
			fmt.Fprintf(stdout, "dovecot %s: note: %s\n", name, n)
		}
		if len(findings) == 0 {
			fmt.Fprintf(stdout, "dovecot %s: OK: no mismatch with Dovecot %s\n", name, or(conf.Version, "(version unknown)"))
			continue
		}
		code = 1
		fmt.Fprintf(stderr, "dovecot %s: %d mismatches:\n", name, len(findings))
		for _, f := range findings {
			fmt.Fprintf(stderr, "  %s\n", f)
		}
	}
	return code
}

// kernelSource is the address the kernel would send from to host:port
// (a UDP socket's connect sends nothing).
func kernelSource(host string, port int) (netip.Addr, error) {
	c, err := net.Dial("udp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	ap, err := netip.ParseAddrPort(c.LocalAddr().String())
	if err != nil {
		return netip.Addr{}, err
	}
	return ap.Addr().Unmap(), nil
}

func or(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}
