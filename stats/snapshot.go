package stats

import (
	"context"
	"errors"
	"net"
	"os"
	"time"

	"github.com/maildirector/maildirector/checks"
	"github.com/maildirector/maildirector/director"
)

// Snapshot is every figure at one moment: what the dashboard, the CSV, the
// JSON and the metrics show. Field names in JSON follow HAProxy's CSV
// columns where one has the same meaning (scur, smax, stot, bin, bout...).
type Snapshot struct {
	Version     string             `json:"version"`
	Host        string             `json:"host"`
	PID         int                `json:"pid"`
	Time        time.Time          `json:"time"`
	Uptime      float64            `json:"uptime_seconds"`
	Refresh     float64            `json:"refresh_seconds"`      // the dashboard's polling interval
	HistoryStep float64            `json:"history_step_seconds"` // between two points of a history
	Frontends   []FrontendSnapshot `json:"frontends"`
	Backends    []BackendSnapshot  `json:"backends"`
	// HTTP are the HTTP frontends' requests by reason (X-Dovecot-Reason),
	// one row per frontend and reason, in frontend order.
	HTTP []HTTPReasonSnapshot `json:"http,omitempty"`
	// Cluster is the node's [cluster] state; nil without one.
	Cluster *ClusterSnapshot `json:"cluster,omitempty"`
}

// FrontendSnapshot is one frontend.
type FrontendSnapshot struct {
	Name     string   `json:"name"`
	Protocol string   `json:"protocol"`
	Backend  string   `json:"backend"`
	Bind     []string `json:"bind"`
	Cur      int64    `json:"scur"`
	Max      int64    `json:"smax"`
	Limit    int      `json:"slim"` // 0: only the global maxconn
	Total    uint64   `json:"stot"`
	Rate     uint64   `json:"rate"`     // sessions in the last second
	RateMax  uint64   `json:"rate_max"` // the highest rate seen
	BytesIn  int64    `json:"bin"`
	BytesOut int64    `json:"bout"`
	// TLS counts ended sessions that were on TLS, plus live ones;
	// TLSShare is TLS over the same sessions (ended and live).
	TLS      uint64  `json:"tls_sessions"`
	TLSShare float64 `json:"tls_share"`
	// Logins by result: ok, rejected (a wrong password), no_server,
	// temp_fail.
	Logins map[string]uint64 `json:"logins"`
	// Recipients are LMTP recipients by final reply class: 2xx, 4xx, 5xx.
	Recipients map[string]uint64 `json:"lmtp_recipients,omitempty"`
	// Ends counts ended sessions by end reason.
	Ends map[string]uint64 `json:"ends"`
	// Requests, for an HTTP frontend, are its requests (HAProxy's
	// req_tot), RequestRate those of the last second and RequestRateMax
	// the highest such rate; Responses counts them by status class (1xx,
	// 2xx, 3xx, 4xx, 5xx, other: hrsp_*) and HTTPErrors those
	// maildirector answered itself or whose transfer broke. Per reason:
	// Snapshot.HTTP.
	Requests       uint64            `json:"req_tot,omitempty"`
	RequestRate    uint64            `json:"req_rate,omitempty"`
	RequestRateMax uint64            `json:"req_rate_max,omitempty"`
	Responses      map[string]uint64 `json:"hrsp,omitempty"`
	HTTPErrors     uint64            `json:"http_errors,omitempty"`
	// History is the live sessions, one point per HistoryStep, oldest first.
	History []float64 `json:"sessions_history"`
}

// BackendSnapshot is one backend and its servers.
type BackendSnapshot struct {
	Name     string           `json:"name"`
	Balance  string           `json:"algo"`
	Status   string           `json:"status"` // UP while a server can take users, else DOWN
	Cur      int              `json:"scur"`
	Total    uint64           `json:"stot"`
	BytesIn  int64            `json:"bin"`
	BytesOut int64            `json:"bout"`
	Weight   int              `json:"weight"` // of the servers that are up
	Active   int              `json:"act"`    // active servers up
	Backup   int              `json:"bck"`    // backup servers up
	Assigned int              `json:"assigned"`
	Errors   uint64           `json:"econ"`
	Servers  []ServerSnapshot `json:"servers"`
}

// ServerSnapshot is one server.
type ServerSnapshot struct {
	Name    string `json:"name"`
	Address string `json:"addr"`
	// Status is HAProxy's: UP, DOWN, MAINT, DRAIN, or "no check" for an
	// unchecked server that is up.
	Status string `json:"status"`
	Up     bool   `json:"up"`
	Admin  string `json:"admin"` // ready, drain, maint
	Backup bool   `json:"backup"`
	Weight int    `json:"weight"`
	// Since is when the health or admin state last changed; LastChange
	// the seconds since then (HAProxy's lastchg).
	Since      time.Time `json:"since"`
	LastChange int64     `json:"lastchg"`
	// Reason is why the server is in its health state: the check result or
	// the passive-health failure that last changed it.
	Reason     string         `json:"reason"`
	Check      *CheckSnapshot `json:"check,omitempty"` // nil: not checked
	Cur        int            `json:"scur"`            // live sessions (logins)
	MaxConn    int            `json:"slim"`
	Recipients int            `json:"lmtp_recipients"` // LMTP recipients in transactions now
	Total      uint64         `json:"stot"`            // sessions and recipients placed here, ever
	Assigned   int            `json:"assigned"`        // users pinned here (sticky entries)
	BytesIn    int64          `json:"bin"`
	BytesOut   int64          `json:"bout"`
	Errors     uint64         `json:"econ"`          // connections that failed before the session started
	Passive    uint64         `json:"passive_downs"` // times those failures took it down
	Failures   int            `json:"failures"`      // the current run of consecutive failures
	// CheckHistory is the last check's latency in ms per HistoryStep
	// (-1: none); SessionsHistory the live sessions.
	CheckHistory    []float64 `json:"check_history_ms"`
	SessionsHistory []float64 `json:"sessions_history"`
}

// CheckSnapshot is a server's health check.
type CheckSnapshot struct {
	Type       string    `json:"type"`
	Status     string    `json:"check_status"` // HAProxy's: L7OK, L4CON, L4TOUT, L7TOUT, L7RSP, L6RSP, INI
	Result     string    `json:"result"`       // the last check's result in words
	DurationMS float64   `json:"check_duration"`
	At         time.Time `json:"last_chk"`
	Health     int       `json:"check_health"`
	Rise       int       `json:"check_rise"`
	Fall       int       `json:"check_fall"`
	Checks     uint64    `json:"checks"`
	Failed     uint64    `json:"chkfail"`
	Downs      uint64    `json:"chkdown"`
}

// Snapshot builds the current figures.
func (s *Stats) Snapshot() (Snapshot, error) {
	s.mu.RLock()
	src, opts := s.src, s.opts
	s.mu.RUnlock()
	if src == nil {
		return Snapshot{}, errNoSource
	}
	t := now()
	snap := Snapshot{
		Version: opts.Version, Host: s.host, PID: os.Getpid(), Time: t,
		Uptime: t.Sub(s.start).Seconds(), Refresh: opts.Refresh.Seconds(), HistoryStep: opts.HistoryStep.Seconds(),
	}

	// The live sessions' bytes and TLS, by frontend and by server.
	type live struct {
		in, out int64
		tls, n  uint64
	}
	byFrontend := make(map[string]*live)
	byServer := make(map[string]*live)
	fronts := src.Frontends()
	add := func(m map[string]*live, k string, in, out int64, tls bool) {
		l := m[k]
		if l == nil {
			l = &live{}
			m[k] = l
		}
		l.in += in
		l.out += out
		l.n++
		if tls {
			l.tls++
		}
	}
	for _, in := range src.Sessions() {
		add(byFrontend, in.Frontend, in.BytesIn, in.BytesOut, in.TLS)
		if in.Server != "" {
			add(byServer, in.Backend+"/"+in.Server, in.BytesIn, in.BytesOut, in.TLS)
		}
	}

	for _, fi := range fronts {
		f := s.lookupFrontend(fi.Name)
		fs := FrontendSnapshot{
			Name: fi.Name, Protocol: fi.Protocol, Backend: fi.Backend, Bind: fi.Bind, Limit: fi.MaxConn,
			Cur: f.cur.Load(), Max: f.max.Load(), Total: f.total.Load(),
			BytesIn: f.bytesIn.Load(), BytesOut: f.bytesOut.Load(), TLS: f.tls.Load(),
			Logins: make(map[string]uint64, len(loginResults)),
		}
		fs.Rate, fs.RateMax = f.rate.get()
		var liveN uint64
		if l := byFrontend[fi.Name]; l != nil {
			fs.BytesIn += l.in
			fs.BytesOut += l.out
			fs.TLS += l.tls
			liveN = l.n
		}
		f.mu.Lock()
		fs.Ends = make(map[string]uint64, len(f.ends))
		var ended uint64
		for k, v := range f.ends {
			fs.Ends[k] = v
			ended += v
		}
		fs.History = f.hist.values()
		h := f.http
		f.mu.Unlock()
		if h != nil {
			reasons := h.snapshot(fi.Name)
			fs.Responses = make(map[string]uint64, len(responseClasses))
			for _, c := range responseClasses {
				fs.Responses[c] = 0
			}
			for _, r := range reasons {
				fs.Requests += r.Requests
				fs.HTTPErrors += r.Errors
				for c, n := range r.Responses {
					fs.Responses[c] += n
				}
			}
			fs.RequestRate, fs.RequestRateMax = f.reqRate.get()
			snap.HTTP = append(snap.HTTP, reasons...)
		}
		if n := ended + liveN; n > 0 {
			fs.TLSShare = float64(fs.TLS) / float64(n)
		}
		for i, r := range loginResults {
			fs.Logins[string(r)] = f.logins[i].Load()
		}
		if fi.Protocol == "lmtp" {
			fs.Recipients = map[string]uint64{"2xx": f.rcpt[0].Load(), "4xx": f.rcpt[1].Load(), "5xx": f.rcpt[2].Load()}
		}
		snap.Frontends = append(snap.Frontends, fs)
	}

	for _, bi := range src.Backends() {
		bs := BackendSnapshot{Name: bi.Name, Balance: bi.Director.Balance().String(), Status: "DOWN"}
		status := bi.Director.Servers()
		for i, st := range status {
			var info ServerInfo
			if i < len(bi.Servers) {
				info = bi.Servers[i]
			}
			ss := s.server(bi.Name, st, info, t)
			if l := byServer[bi.Name+"/"+st.Name]; l != nil {
				ss.BytesIn += l.in
				ss.BytesOut += l.out
			}
			bs.Cur += ss.Cur
			bs.Total += ss.Total
			bs.BytesIn += ss.BytesIn
			bs.BytesOut += ss.BytesOut
			bs.Assigned += ss.Assigned
			bs.Errors += ss.Errors
			if st.Up && st.Admin != director.AdminMaint {
				bs.Weight += st.Weight
				if st.Backup {
					bs.Backup++
				} else {
					bs.Active++
				}
				if st.Admin == director.AdminReady {
					bs.Status = "UP"
				}
			}
			bs.Servers = append(bs.Servers, ss)
		}
		snap.Backends = append(snap.Backends, bs)
	}
	if cs, ok := src.(ClusterSource); ok {
		snap.Cluster = cs.Cluster(false)
	}
	return snap, nil
}

// server builds one server's snapshot from its director status, its
// checker and its counters.
func (s *Stats) server(backend string, st director.ServerStatus, info ServerInfo, t time.Time) ServerSnapshot {
	sv := s.Server(backend, st.Name)
	ss := ServerSnapshot{
		Name: st.Name, Address: info.Address, Up: st.Up, Admin: st.Admin.String(), Backup: st.Backup,
		Weight: st.Weight, Since: st.Changed, LastChange: int64(t.Sub(st.Changed).Seconds()), Reason: st.Reason,
		Cur: st.Sessions, MaxConn: st.MaxConn, Recipients: st.Recipients, Total: st.Picks, Assigned: st.Assigned,
		BytesIn: sv.bytesIn.Load(), BytesOut: sv.bytesOut.Load(),
		Errors: st.Failed, Passive: st.PassiveDowns, Failures: st.Failures,
	}
	switch {
	case st.Admin == director.AdminMaint:
		ss.Status = "MAINT"
	case !st.Up:
		ss.Status = "DOWN"
	case st.Admin == director.AdminDrain:
		ss.Status = "DRAIN"
	case info.Check == nil:
		ss.Status = "no check"
	default:
		ss.Status = "UP"
	}
	sv.mu.Lock()
	code := sv.checkCode
	ss.CheckHistory = sv.checkMS.values()
	ss.SessionsHistory = sv.sessions.values()
	sv.mu.Unlock()
	if info.Check != nil {
		cs := info.Check.Status()
		if code == "" {
			code = "INI" // not checked yet
		}
		ss.Check = &CheckSnapshot{
			Type: info.CheckType, Status: code, Result: cs.Reason, DurationMS: float64(cs.Latency.Microseconds()) / 1000,
			At: cs.LastCheck, Health: cs.Health, Rise: cs.Rise, Fall: cs.Fall,
			Checks: sv.checks.Load(), Failed: sv.chkFail.Load(), Downs: sv.chkDown.Load(),
		}
	}
	return ss
}

// checkCode is HAProxy's check_status for a probe's result: L4OK/L7OK when
// it passed (a tcp check is layer 4), L4CON/L4TOUT when connecting failed,
// L6RSP/L6TOUT in the TLS handshake, L7TOUT/L7RSP in the protocol.
func checkCode(t checks.Type, r checks.Result) string {
	if r.OK {
		if t == checks.TypeTCP {
			return "L4OK"
		}
		return "L7OK"
	}
	var ce *checks.CheckError
	if !errors.As(r.Err, &ce) {
		return "L7RSP"
	}
	var ne net.Error
	timeout := errors.Is(ce.Err, os.ErrDeadlineExceeded) || errors.Is(ce.Err, context.DeadlineExceeded) ||
		errors.As(ce.Err, &ne) && ne.Timeout()
	layer := "L7"
	switch ce.Step {
	case "connecting", "sending PROXY header":
		layer = "L4"
	case "in TLS handshake":
		layer = "L6"
	}
	switch {
	case timeout:
		return layer + "TOUT"
	case layer == "L4":
		return "L4CON"
	}
	return layer + "RSP"
}
