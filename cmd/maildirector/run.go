package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/internal/logsink"
	"github.com/maildirector/maildirector/internal/rsasign"
	"github.com/maildirector/maildirector/proxy"
)

// cmdRun serves until SIGTERM or SIGINT. SIGHUP reloads the configuration:
// the new file is loaded and validated and only then swapped in; if
// anything fails the running configuration stays and the log says why.
// SIGUSR1 reopens the log file (after logrotate renamed it) and reconnects
// to syslog. Listening sockets passed by systemd (socket activation) are
// used for their addresses; with --upgrade-from SOCKET the process takes
// over the listening sockets of the maildirector whose control socket that
// is, and tells it to drain once it serves (README "Upgrade").
func cmdRun(args []string, stderr io.Writer) int {
	path, upgradeFrom, ok := runFlags(args, stderr)
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
	level := new(slog.LevelVar)
	level.Set(cfg.Global.LogLevel.SlogLevel())
	log, sinks, err := openLog(&cfg.Global, stderr, level)
	if err != nil {
		fmt.Fprintln(stderr, "cannot start:", err)
		return 1
	}
	defer sinks.close()
	// Caught from here on: SIGHUP and SIGUSR1 would otherwise end the
	// process (logrotate may send SIGUSR1 while it starts).
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT)

	inh := &inherited{}
	lns, err := systemdListeners()
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	inh.add(lns)
	var up *upgradeConn
	if upgradeFrom != "" {
		if up, lns, err = takeListeners(upgradeFrom); err != nil {
			log.Error("cannot start: the running process keeps serving", "err", err)
			return 1
		}
		inh.add(lns)
		log.Info("took over the listening sockets of the running process", "from", upgradeFrom, "sockets", len(lns))
	}
	rt, err := newRuntime(cfg, log, path, level, inh)
	if err != nil {
		log.Error("cannot start", "err", err)
		if up != nil {
			up.conn.Close() // the old process goes on as if nothing happened
		}
		return 1
	}
	inh.closeUnused(log)
	log.Info("maildirector started", "version", version, "config", path, "summary", cfg.Summary(), "rsa_signatures", rsasign.Engine())
	if up != nil {
		// Under systemd the previous process started this one (ctl
		// upgrade): this is the main process from now on.
		rt.notify.mainPID(rt.statusLine())
		if err := up.handOver(); err != nil {
			log.Warn("the process upgraded from did not confirm the handover: both serve until it is stopped", "err", err)
		} else {
			log.Info("upgrade: the previous process drains and exits")
		}
	} else {
		rt.notify.ready(rt.statusLine())
	}
	statusCtx, stopStatus := context.WithCancel(context.Background())
	defer stopStatus()
	go rt.runStatus(statusCtx)

	handover := rt.handover   // closed when a new process took the sockets over
	var stopped chan struct{} // closed when a graceful shutdown has ended; nil before it starts
	for {
		select {
		case sig := <-sigs:
			switch {
			case sig == syscall.SIGHUP:
				rt.reload()
			case sig == syscall.SIGUSR1:
				sinks.reopen(log)
			case stopped == nil:
				grace := rt.currentConfig().Global.ShutdownGrace.D()
				log.Info("shutting down", "signal", sig.String(), "grace", grace)
				rt.notify.stopping("stopping: " + rt.statusLine())
				stopped = make(chan struct{})
				go rt.shutdownAndSignal(grace, stopped)
			default:
				// A second SIGTERM/SIGINT while draining: close everything now.
				log.Warn("second signal: closing all sessions now", "signal", sig.String())
				rt.srv.Close()
			}
		case <-handover:
			handover = nil
			if stopped == nil {
				grace := rt.currentConfig().Global.ShutdownGrace.D()
				log.Info("shutting down after an upgrade: the new process serves", "grace", grace)
				stopped = make(chan struct{})
				go rt.shutdownAndSignal(grace, stopped)
			}
		case <-stopped:
			return 0
		}
	}
}

// runFlags parses run's flags: "-c FILE" and "--upgrade-from SOCKET".
func runFlags(args []string, stderr io.Writer) (path, upgradeFrom string, ok bool) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&path, "c", defaultConfig, "configuration file")
	fs.StringVar(&upgradeFrom, "upgrade-from", "", "take over the listening sockets of the maildirector whose control socket this is, then tell it to drain")
	if err := fs.Parse(args); err != nil {
		return "", "", false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "maildirector run: unexpected argument %q\n", fs.Arg(0))
		return "", "", false
	}
	return path, upgradeFrom, true
}

// shutdownAndSignal runs the graceful shutdown and closes done when it ends.
func (rt *runtime) shutdownAndSignal(grace time.Duration, done chan<- struct{}) {
	if err := rt.shutdown(grace); err != nil {
		rt.log.Warn("sessions still open at the end of the grace period were closed", "err", err)
	}
	rt.log.Info("maildirector stopped")
	close(done)
}

// logSinks are where the log goes besides stderr; nil fields are not in use.
type logSinks struct {
	file   *logsink.File
	syslog *logsink.Syslog
}

// openLog builds the logger g asks for: lines in text or JSON to
// log_file, to syslog, to both, or (neither set) to stderr.
func openLog(g *config.Global, stderr io.Writer, level *slog.LevelVar) (*slog.Logger, *logSinks, error) {
	opts := &slog.HandlerOptions{Level: level}
	newHandler := func(w io.Writer) slog.Handler {
		if g.LogFormat == config.LogFormatJSON {
			return slog.NewJSONHandler(w, opts)
		}
		return slog.NewTextHandler(w, opts)
	}
	sinks := &logSinks{}
	var handlers []slog.Handler
	if g.LogFile != "" {
		f, err := logsink.OpenFile(g.LogFile)
		if err != nil {
			return nil, nil, err
		}
		sinks.file = f
		handlers = append(handlers, newHandler(f))
	}
	if g.Syslog != "" {
		s, err := logsink.DialSyslog(g.Syslog, logsink.SyslogOptions{Facility: g.SyslogFacility.Code(), Tag: g.SyslogTag})
		if err != nil {
			sinks.close()
			return nil, nil, err
		}
		sinks.syslog = s
		handlers = append(handlers, s.Handler(newHandler))
	}
	switch len(handlers) {
	case 0:
		return slog.New(newHandler(stderr)), sinks, nil
	case 1:
		return slog.New(handlers[0]), sinks, nil
	}
	return slog.New(slog.NewMultiHandler(handlers...)), sinks, nil
}

// reopen opens the log file again by name and reconnects to syslog; it
// logs how that went (a failed reopen leaves the old file or connection).
func (s *logSinks) reopen(log *slog.Logger) {
	if s.file != nil {
		if err := s.file.Reopen(); err != nil {
			log.Error("cannot reopen the log file, still writing to the old one", "log_file", s.file.Path(), "err", err)
		} else {
			log.Info("log file reopened", "log_file", s.file.Path())
		}
	}
	if s.syslog != nil {
		if err := s.syslog.Reopen(); err != nil {
			log.Error("cannot reconnect to syslog, trying again with the next line", "err", err)
		}
	}
}

// close closes the sinks in use.
func (s *logSinks) close() {
	if s.file != nil {
		s.file.Close()
	}
	if s.syslog != nil {
		s.syslog.Close()
	}
}

// reload applies the configuration file again, or keeps everything as it
// is and says why (SIGHUP, `maildirector ctl reload`).
func (rt *runtime) reload() error {
	rt.mu.Lock()
	handedOver := rt.handedOver
	rt.mu.Unlock()
	if handedOver {
		err := errors.New("this process has handed its sockets over to a new one and is draining: reload that one")
		rt.log.Error("reload refused", "err", err)
		return err
	}
	rt.notify.reloading()
	path := rt.path
	old := rt.currentConfig()
	cfg, err := config.Load(path)
	if err == nil {
		err = rt.apply(cfg)
	}
	if err != nil {
		rt.log.Error("reload failed, keeping the running configuration", "config", path, "err", err)
		rt.notify.ready("reload failed, running the previous configuration; " + rt.statusLine())
		return err
	}
	defer rt.notify.ready(rt.statusLine())
	rt.level.Set(cfg.Global.LogLevel.SlogLevel())
	attrs := []any{"config", path, "summary", cfg.Summary()}
	if keys := restartKeys(old, cfg); len(keys) > 0 {
		attrs = append(attrs, "needs_restart", strings.Join(keys, ","))
	}
	rt.log.Info("configuration reloaded", attrs...)
	return nil
}

// restartKeys lists the changed keys that a reload cannot apply: they take
// effect at the next start, and the reload's log line says so.
func restartKeys(old, cfg *config.Config) []string {
	var keys []string
	if old.Global.MaxConn != cfg.Global.MaxConn {
		keys = append(keys, "global.maxconn")
	}
	for _, k := range []struct {
		key      string
		old, new string
	}{
		{"global.log_format", string(old.Global.LogFormat), string(cfg.Global.LogFormat)},
		{"global.log_file", old.Global.LogFile, cfg.Global.LogFile},
		{"global.syslog", old.Global.Syslog, cfg.Global.Syslog},
		{"global.syslog_facility", string(old.Global.SyslogFacility), string(cfg.Global.SyslogFacility)},
		{"global.syslog_tag", old.Global.SyslogTag, cfg.Global.SyslogTag},
	} {
		if k.old != k.new {
			keys = append(keys, k.key)
		}
	}
	return keys
}

func (rt *runtime) currentConfig() *config.Config {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.cfg
}

// closeServerSessions ends the live sessions of a server marked down, for
// on_marked_down = "shutdown-sessions".
func (rt *runtime) closeServerSessions(backend, server string) {
	n := rt.srv.Kick(func(i proxy.Info) bool {
		return i.Server == server && i.Backend == backend
	}, proxy.EndServerDown)
	if n > 0 {
		rt.log.Warn("closed the sessions of a server marked down", "backend", backend, "server", server, "sessions", n)
	}
}
