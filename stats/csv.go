package stats

import (
	"encoding/csv"
	"io"
	"strconv"
)

// haproxyColumns are HAProxy's CSV columns ("show stat", the stats page's
// ;csv; management guide section 9.1), in its order, up to "algo": every
// tool that reads HAProxy's CSV by name or by position reads these the
// same way. A column maildirector has nothing for stays empty.
var haproxyColumns = []string{
	"pxname", "svname", "qcur", "qmax", "scur", "smax", "slim", "stot", "bin", "bout",
	"dreq", "dresp", "ereq", "econ", "eresp", "wretr", "wredis", "status", "weight", "act",
	"bck", "chkfail", "chkdown", "lastchg", "downtime", "qlimit", "pid", "iid", "sid", "throttle",
	"lbtot", "tracked", "type", "rate", "rate_lim", "rate_max", "check_status", "check_code", "check_duration", "hrsp_1xx",
	"hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx", "hrsp_other", "hanafail", "req_rate", "req_rate_max", "req_tot", "cli_abrt",
	"srv_abrt", "comp_in", "comp_out", "comp_byp", "comp_rsp", "lastsess", "last_chk", "last_agt", "qtime", "ctime",
	"rtime", "ttime", "agent_status", "agent_code", "agent_duration", "check_desc", "agent_desc", "check_rise", "check_fall", "check_health",
	"agent_rise", "agent_fall", "agent_health", "addr", "cookie", "mode", "algo",
}

// ownColumns follow HAProxy's: what only maildirector knows.
var ownColumns = []string{
	"protocol", "admin", "reason", "assigned", "lmtp_recipients", "passive_downs",
	"logins_ok", "logins_rejected", "logins_no_server", "logins_temp_fail",
	"lmtp_2xx", "lmtp_4xx", "lmtp_5xx", "tls_sessions", "tls_share",
	"http_reason", "http_errors", "http_p50_ms", "http_p90_ms", "http_p99_ms",
}

// Columns is the CSV header, HAProxy's columns then maildirector's.
func Columns() []string { return append(append([]string(nil), haproxyColumns...), ownColumns...) }

// row is one CSV line being filled by column name.
type row map[string]string

func (r row) int(col string, v int64)   { r[col] = strconv.FormatInt(v, 10) }
func (r row) uint(col string, v uint64) { r[col] = strconv.FormatUint(v, 10) }

// responses fills HAProxy's hrsp_* columns from status classes.
func (r row) responses(by map[string]uint64) {
	for _, c := range responseClasses {
		r.uint("hrsp_"+c, by[c])
	}
}

// WriteCSV writes snap as HAProxy writes its CSV: a "# " header, one row
// per frontend, then per backend its servers and a BACKEND row, each line
// ending with a comma. An HTTP frontend's row is in mode http with its
// req_tot, req_rate and hrsp_* columns, and is followed by one REASON row
// per X-Dovecot-Reason (svname REASON, type empty: no HAProxy type; the
// reason in http_reason, its requests, responses and bytes in HAProxy's
// columns, errors and latency percentiles in maildirector's).
func WriteCSV(w io.Writer, snap Snapshot) error {
	cols := Columns()
	cw := csv.NewWriter(w)
	header := append(append([]string(nil), cols...), "")
	header[0] = "# " + header[0]
	cw.Write(header)
	write := func(r row) {
		rec := make([]string, len(cols)+1)
		for i, c := range cols {
			rec[i] = r[c]
		}
		cw.Write(rec)
	}
	pid := strconv.Itoa(snap.PID)
	for i, f := range snap.Frontends {
		r := row{"pxname": f.Name, "svname": "FRONTEND", "status": "OPEN", "pid": pid, "type": "0", "mode": "tcp", "protocol": f.Protocol}
		r.int("iid", int64(i+1))
		r.int("sid", 0)
		r.int("scur", f.Cur)
		r.int("smax", f.Max)
		if f.Limit > 0 {
			r.int("slim", int64(f.Limit))
		}
		r.uint("stot", f.Total)
		r.int("bin", f.BytesIn)
		r.int("bout", f.BytesOut)
		r.uint("rate", f.Rate)
		r.uint("rate_max", f.RateMax)
		for _, k := range []string{"ok", "rejected", "no_server", "temp_fail"} {
			r.uint("logins_"+k, f.Logins[k])
		}
		if f.Recipients != nil {
			r.uint("lmtp_2xx", f.Recipients["2xx"])
			r.uint("lmtp_4xx", f.Recipients["4xx"])
			r.uint("lmtp_5xx", f.Recipients["5xx"])
		}
		r.uint("tls_sessions", f.TLS)
		r["tls_share"] = strconv.FormatFloat(f.TLSShare, 'f', 3, 64)
		if f.Responses != nil {
			r["mode"] = "http"
			r.uint("req_tot", f.Requests)
			r.uint("req_rate", f.RequestRate)
			r.uint("req_rate_max", f.RequestRateMax)
			r.responses(f.Responses)
			r.uint("http_errors", f.HTTPErrors)
		}
		write(r)
		for _, h := range snap.HTTP {
			if h.Frontend != f.Name {
				continue
			}
			r := row{"pxname": f.Name, "svname": "REASON", "pid": pid, "mode": "http", "protocol": f.Protocol, "http_reason": h.Reason}
			r.int("iid", int64(i+1))
			r.uint("req_tot", h.Requests)
			r.responses(h.Responses)
			r.int("bin", h.BytesIn)
			r.int("bout", h.BytesOut)
			r.uint("http_errors", h.Errors)
			r["http_p50_ms"] = strconv.FormatFloat(h.P50, 'f', 3, 64)
			r["http_p90_ms"] = strconv.FormatFloat(h.P90, 'f', 3, 64)
			r["http_p99_ms"] = strconv.FormatFloat(h.P99, 'f', 3, 64)
			write(r)
		}
	}
	for i, b := range snap.Backends {
		iid := int64(len(snap.Frontends) + i + 1)
		for j, s := range b.Servers {
			r := row{"pxname": b.Name, "svname": s.Name, "status": s.Status, "pid": pid, "type": "2",
				"addr": s.Address, "mode": "tcp", "admin": s.Admin, "reason": s.Reason}
			r.int("iid", iid)
			r.int("sid", int64(j+1))
			r.int("scur", int64(s.Cur))
			if s.MaxConn > 0 {
				r.int("slim", int64(s.MaxConn))
			}
			r.uint("stot", s.Total)
			r.uint("lbtot", s.Total)
			r.int("bin", s.BytesIn)
			r.int("bout", s.BytesOut)
			r.uint("econ", s.Errors)
			r.int("weight", int64(s.Weight))
			act, bck := "1", "0"
			if s.Backup {
				act, bck = "0", "1"
			}
			r["act"], r["bck"] = act, bck
			r.int("lastchg", s.LastChange)
			if c := s.Check; c != nil {
				r.uint("chkfail", c.Failed)
				r.uint("chkdown", c.Downs)
				r["check_status"] = c.Status
				r.int("check_duration", int64(c.DurationMS))
				r["last_chk"] = c.Result
				r["check_desc"] = c.Result
				r.int("check_rise", int64(c.Rise))
				r.int("check_fall", int64(c.Fall))
				r.int("check_health", int64(c.Health))
			}
			r.int("assigned", int64(s.Assigned))
			r.int("lmtp_recipients", int64(s.Recipients))
			r.uint("passive_downs", s.Passive)
			write(r)
		}
		r := row{"pxname": b.Name, "svname": "BACKEND", "status": b.Status, "pid": pid, "type": "1", "mode": "tcp", "algo": b.Balance}
		r.int("iid", iid)
		r.int("sid", 0)
		r.int("scur", int64(b.Cur))
		r.uint("stot", b.Total)
		r.uint("lbtot", b.Total)
		r.int("bin", b.BytesIn)
		r.int("bout", b.BytesOut)
		r.uint("econ", b.Errors)
		r.int("weight", int64(b.Weight))
		r.int("act", int64(b.Active))
		r.int("bck", int64(b.Backup))
		r.int("assigned", int64(b.Assigned))
		write(r)
	}
	cw.Flush()
	return cw.Error()
}
