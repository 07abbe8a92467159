package main

import (
	"fmt"

	"github.com/maildirector/maildirector/config"
	httpfe "github.com/maildirector/maildirector/protocols/http"
	"github.com/maildirector/maildirector/protocols/imap"
	"github.com/maildirector/maildirector/protocols/lmtp"
	"github.com/maildirector/maildirector/protocols/managesieve"
	"github.com/maildirector/maildirector/protocols/pop3"
	"github.com/maildirector/maildirector/protocols/submission"
	"github.com/maildirector/maildirector/protocols/tcp"
	"github.com/maildirector/maildirector/proxy"
)

// buildFrontend builds one [frontend.NAME]: the engine's Frontend with its
// protocol handler. LMTP and HTTP handlers hold server pools: they are
// collected in rt.pendingLMTP and rt.pendingHTTP, to be swapped in or
// closed with the build.
func (rt *runtime) buildFrontend(f *config.Frontend, backends map[string]*backendBuild) (proxy.Frontend, error) {
	bb := backends[f.Backend] // the default: capabilities before login
	p, retries, err := newRouter(f, backends)
	if err != nil {
		return proxy.Frontend{}, err
	}
	fe, err := frontendOptions(f, retries)
	if err != nil {
		return fe, err
	}
	if rt.stats != nil {
		fe.Stats = rt.stats.Frontend(f.Name)
	}
	switch f.Protocol {
	case config.ProtocolIMAP:
		fe.Handler = imap.New(imapOptions(f, p, bb.b.capabilities(config.CheckTypeIMAP)))
	case config.ProtocolPOP3:
		fe.Handler = pop3.New(pop3Options(f, p, bb.b.capabilities(config.CheckTypePOP3)))
	case config.ProtocolSubmission:
		var servers []*config.Backend
		for _, name := range p.table.Backends() {
			servers = append(servers, backends[name].cfg)
		}
		fe.Handler = submission.New(submissionOptions(f, servers, p))
	case config.ProtocolLMTP:
		h := lmtp.New(lmtpOptions(f, p))
		rt.pendingLMTP = append(rt.pendingLMTP, h)
		fe.Handler = h
	case config.ProtocolTCP:
		fe.Handler = tcp.New(tcpOptions(p))
	case config.ProtocolManageSieve:
		fe.Handler = managesieve.New(managesieveOptions(f, p, bb.b.capabilities(config.CheckTypeManageSieve)))
	case config.ProtocolHTTP:
		var rec httpfe.Recorder
		if rt.stats != nil {
			rec = rt.stats.Frontend(f.Name).HTTP(f.HTTP.MaxReasons)
		}
		h := httpfe.New(httpOptions(f, p, rec))
		rt.pendingHTTP = append(rt.pendingHTTP, h)
		fe.Handler = h
	default:
		return fe, fmt.Errorf("protocol %q is not supported", f.Protocol)
	}
	return fe, nil
}

// newRouter is f's picker over the backends its rules may choose, and
// the most retries any of them allows (the engine's count; each backend's
// picker keeps to its own).
func newRouter(f *config.Frontend, backends map[string]*backendBuild) (*router, int, error) {
	r := &router{table: routeTable(f, backends[f.Backend].cfg), pickers: make(map[string]*picker)}
	retries := 0
	for _, name := range r.table.Backends() {
		bb := backends[name]
		p, err := bb.pickerFor(f.Protocol)
		if err != nil {
			return nil, 0, fmt.Errorf("backend.%s: %w", name, err)
		}
		r.pickers[name] = p
		retries = max(retries, bb.cfg.Retries)
	}
	return r, retries, nil
}

// swapLMTPLocked makes the LMTP and HTTP frontends just built the running
// ones and closes those they replace: the idle server connections of LMTP
// ones (sessions still using an old one finish with it; its later
// transactions dial anew); HTTP ones end their client connections after
// the request in flight (clients reconnect to the new frontend) and close
// their idle server connections.
func (rt *runtime) swapLMTPLocked() {
	for _, h := range rt.lmtp {
		h.Close()
	}
	rt.lmtp, rt.pendingLMTP = rt.pendingLMTP, nil
	for _, h := range rt.http {
		h.Close()
	}
	rt.http, rt.pendingHTTP = rt.pendingHTTP, nil
}
