// Package stats is where maildirector's figures are gathered and shown:
// the counters the engine, the director and the checks feed, the
// snapshot built from them and from the live sessions, and its views: the
// dashboard page, HAProxy-style CSV, JSON and Prometheus metrics.
//
// The engine declares what it reports (proxy.Recorder) and this package
// implements it with atomics: nothing here is on the per-byte path, where
// the engine counts into each connection and the snapshot adds the live
// sessions' counts when it is taken. Health, weights, admin states and
// sticky assignments are read from the directors and checkers at snapshot
// time through [Source], which cmd implements; so every view reads the
// same snapshot and nothing is counted twice.
//
// HTTP frontends report each request through protocols/http's Recorder,
// which [HTTP] implements without this package importing the frontend:
// per X-Dovecot-Reason requests by status class, errors, bytes and a
// latency histogram (percentiles in the JSON and CSV, a histogram in
// /metrics); reasons past a frontend's limit count as "other", so the
// label set stays bounded whatever clients send.
package stats
