package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// defaultSocket is where `maildirector ctl` looks without -s: the path the
// sample configuration and the systemd unit use.
const defaultSocket = "/run/maildirector/ctl.sock"

// ctlTimeout bounds one command: freeze waits up to freezeSettle, a
// reload reads certificates.
const ctlTimeout = 2 * time.Minute

// cmdCtl sends one command to a running maildirector's control socket and
// prints the answer: a human table, or JSON with --json. An error answer
// goes to stderr and exits 1.
func cmdCtl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sock := fs.String("s", defaultSocket, "control socket (control.socket in the configuration)")
	asJSON := fs.Bool("json", false, "answer in JSON, for scripts")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: maildirector ctl [-s SOCKET] [--json] COMMAND...\n\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\n`maildirector ctl help` lists the commands.\n")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	words := fs.Args()
	if len(words) == 0 {
		fs.Usage()
		return 2
	}
	line := strings.Join(words, " ")
	if strings.ContainsAny(line, "\r\n") {
		fmt.Fprintln(stderr, "maildirector ctl: a command is one line")
		return 2
	}
	if *asJSON {
		line += " --json"
	}
	answer, err := ctlDo(*sock, line)
	if err != nil {
		fmt.Fprintf(stderr, "maildirector ctl: %v\n", err)
		return 1
	}
	if strings.HasPrefix(answer, "error: ") || strings.HasPrefix(answer, `{"error":`) {
		fmt.Fprintln(stderr, answer)
		return 1
	}
	fmt.Fprintln(stdout, answer)
	return 0
}

// ctlDo sends line and reads the answer up to its empty line.
func ctlDo(sock, line string) (string, error) {
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w (is maildirector running with control.socket set?)", sock, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(ctlTimeout))
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		return "", err
	}
	br := bufio.NewReader(conn)
	var lines []string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && len(lines) > 0 {
				break
			}
			return "", fmt.Errorf("read the answer: %w", err)
		}
		l = strings.TrimRight(l, "\r\n")
		if l == "" {
			break
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n"), nil
}
