package stats

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metric names follow Prometheus's conventions: the maildirector_ prefix,
// base units (seconds, bytes), _total on counters. Labels are bounded:
// frontend, protocol, backend, server, check type, result, reason, state,
// code (a status class); never a user or a client address. The HTTP
// reason is a header's value, bounded by folding reasons past a
// frontend's max_reasons into "other".
var (
	feLabels  = []string{"frontend", "protocol"}
	srvLabels = []string{"backend", "server"}

	mFeSessions    = prometheus.NewDesc("maildirector_frontend_sessions", "Live sessions.", feLabels, nil)
	mFeSessionsMax = prometheus.NewDesc("maildirector_frontend_sessions_max", "The most live sessions seen at once.", feLabels, nil)
	mFeSessionsTot = prometheus.NewDesc("maildirector_frontend_sessions_total", "Sessions accepted.", feLabels, nil)
	mFeLimit       = prometheus.NewDesc("maildirector_frontend_sessions_limit", "The frontend's maxconn (0: only the global limit).", feLabels, nil)
	mFeBytesIn     = prometheus.NewDesc("maildirector_frontend_received_bytes_total", "Bytes received from clients.", feLabels, nil)
	mFeBytesOut    = prometheus.NewDesc("maildirector_frontend_sent_bytes_total", "Bytes sent to clients.", feLabels, nil)
	mFeTLS         = prometheus.NewDesc("maildirector_frontend_tls_sessions_total", "Sessions on TLS (implicit or STARTTLS), ended and live.", feLabels, nil)
	mFeEnds        = prometheus.NewDesc("maildirector_frontend_sessions_ended_total", "Ended sessions by end reason.", append(feLabels, "reason"), nil)
	mLogins        = prometheus.NewDesc("maildirector_logins_total", "Logins by result: ok, rejected, no_server, temp_fail.", append(feLabels, "result"), nil)
	mRecipients    = prometheus.NewDesc("maildirector_lmtp_recipients_total", "LMTP recipients by final reply class.", append(feLabels, "result"), nil)

	mSrvUp       = prometheus.NewDesc("maildirector_server_up", "1 when the server is healthy.", srvLabels, nil)
	mSrvAdmin    = prometheus.NewDesc("maildirector_server_admin_state", "The server's admin state: 1 for the current one.", append(srvLabels, "state"), nil)
	mSrvWeight   = prometheus.NewDesc("maildirector_server_weight", "The server's weight.", srvLabels, nil)
	mSrvSessions = prometheus.NewDesc("maildirector_server_sessions", "Live sessions on the server (logins).", srvLabels, nil)
	mSrvRcpts    = prometheus.NewDesc("maildirector_server_lmtp_recipients", "LMTP recipients in transactions on the server now.", srvLabels, nil)
	mSrvPicks    = prometheus.NewDesc("maildirector_server_selected_total", "Sessions and recipients placed on the server.", srvLabels, nil)
	mSrvAssigned = prometheus.NewDesc("maildirector_server_assigned_users", "Users pinned to the server (sticky entries).", srvLabels, nil)
	mSrvBytesIn  = prometheus.NewDesc("maildirector_server_received_bytes_total", "Bytes received from clients of the server's ended sessions and live ones.", srvLabels, nil)
	mSrvBytesOut = prometheus.NewDesc("maildirector_server_sent_bytes_total", "Bytes sent to clients of the server's ended sessions and live ones.", srvLabels, nil)
	mSrvErrors   = prometheus.NewDesc("maildirector_server_connection_errors_total", "Sessions that failed on the server before they started.", srvLabels, nil)
	mSrvPassive  = prometheus.NewDesc("maildirector_server_passive_downs_total", "Times failed sessions took the server down (passive health).", srvLabels, nil)
	mSrvChange   = prometheus.NewDesc("maildirector_server_last_change_seconds", "Unix time of the server's last health or admin state change.", srvLabels, nil)
	mChkDur      = prometheus.NewDesc("maildirector_server_check_duration_seconds", "Health check durations.", append(srvLabels, "check"), nil)
	mChkFail     = prometheus.NewDesc("maildirector_server_check_failures_total", "Failed health checks.", append(srvLabels, "check"), nil)
	mChkDown     = prometheus.NewDesc("maildirector_server_check_downs_total", "Up to down transitions.", srvLabels, nil)

	httpLabels    = []string{"frontend", "reason"}
	mHTTPRequests = prometheus.NewDesc("maildirector_http_requests_total", "HTTP requests by reason (X-Dovecot-Reason; none, other past max_reasons) and status class.", append(httpLabels, "code"), nil)
	mHTTPErrors   = prometheus.NewDesc("maildirector_http_request_errors_total", "HTTP requests maildirector answered itself (no server could) or whose transfer broke.", httpLabels, nil)
	mHTTPBytesIn  = prometheus.NewDesc("maildirector_http_received_bytes_total", "HTTP request body bytes from clients.", httpLabels, nil)
	mHTTPBytesOut = prometheus.NewDesc("maildirector_http_sent_bytes_total", "HTTP response body bytes to clients.", httpLabels, nil)
	mHTTPDuration = prometheus.NewDesc("maildirector_http_request_duration_seconds", "HTTP request durations, from the request's first byte to the response's last.", httpLabels, nil)
	mHTTPReqRate  = prometheus.NewDesc("maildirector_http_request_rate", "HTTP requests in the last second.", []string{"frontend"}, nil)

	mClusterDegraded = prometheus.NewDesc("maildirector_cluster_degraded", "1 while etcd is unreachable and the node places users alone ([cluster] only).", nil, nil)
	mClusterWrites   = prometheus.NewDesc("maildirector_cluster_etcd_writes_total", "Keys this node wrote to etcd ([cluster] only).", nil, nil)

	mUptime = prometheus.NewDesc("maildirector_uptime_seconds", "Seconds since the process started.", nil, nil)
	mInfo   = prometheus.NewDesc("maildirector_build_info", "The running version.", []string{"version"}, nil)
)

// newRegistry returns a Prometheus registry with s's metrics and the Go
// and process collectors.
func (s *Stats) newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister((*collector)(s), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// collector reads a snapshot per scrape: the metrics show what the
// dashboard shows.
type collector Stats

// Describe sends nothing: the collector is "unchecked", as its series
// follow the running configuration, and describing by collecting would
// take a snapshot at registration.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := (*Stats)(c)
	snap, err := s.Snapshot()
	if err != nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	gauge(mUptime, snap.Uptime)
	gauge(mInfo, 1, snap.Version)
	if cl := snap.Cluster; cl != nil {
		degraded := 0.0
		if cl.Degraded {
			degraded = 1
		}
		gauge(mClusterDegraded, degraded)
		counter(mClusterWrites, float64(cl.Writes))
	}
	for _, f := range snap.Frontends {
		l := []string{f.Name, f.Protocol}
		gauge(mFeSessions, float64(f.Cur), l...)
		gauge(mFeSessionsMax, float64(f.Max), l...)
		gauge(mFeLimit, float64(f.Limit), l...)
		counter(mFeSessionsTot, float64(f.Total), l...)
		counter(mFeBytesIn, float64(f.BytesIn), l...)
		counter(mFeBytesOut, float64(f.BytesOut), l...)
		counter(mFeTLS, float64(f.TLS), l...)
		for reason, n := range f.Ends {
			counter(mFeEnds, float64(n), f.Name, f.Protocol, reason)
		}
		for result, n := range f.Logins {
			counter(mLogins, float64(n), f.Name, f.Protocol, result)
		}
		for result, n := range f.Recipients {
			counter(mRecipients, float64(n), f.Name, f.Protocol, result)
		}
	}
	for _, f := range snap.Frontends {
		if f.Responses != nil {
			gauge(mHTTPReqRate, float64(f.RequestRate), f.Name)
		}
	}
	for _, h := range snap.HTTP {
		for code, n := range h.Responses {
			counter(mHTTPRequests, float64(n), h.Frontend, h.Reason, code)
		}
		counter(mHTTPErrors, float64(h.Errors), h.Frontend, h.Reason)
		counter(mHTTPBytesIn, float64(h.BytesIn), h.Frontend, h.Reason)
		counter(mHTTPBytesOut, float64(h.BytesOut), h.Frontend, h.Reason)
		ch <- h.histogram()
	}
	for _, b := range snap.Backends {
		for _, sv := range b.Servers {
			l := []string{b.Name, sv.Name}
			up := 0.0
			if sv.Up {
				up = 1
			}
			gauge(mSrvUp, up, l...)
			for _, st := range []string{"ready", "drain", "maint"} {
				v := 0.0
				if sv.Admin == st {
					v = 1
				}
				gauge(mSrvAdmin, v, b.Name, sv.Name, st)
			}
			gauge(mSrvWeight, float64(sv.Weight), l...)
			gauge(mSrvSessions, float64(sv.Cur), l...)
			gauge(mSrvRcpts, float64(sv.Recipients), l...)
			gauge(mSrvAssigned, float64(sv.Assigned), l...)
			gauge(mSrvChange, float64(sv.Since.UnixNano())/1e9, l...)
			counter(mSrvPicks, float64(sv.Total), l...)
			counter(mSrvBytesIn, float64(sv.BytesIn), l...)
			counter(mSrvBytesOut, float64(sv.BytesOut), l...)
			counter(mSrvErrors, float64(sv.Errors), l...)
			counter(mSrvPassive, float64(sv.Passive), l...)
			if sv.Check == nil {
				continue
			}
			counter(mChkFail, float64(sv.Check.Failed), b.Name, sv.Name, sv.Check.Type)
			counter(mChkDown, float64(sv.Check.Downs), l...)
			ch <- s.Server(b.Name, sv.Name).histogram(b.Name, sv.Name, sv.Check.Type)
		}
	}
}

// histogram is the server's check durations as a Prometheus histogram.
func (s *Server) histogram(backend, server, check string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(checkBuckets))
	var cum uint64
	for i, ub := range checkBuckets {
		cum += s.buckets[i].Load()
		buckets[ub] = cum
	}
	count := cum + s.buckets[len(checkBuckets)].Load()
	sum := float64(s.durSumNs.Load()) / 1e9
	return prometheus.MustNewConstHistogram(mChkDur, count, sum, buckets, backend, server, check)
}

// histogram is the reason's request durations as a Prometheus histogram.
func (h *HTTPReasonSnapshot) histogram() prometheus.Metric {
	buckets := make(map[float64]uint64, len(httpBuckets))
	var cum uint64
	for i, ub := range httpBuckets {
		cum += h.buckets[i]
		buckets[ub] = cum
	}
	count := cum + h.buckets[len(httpBuckets)]
	return prometheus.MustNewConstHistogram(mHTTPDuration, count, h.sum, buckets, h.Frontend, h.Reason)
}
