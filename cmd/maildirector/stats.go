package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/internal/rsasign"
	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/stats"
)

// The runtime is the statistics' Source: what is running now.

// Frontends implements stats.Source.
func (rt *runtime) Frontends() []stats.FrontendInfo {
	cfg := rt.currentConfig()
	if cfg == nil {
		return nil // before the first configuration is running
	}
	var out []stats.FrontendInfo
	for _, name := range cfg.FrontendNames() {
		f := cfg.Frontends[name]
		out = append(out, stats.FrontendInfo{Name: name, Protocol: string(f.Protocol), Backend: strings.Join(f.Backends(), ","), Bind: f.Bind, MaxConn: f.MaxConn})
	}
	return out
}

// Backends implements stats.Source.
func (rt *runtime) Backends() []stats.BackendInfo {
	rt.mu.Lock()
	cfg, running := rt.cfg, rt.backends
	rt.mu.Unlock()
	if cfg == nil {
		return nil
	}
	var out []stats.BackendInfo
	for _, name := range cfg.BackendNames() {
		b := running[name]
		if b == nil {
			continue
		}
		bc := b.config()
		bi := stats.BackendInfo{Name: name, Director: b.dir}
		for _, s := range bc.Servers {
			si := stats.ServerInfo{Name: s.Name, Address: bc.CheckAddress(s)}
			if c := b.checker(s.Name); c != nil {
				si.Check, si.CheckType = c.ck, string(bc.Check.Type)
			}
			bi.Servers = append(bi.Servers, si)
		}
		out = append(out, bi)
	}
	return out
}

// Sessions implements stats.Source.
func (rt *runtime) Sessions() []proxy.Info { return rt.srv.Sessions() }

// statsListener is the running [stats] listener, replaced when a reload
// changes its settings.
type statsListener struct {
	cfg config.Stats
	srv *http.Server
	ln  net.Listener
	raw net.Listener // ln without TLS: the socket an upgrade hands over
}

// statsListenerLocked returns the listener cfg asks for: the running one
// when nothing changed, else a new one (nil for none); the caller closes
// the one it does not keep. A new listener on the running one's address
// closes the running one first.
func (rt *runtime) statsListenerLocked(cfg config.Stats) (*statsListener, error) {
	if rt.statsLn.same(cfg) {
		return rt.statsLn, nil
	}
	if rt.statsLn != nil && rt.statsLn.cfg.Bind == cfg.Bind {
		rt.statsLn.close()
		rt.statsLn = nil
	}
	return rt.startStats(cfg)
}

// startStats starts the listener cfg asks for; nil when it asks for none.
// statsTLS is the stats listener's TLS: one certificate, its key signing
// as the frontends' do (rsasign).
func statsTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cert.PrivateKey = rsasign.Wrap(cert.PrivateKey)
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func (rt *runtime) startStats(cfg config.Stats) (*statsListener, error) {
	if cfg.Bind == "" {
		return nil, nil
	}
	ln, err := rt.inh.listen("tcp", cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("stats.bind: %w", err)
	}
	raw := ln
	if cfg.TLS.Cert != "" {
		tc, err := statsTLS(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("stats.tls: %w", err)
		}
		ln = tls.NewListener(ln, tc)
	}
	ho := stats.HandlerOptions{Users: cfg.Users(), Pprof: cfg.Pprof}
	if cfg.Admin {
		ho.Control = rt.stats.NewControl(controller{rt})
	}
	h := rt.stats.Handler(ho)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			rt.log.Error("stats listener stopped", "bind", cfg.Bind, "err", err)
		}
	}()
	rt.log.Info("stats listener started", "bind", cfg.Bind, "tls", cfg.TLS.Cert != "", "auth", len(cfg.Auth) > 0)
	return &statsListener{cfg: cfg, srv: srv, ln: ln, raw: raw}, nil
}

func (l *statsListener) close() {
	if l == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.srv.Shutdown(ctx)
}

// same reports whether l already serves what cfg asks for.
func (l *statsListener) same(cfg config.Stats) bool {
	if l == nil {
		return cfg.Bind == ""
	}
	return l.cfg.Bind == cfg.Bind && l.cfg.TLS == cfg.TLS && l.cfg.Admin == cfg.Admin && l.cfg.Pprof == cfg.Pprof && slices.Equal(l.cfg.Auth, cfg.Auth)
}
