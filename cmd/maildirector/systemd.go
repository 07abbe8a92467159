package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
)

// notifier tells systemd where the service stands (Type=notify, sd_notify(3)):
// READY=1 once the first configuration runs and after each reload,
// RELOADING=1 with MONOTONIC_USEC when one starts (what Type=notify-reload
// needs), STOPPING=1 at SIGTERM, MAINPID when an upgrade's new process
// takes over, and STATUS= with the sessions and servers up. Every method is
// a no-op without NOTIFY_SOCKET.
type notifier struct {
	log     *slog.Logger
	enabled bool
	once    sync.Once // the first failure is logged, not every one
}

func newNotifier(log *slog.Logger) *notifier {
	return &notifier{log: log, enabled: os.Getenv("NOTIFY_SOCKET") != ""}
}

// send writes one notification: lines "KEY=VALUE".
func (n *notifier) send(lines ...string) {
	if !n.enabled {
		return
	}
	if _, err := daemon.SdNotify(false, strings.Join(lines, "\n")); err != nil {
		n.once.Do(func() { n.log.Warn("cannot notify systemd (NOTIFY_SOCKET)", "err", err) })
	}
}

func (n *notifier) ready(status string) { n.send("READY=1", "STATUS="+status) }

func (n *notifier) reloading() {
	n.send("RELOADING=1", strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n"), "STATUS=reloading")
}

func (n *notifier) stopping(status string) { n.send("STOPPING=1", "STATUS="+status) }

func (n *notifier) status(status string) { n.send("STATUS=" + status) }

// mainPID tells systemd that this process is the service's main process
// now (an upgrade started by the previous one: the unit needs
// NotifyAccess=all for systemd to take it), and that it is ready.
func (n *notifier) mainPID(status string) {
	n.send(fmt.Sprintf("MAINPID=%d", os.Getpid()), "READY=1", "STATUS="+status)
}

// statusEvery is how often STATUS= is refreshed while running.
const statusEvery = 10 * time.Second

// runStatus refreshes STATUS= every statusEvery until ctx is done.
func (rt *runtime) runStatus(ctx context.Context) {
	if !rt.notify.enabled {
		return
	}
	t := time.NewTicker(statusEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			rt.notify.status(rt.statusLine())
		}
	}
}

// statusLine is the short summary systemctl status shows: live sessions and
// the servers that can take users.
func (rt *runtime) statusLine() string {
	sessions := len(rt.srv.Sessions())
	up, all := 0, 0
	if snap, err := rt.stats.Snapshot(); err == nil {
		for _, b := range snap.Backends {
			for _, s := range b.Servers {
				all++
				if s.Up {
					up++
				}
			}
		}
	}
	return fmt.Sprintf("%d sessions, %d of %d servers up", sessions, up, all)
}

// systemdListeners returns the sockets systemd passed (socket activation:
// LISTEN_PID, LISTEN_FDS), and unsets those variables so that no child
// takes them for its own. The sockets are matched to the configuration by
// their bound address, so LISTEN_FDNAMES is not needed.
func systemdListeners() ([]net.Listener, error) {
	files := activation.Files(true)
	var lns []net.Listener
	for _, f := range files {
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("socket from systemd (%s): not a listening stream socket: %w", f.Name(), err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}
