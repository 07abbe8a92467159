package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/proxy"
)

// cmdRun serves until SIGTERM or SIGINT. SIGHUP reloads the configuration:
// the new file is loaded and validated and only then swapped in; if
// anything fails the running configuration stays and the log says why.
func cmdRun(args []string, stderr io.Writer) int {
	path, ok := configFlag("run", args, stderr)
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
	log := newLogger(stderr, cfg.Global.LogFormat, level)

	rt, err := newRuntime(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	log.Info("maildirector started", "version", version, "config", path, "summary", cfg.Summary())

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	var stopped chan struct{} // closed when a graceful shutdown has ended; nil before it starts
	for {
		select {
		case sig := <-sigs:
			switch {
			case sig == syscall.SIGHUP:
				rt.reload(path, level)
			case stopped == nil:
				grace := rt.currentConfig().Global.ShutdownGrace.D()
				log.Info("shutting down", "signal", sig.String(), "grace", grace)
				stopped = make(chan struct{})
				go rt.shutdownAndSignal(grace, stopped)
			default:
				// A second SIGTERM/SIGINT while draining: close everything now.
				log.Warn("second signal: closing all sessions now", "signal", sig.String())
				rt.srv.Close()
			}
		case <-stopped:
			return 0
		}
	}
}

// shutdownAndSignal runs the graceful shutdown and closes done when it ends.
func (rt *runtime) shutdownAndSignal(grace time.Duration, done chan<- struct{}) {
	if err := rt.shutdown(grace); err != nil {
		rt.log.Warn("sessions still open at the end of the grace period were closed", "err", err)
	}
	rt.log.Info("maildirector stopped")
	close(done)
}

func newLogger(w io.Writer, format config.LogFormat, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == config.LogFormatJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// reload applies the file at path, or keeps everything as it is.
func (rt *runtime) reload(path string, level *slog.LevelVar) {
	old := rt.currentConfig()
	cfg, err := config.Load(path)
	if err == nil {
		err = rt.apply(cfg)
	}
	if err != nil {
		rt.log.Error("reload failed, keeping the running configuration", "config", path, "err", err)
		return
	}
	level.Set(cfg.Global.LogLevel.SlogLevel())
	attrs := []any{"config", path, "summary", cfg.Summary()}
	if keys := restartKeys(old, cfg); len(keys) > 0 {
		attrs = append(attrs, "needs_restart", strings.Join(keys, ","))
	}
	rt.log.Info("configuration reloaded", attrs...)
}

// restartKeys lists the changed keys that a reload cannot apply: they take
// effect at the next start, and the reload's log line says so.
func restartKeys(old, cfg *config.Config) []string {
	var keys []string
	if old.Global.MaxConn != cfg.Global.MaxConn {
		keys = append(keys, "global.maxconn")
	}
	if old.Global.LogFormat != cfg.Global.LogFormat {
		keys = append(keys, "global.log_format")
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
		return i.Server == server && rt.frontendBackend(i.Frontend) == backend
	}, proxy.EndServerDown)
	if n > 0 {
		rt.log.Warn("closed the sessions of a server marked down", "backend", backend, "server", server, "sessions", n)
	}
}

// frontendBackend names the backend a frontend sends its sessions to.
func (rt *runtime) frontendBackend(frontend string) string {
	cfg := rt.currentConfig()
	if f := cfg.Frontends[frontend]; f != nil {
		return f.Backend
	}
	return ""
}
