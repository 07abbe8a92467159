package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/stats"
)

// Listening sockets a process is given instead of opening them: by systemd
// (socket activation) or by the running maildirector it upgrades (`run
// --upgrade-from SOCKET`: the old process passes its sockets over its
// control socket with SCM_RIGHTS, so the kernel's accept queue, and every
// client waiting in it, carries over). They are matched to the
// configuration by address: a frontend's or [stats]'s bind by IP and port,
// the control socket by its path.

// inherited holds the sockets given at start until the first configuration
// takes them; what it does not take is closed (closeUnused).
type inherited struct {
	mu  sync.Mutex
	lns map[string]net.Listener // by listenKey
}

// add keeps lns for the configuration; a second socket for one address is
// closed.
func (in *inherited) add(lns []net.Listener) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.lns == nil {
		in.lns = make(map[string]net.Listener)
	}
	for _, ln := range lns {
		key := listenKey(ln.Addr())
		if _, dup := in.lns[key]; dup || key == "" {
			ln.Close()
			continue
		}
		in.lns[key] = ln
	}
}

// take returns the inherited socket for key and forgets it; nil if none.
func (in *inherited) take(key string) net.Listener {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	ln := in.lns[key]
	delete(in.lns, key)
	return ln
}

// listen is proxy.Options.Listen and the [stats] listener's: the inherited
// socket for the address if there is one, else a new one.
func (in *inherited) listen(network, address string) (net.Listener, error) {
	if ap, err := netip.ParseAddrPort(address); err == nil {
		if ln := in.take(tcpKey(ap)); ln != nil {
			return proxy.NoKeepAlive(ln), nil
		}
	}
	return proxy.Listen(network, address)
}

// closeUnused closes the sockets no part of the configuration took (an
// address the new configuration no longer binds), saying which.
func (in *inherited) closeUnused(log *slog.Logger) {
	in.mu.Lock()
	defer in.mu.Unlock()
	for key, ln := range in.lns {
		log.Warn("inherited listening socket not in the configuration: closed", "socket", key)
		ln.Close()
	}
	in.lns = nil
}

// tcpKey names a TCP address: "tcp IP:port", the IP unmapped.
func tcpKey(ap netip.AddrPort) string {
	return "tcp " + netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
}

// listenKey names a socket's address as inherited sockets are matched:
// "tcp IP:port" or "unix PATH"; "" for another kind.
func listenKey(a net.Addr) string {
	switch a := a.(type) {
	case *net.TCPAddr:
		return tcpKey(a.AddrPort())
	case *net.UnixAddr:
		return "unix " + a.Name
	}
	return ""
}

// handoverMax bounds the sockets one handover carries: a configuration
// with more listeners than this is refused rather than cut.
const handoverMax = 4096

// SendListeners implements stats.Handover: "listeners N", then each
// listening socket as "KIND ADDRESS" with its descriptor (SCM_RIGHTS, one
// per message, so no receive buffer has to hold them all), then the empty
// line. The sockets stay open and in use here.
func (c controller) SendListeners(conn *net.UnixConn) error {
	return sendListeners(conn, c.rt.listeners())
}

// sendListeners writes SendListeners' answer for lns.
func sendListeners(conn *net.UnixConn, lns []net.Listener) error {
	if len(lns) > handoverMax {
		_, err := fmt.Fprintf(conn, "error: %d listening sockets, more than %d\n\n", len(lns), handoverMax)
		return err
	}
	if _, err := fmt.Fprintf(conn, "listeners %d\n", len(lns)); err != nil {
		return err
	}
	for _, ln := range lns {
		sc, ok := ln.(syscall.Conn)
		if !ok {
			return fmt.Errorf("listener %s: %T has no descriptor", ln.Addr(), ln)
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return err
		}
		// Control lends the descriptor without putting it into blocking
		// mode (os.File.Fd would, for both processes: the file
		// description is shared).
		var werr error
		cerr := raw.Control(func(fd uintptr) {
			_, _, werr = conn.WriteMsgUnix([]byte(listenKey(ln.Addr())+"\n"), unix.UnixRights(int(fd)), nil)
		})
		if err := errors.Join(cerr, werr); err != nil {
			return err
		}
	}
	_, err := conn.Write([]byte("\n"))
	return err
}

// listeners are the sockets a new process takes over: the frontends', the
// [stats] listener's and the control socket's.
func (rt *runtime) listeners() []net.Listener {
	var lns []net.Listener
	for _, ln := range rt.srv.Listeners() {
		lns = append(lns, ln)
	}
	rt.mu.Lock()
	if rt.statsLn != nil {
		lns = append(lns, rt.statsLn.raw)
	}
	if rt.ctlSock != nil {
		lns = append(lns, rt.ctlSock.ln)
	}
	rt.mu.Unlock()
	slices.SortFunc(lns, func(a, b net.Listener) int { return strings.Compare(listenKey(a.Addr()), listenKey(b.Addr())) })
	return lns
}

// HandOver implements stats.Handover: a new process serves on this one's
// sockets now. The control socket and the [stats] listener close here at
// once (the socket file stays: it is the new process's now), so that
// commands reach the new process; the sessions drain as on SIGTERM, except
// that logins under way finish first; then the process exits.
func (c controller) HandOver() error {
	rt := c.rt
	rt.mu.Lock()
	if rt.handedOver {
		rt.mu.Unlock()
		return errors.New("already handed over")
	}
	rt.handedOver = true
	ctl, st := rt.ctlSock, rt.statsLn
	rt.ctlSock, rt.statsLn = nil, nil
	rt.mu.Unlock()
	if ctl != nil {
		ctl.ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ctl.close()
	}
	st.close()
	rt.log.Info("listening sockets handed over to a new process: draining")
	close(rt.handover)
	return nil
}

// upgradeConn is the new process's connection to the one it upgrades,
// kept from taking the sockets until it tells that one to drain: the
// control socket's path reaches either process meanwhile.
type upgradeConn struct {
	conn *net.UnixConn
	br   *bufio.Reader
}

// upgradeTimeout bounds each step of the conversation with the old process.
const upgradeTimeout = time.Minute

// takeListeners connects to the control socket of the running maildirector
// at sock and takes its listening sockets.
func takeListeners(sock string) (*upgradeConn, []net.Listener, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("--upgrade-from %s: %w", sock, err)
	}
	conn.SetDeadline(time.Now().Add(upgradeTimeout))
	if _, err := conn.Write([]byte("_listeners\n")); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("--upgrade-from %s: %w", sock, err)
	}
	lns, rest, err := receiveListeners(conn)
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("--upgrade-from %s: %w", sock, err)
	}
	u := &upgradeConn{conn: conn, br: bufio.NewReader(io.MultiReader(bytes.NewReader(rest), conn))}
	return u, lns, nil
}

// receiveListeners reads SendListeners' answer: the sockets, in the order
// of their lines, and whatever came after the answer's empty line.
func receiveListeners(conn *net.UnixConn) ([]net.Listener, []byte, error) {
	var text []byte
	var fds []int
	closeFDs := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*64))
	for {
		if end := answerEnd(text); end >= 0 {
			lns, err := listenersFrom(string(text[:end]), fds)
			return lns, text[end:], err
		}
		if len(text) > 1<<20 {
			closeFDs()
			return nil, nil, errors.New("answer to _listeners: too long")
		}
		n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
		if oobn > 0 {
			msgs, perr := unix.ParseSocketControlMessage(oob[:oobn])
			for _, m := range msgs {
				if rights, err := unix.ParseUnixRights(&m); err == nil {
					fds = append(fds, rights...)
				}
			}
			if perr != nil {
				err = errors.Join(err, perr)
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			err = errors.Join(err, errors.New("descriptors cut short (MSG_CTRUNC)"))
		}
		text = append(text, buf[:n]...)
		if err != nil {
			closeFDs()
			return nil, nil, fmt.Errorf("read the sockets: %w", err)
		}
	}
}

// answerEnd is the length of a complete control answer at the start of
// text (up to and including its empty line), or -1.
func answerEnd(text []byte) int {
	if bytes.HasPrefix(text, []byte("\n")) {
		return 1
	}
	if i := bytes.Index(text, []byte("\n\n")); i >= 0 {
		return i + 2
	}
	return -1
}

// listenersFrom turns the answer and the descriptors that came with it
// into listeners, checking each against its line. On error every
// descriptor is closed.
func listenersFrom(answer string, fds []int) ([]net.Listener, error) {
	var lns []net.Listener
	next := 0 // the first descriptor not yet made a listener (or closed)
	fail := func(err error) ([]net.Listener, error) {
		for _, ln := range lns {
			ln.Close()
		}
		for _, fd := range fds[next:] {
			unix.Close(fd)
		}
		return nil, err
	}
	lines := strings.Split(strings.TrimRight(answer, "\n"), "\n")
	head, _ := strings.CutPrefix(lines[0], "listeners ")
	n, err := strconv.Atoi(head)
	switch {
	case strings.HasPrefix(lines[0], "error: "):
		return fail(errors.New(strings.TrimPrefix(strings.Join(lines, " "), "error: ")))
	case err != nil || n < 0 || n != len(lines)-1:
		return fail(fmt.Errorf("answer to _listeners: %q", answer))
	case len(fds) != n:
		return fail(fmt.Errorf("%d sockets announced, %d received", n, len(fds)))
	}
	for _, want := range lines[1:] {
		f := os.NewFile(uintptr(fds[next]), want)
		next++
		ln, err := net.FileListener(f) // a copy: f's descriptor is closed either way
		f.Close()
		if err != nil {
			return fail(fmt.Errorf("socket %s: %w", want, err))
		}
		lns = append(lns, ln)
		if got := listenKey(ln.Addr()); got != want {
			return fail(fmt.Errorf("socket announced as %s is %s", want, got))
		}
	}
	return lns, nil
}

// handOver tells the old process that this one serves now; it drains and
// exits. Its answer is read so that a refusal is logged.
func (u *upgradeConn) handOver() error {
	defer u.conn.Close()
	u.conn.SetDeadline(time.Now().Add(upgradeTimeout))
	if _, err := u.conn.Write([]byte("_handover\n")); err != nil {
		return err
	}
	var lines []string
	for {
		l, err := u.br.ReadString('\n')
		if err != nil {
			return fmt.Errorf("answer to _handover: %w", err)
		}
		if l = strings.TrimRight(l, "\n"); l == "" {
			break
		}
		lines = append(lines, l)
	}
	if len(lines) != 1 || lines[0] != "OK" {
		return fmt.Errorf("answer to _handover: %q", strings.Join(lines, "\n"))
	}
	return nil
}

// upgradeWait bounds how long `ctl upgrade` waits for the new process to
// take over: it loads its configuration and reads its certificates first.
const upgradeWait = 2 * time.Minute

// Upgrade implements stats.Upgrader (`maildirector ctl upgrade`): it starts
// the binary now installed at this process's path as `run -c FILE
// --upgrade-from CONTROL_SOCKET`, with this process's environment (under
// systemd NOTIFY_SOCKET, through which it becomes the main process), and
// answers once it has taken the listening sockets over; this process then
// drains. If the new process fails first (a configuration it refuses, a
// certificate it cannot read), nothing changes and the error says so; its
// log says why.
func (c controller) Upgrade() (stats.Upgraded, error) {
	rt := c.rt
	if !rt.upgrading.CompareAndSwap(false, true) {
		return stats.Upgraded{}, errors.New("an upgrade is already under way")
	}
	defer rt.upgrading.Store(false)
	rt.mu.Lock()
	sock, handedOver := rt.ctlSock.cfg().Socket, rt.handedOver
	rt.mu.Unlock()
	switch {
	case handedOver:
		return stats.Upgraded{}, errors.New("this process has handed over already")
	case sock == "":
		return stats.Upgraded{}, errors.New("upgrade needs control.socket: the new process takes the sockets over through it")
	}
	exe, err := os.Executable()
	if err != nil {
		return stats.Upgraded{}, fmt.Errorf("upgrade: %w", err)
	}
	cmd := exec.Command(exe, "run", "-c", rt.path, "--upgrade-from", sock)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return stats.Upgraded{}, fmt.Errorf("upgrade: start %s: %w", exe, err)
	}
	rt.log.Info("upgrade: new process started", "pid", cmd.Process.Pid, "binary", exe)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	timer := time.NewTimer(upgradeWait)
	defer timer.Stop()
	select {
	case <-rt.handover:
		return stats.Upgraded{PID: cmd.Process.Pid, OldPID: os.Getpid()}, nil
	case err := <-exited:
		return stats.Upgraded{}, fmt.Errorf("upgrade: the new process (pid %d) exited before it took over (%v); this one goes on serving; the log says why", cmd.Process.Pid, err)
	case <-timer.C:
		cmd.Process.Kill()
		return stats.Upgraded{}, fmt.Errorf("upgrade: the new process (pid %d) did not take over within %v: killed; this one goes on serving", cmd.Process.Pid, upgradeWait)
	}
}
