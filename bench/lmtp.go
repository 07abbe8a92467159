package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

// The LMTP suite: an MTA's delivery rate through each path to one server.
//
// Targets are what the paths deliver to: real Dovecot LMTP (dovecotlab,
// one instance, maildirs on this machine's disk) for the headline ratio,
// and the in-process discard sink (lmtpsink.go), which shows the proxy's
// own cost. Paths:
//
//	direct   the MTA talks to the server's plain listener (Dovecot's lmtp-direct)
//	haproxy  HAProxy mode tcp → the server (Dovecot: the haproxy = yes port, send-proxy-v2)
//	md-lmtp  maildirector's lmtp frontend, which takes each message whole and
//	         delivers it over its pooled connections (Dovecot: send_proxy = "v2-ssl")
//
// Against the sink nobody sends a PROXY header. One Dovecot instance serves
// every path, so a message with two recipients is one transaction on every
// path; with two instances the direct MTA would need one transaction per
// server, which is the work maildirector saves it, not a like-for-like row.

const (
	targetDovecot = "dovecot"
	targetSink    = "sink"
	pathMDLMTP    = "md-lmtp"
)

// allLMTPTargets and lmtpPaths in run order.
var (
	allLMTPTargets = []string{targetDovecot, targetSink}
	lmtpPaths      = []string{pathDirect, pathHAProxy, pathMDLMTP}
)

const (
	// lmtpDomain is Dovecot's lab domain: user000@lab.test is the lab user
	// user000 (auth_username_format = %Ln).
	lmtpDomain = "lab.test"
	// lmtpUsers is how many lab users the recipients rotate over, so that
	// concurrent deliveries rarely meet in one maildir.
	lmtpUsers = 200
	// lmtpWarmupLimit bounds the warm-up on each path: before the first
	// measured run every path delivers to every lab user once, so Dovecot
	// forks its lmtp processes, maildirector fills its pool, and every
	// maildir exists (creating one is not part of a delivery's cost).
	lmtpWarmupLimit = 30 * time.Second
)

// LMTPRun is one measurement: clients sessions delivering messages of
// rcpts recipients each on one path until the count or the time runs out.
type LMTPRun struct {
	Target   string  `json:"target"`
	Path     string  `json:"path"`
	Rcpts    int     `json:"recipients_per_message"`
	Clients  int     `json:"clients"`
	Messages int     `json:"messages"` // every recipient answered 250
	Failed   int     `json:"failed"`   // a recipient refused, or the session broke
	Seconds  float64 `json:"seconds"`
	MsgPerS  float64 `json:"messages_per_s"`
	RcptPerS float64 `json:"recipients_per_s"`
	P50ms    float64 `json:"p50_ms"` // one transaction: MAIL to the last reply after the data
	P99ms    float64 `json:"p99_ms"`
	// ProxyCPU is the proxy's utime+stime during the run; CPUmsPerMsg per delivered message.
	ProxyCPU    float64 `json:"proxy_cpu_seconds,omitempty"`
	CPUmsPerMsg float64 `json:"proxy_cpu_ms_per_message,omitempty"`
	FirstError  string  `json:"first_error,omitempty"`
	// Busy is the share of this machine's CPU time in use during the run
	// (/proc/stat): near 1, the paths are CPU-bound, and a proxy's CPU per
	// message comes straight off the rate.
	Busy float64 `json:"machine_cpu_busy"`
	// AllMsgPerS holds every repetition in run order; the fields above are the median one.
	AllMsgPerS []float64 `json:"all_messages_per_s,omitempty"`
}

// LMTPReport is the LMTP suite of one run.
type LMTPReport struct {
	Bytes    int       `json:"message_bytes"`
	Clients  int       `json:"clients"`
	Messages int       `json:"messages_per_client_limit"`
	Limit    string    `json:"time_limit"`
	Repeat   int       `json:"repeat"`
	Runs     []LMTPRun `json:"runs"` // the median run of each target, rcpts and path
	// Ratios maps "TARGET NRCPT A/B" (lmtpRatioPairs) to metric to ratio.
	Ratios map[string]Ratios `json:"ratios"`
	// Paired maps "TARGET NRCPT A/B" to the messages/s ratio of each
	// repetition, whose paths ran one after the other: how stable the ratio is.
	Paired map[string][]float64 `json:"paired_messages_per_s_ratios"`
	Errors map[string]string    `json:"errors,omitempty"` // per target: why it did not run
	Notes  []string             `json:"notes"`
}

// lmtpTarget is a running server and how each path reaches it.
type lmtpTarget struct {
	name      string
	direct    string // plain listener
	proxied   string // where the proxies deliver
	sendProxy bool   // proxied wants a PROXY v2 header
	close     func()
}

// startLMTPTarget starts Dovecot (one instance, its maildirs in a new
// directory under mailDir; "" means the system's temporary directory) or
// the sink.
func startLMTPTarget(name, mailDir string) (*lmtpTarget, error) {
	switch name {
	case targetDovecot:
		dir, err := os.MkdirTemp(mailDir, "maildirector-bench-lab-")
		if err != nil {
			return nil, err
		}
		lab, err := dovecotlab.Start(dovecotlab.Options{Dir: dir, Instances: 1, Users: lmtpUsers})
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		p := lab.Instances[0].Ports
		host := lab.Instances[0].Address
		return &lmtpTarget{
			name:      name,
			direct:    net.JoinHostPort(host, strconv.Itoa(p.LMTPDirect)),
			proxied:   net.JoinHostPort(host, strconv.Itoa(p.LMTP)),
			sendProxy: true,
			close: func() {
				lab.Close()
				os.RemoveAll(dir)
			},
		}, nil
	case targetSink:
		s, err := startLMTPSink("127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		return &lmtpTarget{name: name, direct: s.Addr(), proxied: s.Addr(), close: func() { s.Close() }}, nil
	}
	return nil, fmt.Errorf("unknown LMTP target %q", name)
}

// runLMTP measures every LMTP target.
func runLMTP(o options, dir string, progress io.Writer) *LMTPReport {
	rep := &LMTPReport{
		Bytes: o.lmtpBytes, Clients: o.lmtpClients, Messages: o.lmtpMessages, Limit: o.lmtpTime.String(), Repeat: o.lmtpRepeat,
		Errors: make(map[string]string),
	}
	for _, t := range o.lmtpTargets {
		fmt.Fprintf(progress, "bench: lmtp %s ...\n", t)
		runs, err := runLMTPTarget(o, dir, t, progress)
		if err != nil {
			rep.Errors[t] = err.Error()
			fmt.Fprintf(progress, "bench: lmtp %s: %v\n", t, err)
		}
		rep.Runs = append(rep.Runs, runs...)
	}
	rep.Ratios = lmtpRatios(rep.Runs)
	rep.Paired = lmtpPaired(rep.Runs)
	rep.Notes = []string{
		"LMTP paths: direct = the MTA to the server's plain listener; haproxy = mode tcp, send-proxy-v2 to Dovecot's haproxy = yes port; md-lmtp = maildirector's lmtp frontend, which takes each message whole, then delivers it over its pooled connections (send_proxy v2-ssl to Dovecot)",
		"dovecot = one real Dovecot instance writing maildirs on this machine (the headline); sink = an in-process LMTP server that discards (the proxy's own cost); no PROXY header to the sink",
		"each client keeps one LMTP session for the whole run (an MTA's connection cache); recipients rotate over 200 lab users; latency is MAIL to the last reply after the data",
		"rows are the median of -lmtp-repeat runs by messages/s; the paths take turns, in an order rotated per repetition, each run after a sync(2); the per-repetition ratios show how stable a ratio is",
		"everything shares this machine's CPUs (Dovecot, the clients, the sink, the proxy): where machine CPU busy is near 100%, the rate is CPU-bound and a proxy's CPU per message comes straight off it, which a proxy on its own host would not cost Dovecot",
	}
	return rep
}

// runLMTPTarget starts the target and a proxy of each kind in front of it,
// warms every path up, then measures: for each repetition, each recipient
// count, each path, with the path order rotated per repetition so that a
// drift (page cache, maildir growth) does not favour one path.
func runLMTPTarget(o options, dir, target string, progress io.Writer) ([]LMTPRun, error) {
	tgt, err := startLMTPTarget(target, o.lmtpMailDir)
	if err != nil {
		return nil, err
	}
	defer tgt.close()

	addrs := map[string]string{pathDirect: tgt.direct}
	pids := map[string]int{}
	var md *proxyProc
	for _, path := range lmtpPaths[1:] {
		listen, err := freeAddr()
		if err != nil {
			return nil, err
		}
		name := "lmtp-" + target + "-" + path
		var proc *proxyProc
		switch path {
		case pathHAProxy:
			opts := ""
			if tgt.sendProxy {
				opts = "send-proxy-v2"
			}
			proc, err = startHAProxy(o.haproxy, dir, name, listen, haproxyConfig(listen, tgt.proxied, opts, haproxyMaxconn))
		case pathMDLMTP:
			sp := "none"
			if tgt.sendProxy {
				sp = "v2-ssl"
			}
			proc, err = startMaildirector(o.maildirector, dir, name, listen, maildirectorLMTPConfig(listen, tgt.proxied, sp, o.logLevel), o.profileDir != "")
			md = proc
		}
		if err != nil {
			return nil, err
		}
		defer proc.stop()
		addrs[path], pids[path] = proc.addr, proc.pid()
	}

	msg := lmtpMessage(o.lmtpBytes)
	dial := lmtpDialer(lmtpDial)
	if o.lmtpPipelining {
		dial = pipeDial
	}
	for _, path := range lmtpPaths {
		per := (lmtpUsers + o.lmtpClients - 1) / o.lmtpClients
		w := measureLMTP(dial, addrs[path], 0, o.lmtpClients, 1, per, lmtpWarmupLimit, msg)
		if w.Failed > 0 || w.Messages == 0 {
			return nil, fmt.Errorf("warm-up on %s: %d delivered, %d failed, first error: %s", path, w.Messages, w.Failed, w.FirstError)
		}
	}

	runs := make(map[string][]LMTPRun) // by rcpts and path
	for rep := range o.lmtpRepeat {
		for _, rcpts := range o.lmtpRcpts {
			for k := range lmtpPaths {
				path := lmtpPaths[(k+rep)%len(lmtpPaths)]
				fmt.Fprintf(progress, "bench: lmtp %s: %d recipient(s), %s\n", target, rcpts, path)
				// Each run starts with no dirty maildir pages of the runs
				// before it, whose writeback would slow whichever path came next.
				syscall.Sync()
				r := measureLMTP(dial, addrs[path], pids[path], o.lmtpClients, rcpts, o.lmtpMessages, o.lmtpTime, msg)
				r.Target, r.Path = target, path
				key := fmt.Sprint(rcpts, path)
				runs[key] = append(runs[key], r)
			}
		}
	}
	for _, rcpts := range o.lmtpRcpts {
		md.profileRun(o.profileDir, fmt.Sprintf("lmtp-%s-%drcpt", target, rcpts), o.profileTime, func(d time.Duration) {
			measureLMTP(dial, addrs[pathMDLMTP], 0, o.lmtpClients, rcpts, o.lmtpMessages*100, d, msg)
		})
	}
	var out []LMTPRun
	for _, rcpts := range o.lmtpRcpts {
		for _, path := range lmtpPaths {
			out = append(out, medianLMTP(runs[fmt.Sprint(rcpts, path)]))
		}
	}
	return out, nil
}

// medianLMTP returns the run with the median message rate, with every
// run's rate attached.
func medianLMTP(runs []LMTPRun) LMTPRun {
	res, all := medianRun(runs, func(r LMTPRun) float64 { return r.MsgPerS })
	res.AllMsgPerS = all
	return res
}

// lmtpMessage is a message of size bytes (one or two fewer when the last
// line would have no room for a character; just its header when size is
// smaller): a header, then body lines of 76 characters and CRLF, the last
// one shorter.
func lmtpMessage(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: mta@bench.test\r\nTo: user@" + lmtpDomain + "\r\nSubject: bench\r\n\r\n")
	line := append(bytes.Repeat([]byte("0123456789abcdefghij"), 4)[:76], "\r\n"...)
	for b.Len()+len(line) <= size {
		b.Write(line)
	}
	if rest := size - b.Len(); rest >= 3 {
		b.Write(line[:rest-2])
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// measureLMTP opens clients LMTP sessions to addr and has each deliver
// messages of rcpts recipients until it has sent perClient or limit has
// passed, then QUIT. Sessions are opened before the clock starts, as an
// MTA's connection cache keeps them. pid (0: none) is charged the CPU time
// it used meanwhile.
func measureLMTP(dial lmtpDialer, addr string, pid, clients, rcpts, perClient int, limit time.Duration, msg []byte) LMTPRun {
	res := LMTPRun{Rcpts: rcpts, Clients: clients}
	var firstErr atomic.Value
	fail := func(err error) { firstErr.CompareAndSwap(nil, err.Error()) }
	sessions := make([]lmtpSession, 0, clients)
	for range clients {
		c, err := dial(addr)
		if err != nil {
			res.FirstError = err.Error()
			closeLMTP(sessions)
			return res
		}
		sessions = append(sessions, c)
	}
	var before procStats
	if pid > 0 {
		before, _ = readProcStats(pid)
	}
	busyBefore, _ := readMachineCPU()
	var next atomic.Int64 // rotates recipients over the lab users
	lat := make([][]time.Duration, clients)
	failed := make([]int, clients)
	start := time.Now()
	deadline := start.Add(limit)
	var wg sync.WaitGroup
	for i, c := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[i], failed[i] = deliverLoop(c, &next, rcpts, perClient, deadline, msg, fail)
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	if busyAfter, err := readMachineCPU(); err == nil {
		res.Busy = busyAfter.busySince(busyBefore)
	}
	if pid > 0 {
		if after, err := readProcStats(pid); err == nil {
			res.ProxyCPU = (after.CPU - before.CPU).Seconds()
		}
	}
	closeLMTP(sessions)

	var all []time.Duration
	for i := range lat {
		all = append(all, lat[i]...)
		res.Failed += failed[i]
	}
	res.Messages = len(all)
	res.MsgPerS = float64(res.Messages) / res.Seconds
	res.RcptPerS = res.MsgPerS * float64(rcpts)
	slices.Sort(all)
	res.P50ms = percentile(all, 50)
	res.P99ms = percentile(all, 99)
	if res.Messages > 0 && pid > 0 {
		res.CPUmsPerMsg = res.ProxyCPU * 1000 / float64(res.Messages)
	}
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	return res
}

// deliverLoop is one client's run: it returns the latency of each message
// every recipient accepted and the count of those that failed. A refusal
// leaves the session usable; any other error ends the loop.
func deliverLoop(c lmtpSession, next *atomic.Int64, rcpts, count int, deadline time.Time, msg []byte, fail func(error)) (lat []time.Duration, failed int) {
	lat = make([]time.Duration, 0, min(count, 1<<16))
	to := make([]string, rcpts)
	for range count {
		if !time.Now().Before(deadline) {
			break
		}
		for j := range to {
			to[j] = fmt.Sprintf("user%03d@%s", next.Add(1)%lmtpUsers, lmtpDomain)
		}
		t0 := time.Now()
		err, usable := c.send(to, msg)
		if err == nil {
			lat = append(lat, time.Since(t0))
			continue
		}
		failed++
		fail(err)
		if !usable {
			return lat, failed
		}
	}
	return lat, failed
}

// lmtpSession is one client's LMTP session.
type lmtpSession interface {
	// send runs one transaction: a nil error means every recipient got
	// 250 after the data; usable says whether the session can go on.
	send(to []string, msg []byte) (err error, usable bool)
	close()
}

// lmtpDialer opens a session: lmtpDial (go-smtp, a command at a time)
// or pipeDial (pipelined, as Postfix sends).
type lmtpDialer func(addr string) (lmtpSession, error)

// stepClient is go-smtp's LMTP client, which waits for each command's
// reply before it sends the next.
type stepClient struct{ c *smtp.Client }

func (s stepClient) send(to []string, msg []byte) (error, bool) {
	err := lmtpSend(s.c, to, msg)
	var se *smtp.SMTPError
	var le smtp.LMTPDataError
	switch {
	case err == nil, errors.As(err, &le):
		// Replies after the data: the transaction is over.
		return err, true
	case errors.As(err, &se):
		return err, s.c.Reset() == nil
	}
	return err, false
}

func (s stepClient) close() {
	s.c.Quit()
	s.c.Close()
}

// lmtpDial connects to addr and says LHLO (RFC 2033 section 4.1). Every
// later command and the data get clientTimeout, so a stuck path cannot
// hold the bench.
func lmtpDial(addr string) (lmtpSession, error) {
	nc, err := net.DialTimeout("tcp", addr, clientTimeout)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := smtp.NewClientLMTP(nc)
	c.CommandTimeout = clientTimeout
	c.SubmissionTimeout = clientTimeout
	if err := c.Hello("mta.bench.test"); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting and LHLO at %s: %w", addr, err)
	}
	return stepClient{c}, nil
}

// lmtpSend runs one transaction: MAIL, a RCPT for each of to, DATA, msg,
// and one reply per recipient after the data (RFC 2033 section 4.2). A nil
// error means every recipient got 250.
func lmtpSend(c *smtp.Client, to []string, msg []byte) error {
	if err := c.Mail("mta@bench.test", nil); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return fmt.Errorf("RCPT %s: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("write message: %w", err)
	}
	if _, err := w.CloseWithLMTPResponse(); err != nil {
		return fmt.Errorf("replies after the data: %w", err)
	}
	return nil
}

// closeLMTP says QUIT on every session and closes it.
func closeLMTP(sessions []lmtpSession) {
	for _, c := range sessions {
		c.close()
	}
}

// machineCPU is the first line of /proc/stat: ticks since boot.
type machineCPU struct{ idle, total int64 }

// readMachineCPU reads the "cpu" line of /proc/stat (proc(5)): idle and
// iowait count as idle, every other field as busy.
func readMachineCPU() (machineCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, err
	}
	return parseMachineCPU(b)
}

func parseMachineCPU(b []byte) (machineCPU, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 6 || fields[0] != "cpu" {
		return machineCPU{}, errors.New("no cpu line in /proc/stat")
	}
	var m machineCPU
	// user nice system idle iowait irq softirq steal guest guest_nice; guest
	// time is already counted in user and nice.
	for i, f := range fields[1:min(len(fields), 9)] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return machineCPU{}, fmt.Errorf("parse /proc/stat: %w", err)
		}
		m.total += n
		if i == 3 || i == 4 {
			m.idle += n
		}
	}
	return m, nil
}

// busySince is the busy share of the ticks between before and m; 0 when none passed.
func (m machineCPU) busySince(before machineCPU) float64 {
	total := m.total - before.total
	if total <= 0 {
		return 0
	}
	return 1 - float64(m.idle-before.idle)/float64(total)
}
