// Command maildirector is a mail-protocol-aware load balancer and director
// for Dovecot fleets: one front door for IMAP, POP3, LMTP, submission and
// plain TCP that sends every user to the same backend server, notices sick
// servers and tells Dovecot who the real client is.
//
//	maildirector check -c /etc/maildirector/maildirector.toml
//	maildirector run   -c /etc/maildirector/maildirector.toml
//	maildirector ctl show servers
//	maildirector version
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
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
	case "version", "-v", "--version":
		fmt.Fprintf(stdout, "maildirector %s\n", version)
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
  check   -c FILE   validate FILE: exit 0 with a summary, or exit 1 listing every problem by key path
  where   -c FILE USER...  which server each user is hashed to on every backend balanced by user
  ctl     [-s SOCKET] [--json] COMMAND...  steer a running instance (ctl help lists the commands)
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
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return "", nil, false
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
	return *path, rest, true
}
