// Command maildirector is a mail-protocol-aware load balancer and director
// for Dovecot fleets: one front door for IMAP, POP3, LMTP, submission and
// plain TCP that sends every user to the same backend server, notices sick
// servers and tells Dovecot who the real client is.
//
//	maildirector check -c /etc/maildirector/maildirector.toml
//	maildirector run   -c /etc/maildirector/maildirector.toml
//	maildirector ctl show servers
//	maildirector check -c maildirector.toml --dovecot mail1.doveconf
//	maildirector import-haproxy /etc/haproxy/haproxy.cfg
//	maildirector import-director -c maildirector.toml director-map.txt
//	maildirector version
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/maildirector/maildirector/internal/rsasign"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

const defaultConfig = "/etc/maildirector/maildirector.toml"

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		return cmdRun(rest, stderr)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "where":
		return cmdWhere(rest, stdout, stderr)
	case "ctl":
		return cmdCtl(rest, stdout, stderr)
	case "import-director":
		return cmdImportDirector(rest, stdout, stderr)
	case "import-haproxy":
		return cmdImportHAProxy(rest, stdout, stderr)
	case "version", "-v", "--version":
		fmt.Fprintf(stdout, "maildirector %s\nRSA signatures: %s\n", version, rsasign.Engine())
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "maildirector: unknown command %q\n", cmd)
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: maildirector <command> [flags]

commands:
  run     -c FILE   serve the frontends in FILE (SIGHUP reloads, SIGTERM/SIGINT shut down gracefully)
          [--upgrade-from SOCKET]  first take the listening sockets over from the maildirector
                    whose control socket that is, then tell it to drain (ctl upgrade does this)
  check   -c FILE [--dovecot DOVECONF]... [--source IP]
                    validate FILE: exit 0 with a summary, or exit 1 listing every problem by key path;
                    with --dovecot, also every mismatch with a backend's doveconf -n output
  where   -c FILE USER...  which server each user is hashed to on every backend balanced by user
  ctl     [-s SOCKET] [--json] COMMAND...  steer a running instance (ctl help lists the commands)
  import-director [-c FILE] [-b BACKEND] [-n] [FILE...]
                    take over a Dovecot 2.3 director's assignments (doveadm director map
                    output) into control.state_file, restored at start with their expiry
  import-haproxy [-o FILE] haproxy.cfg
                    print an equivalent configuration; a warning names every line not translated
  version           print the version
`)
}

// configFlag parses "-c FILE" and allows no other argument.
func configFlag(name string, args []string, stderr io.Writer) (string, bool) {
	path, rest, ok := configFlagArgs(name, args, stderr)
	if ok && len(rest) > 0 {
		fmt.Fprintf(stderr, "maildirector %s: unexpected argument %q\n", name, rest[0])
		return "", false
	}
	return path, ok
}

// configFlagArgs parses "-c FILE" and returns the remaining arguments.
// Flags may stand anywhere ("where alice -c FILE" as well as "where -c
// FILE alice"); after "--" everything is an argument.
func configFlagArgs(name string, args []string, stderr io.Writer) (string, []string, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("c", defaultConfig, "configuration file")
	rest, ok := parseInterleaved(fs, args)
	return *path, rest, ok
}

// parseInterleaved parses fs's flags anywhere among args (before, between
// or after the operands, up to a "--") and returns the operands.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, bool) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, false
		}
		left := fs.Args()
		if len(left) == 0 {
			break
		}
		if consumed := args[:len(args)-len(left)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			rest = append(rest, left...) // flag stopped at "--"
			break
		}
		rest, args = append(rest, left[0]), left[1:]
	}
	return rest, true
}
