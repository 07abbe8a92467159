// Command dovecotlab runs a set of real Dovecot instances on loopback, plus
// an SMTP sink for their submission relay, until SIGINT or SIGTERM. `make
// demo` uses it to give maildirector backends to direct.
//
//	go run ./cmd/dovecotlab -instances 2 -dir .demo/lab -fixed-ports
//
// With -fixed-ports, instance N (1-based) listens on port-base + (N-1)*1000
// plus the protocol's well-known port; with the default -port-base 10000:
//
//	instance 1: imap 10143, pop3 10110, lmtp 10024, submission 10587 (PROXY header required)
//	            direct imap 10144, pop3 10111, lmtp 10025
//	instance 2: 11143, 11110, 11024, 11587; direct 11144, 11111, 11025
//
// and the SMTP sink listens on 127.0.0.1:(port-base+26). Every user
// (user000 …, alice, bob) has the password "pass". The line starting with
// "ready:" is printed once every instance answers; on any failure the
// command exits 1 with the failing instance's error.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/maildirector/maildirector/internal/dovecotlab"
	"github.com/maildirector/maildirector/internal/smtpsink"
)

// maxFixedInstances keeps fixed ports within ten thousand of the base.
const maxFixedInstances = 9

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "dovecotlab:", err)
		os.Exit(1)
	}
}

func run() error {
	instances := flag.Int("instances", 2, "number of Dovecot instances")
	dir := flag.String("dir", ".demo/lab", "directory for the instances' config, logs and maildirs (kept)")
	fixed := flag.Bool("fixed-ports", false, "use the fixed demo ports (10143, 11143, …) instead of free ones")
	portBase := flag.Int("port-base", 10000, "with -fixed-ports: instance N uses port-base+(N-1)*1000 plus the protocol's port")
	users := flag.Int("users", dovecotlab.DefaultUsers, "number of users user000 … per instance")
	sinkAddr := flag.String("sink", "auto", `listen address of the SMTP sink that submission relays to; "auto": 127.0.0.1:(port-base+26); empty: none`)
	pidFile := flag.String("pidfile", "", "pid file (default DIR/dovecotlab.pid)")
	verbose := flag.Bool("v", false, "log instance starts and stops")
	flag.Parse()

	opts := dovecotlab.Options{Dir: *dir, Instances: *instances, Users: *users}
	if *verbose {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if *fixed {
		if *instances > maxFixedInstances {
			return fmt.Errorf("-fixed-ports supports at most %d instances", maxFixedInstances)
		}
		if *portBase < 1024 || *portBase+maxFixedInstances*1000 > 65535 {
			return fmt.Errorf("-port-base %d: want 1024..%d", *portBase, 65535-maxFixedInstances*1000)
		}
		for n := 1; n <= *instances; n++ {
			opts.Ports = append(opts.Ports, FixedPorts(*portBase, n))
		}
	}
	if *sinkAddr == "auto" {
		*sinkAddr = "127.0.0.1:" + strconv.Itoa(*portBase+26)
	}

	var sink *smtpsink.Sink
	if *sinkAddr != "" {
		var err error
		if sink, err = smtpsink.Listen(*sinkAddr); err != nil {
			return fmt.Errorf("start smtp sink: %w", err)
		}
		defer sink.Close()
		opts.SubmissionRelay = sink.Addr()
	}

	lab, err := dovecotlab.Start(opts)
	if err != nil {
		return err
	}
	defer lab.Close()

	if *pidFile == "" {
		*pidFile = filepath.Join(lab.Dir, "dovecotlab.pid")
	}
	if err := os.WriteFile(*pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	defer os.Remove(*pidFile)

	for _, inst := range lab.Instances {
		p := inst.Ports
		fmt.Printf("%s: imap %d pop3 %d lmtp %d submission %d (PROXY header required); direct imap %d pop3 %d lmtp %d; log %s\n",
			inst.Name, p.IMAP, p.POP3, p.LMTP, p.Submission, p.IMAPDirect, p.POP3Direct, p.LMTPDirect, inst.LogPath)
	}
	if sink != nil {
		fmt.Printf("smtp sink: %s (submission relay)\n", sink.Addr())
	}
	fmt.Printf("ready: users user000 … user%03d, alice, bob; password %q; pid %d in %s; Ctrl-C stops\n",
		len(lab.Users)-3, dovecotlab.Password, os.Getpid(), *pidFile)

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	sig := <-sigs
	fmt.Printf("%v: stopping\n", sig)
	if sink != nil {
		fmt.Printf("smtp sink received %d messages\n", len(sink.Messages()))
	}
	return errors.Join(lab.Close(), closeSink(sink))
}

func closeSink(s *smtpsink.Sink) error {
	if s == nil {
		return nil
	}
	return s.Close()
}

// FixedPorts are the demo ports of instance n (1-based): base+(n-1)*1000
// plus the protocol's well-known port, the direct ports one above.
func FixedPorts(portBase, n int) dovecotlab.InstancePorts {
	base := portBase + (n-1)*1000
	return dovecotlab.InstancePorts{
		IMAP: base + 143, IMAPDirect: base + 144,
		POP3: base + 110, POP3Direct: base + 111,
		LMTP: base + 24, LMTPDirect: base + 25,
		Submission: base + 587,
	}
}
