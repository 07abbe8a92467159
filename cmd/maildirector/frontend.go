package main

import (
	"crypto/tls"
	"fmt"
	"os"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/protocols/imap"
	"github.com/maildirector/maildirector/protocols/pop3"
	"github.com/maildirector/maildirector/protocols/submission"
	"github.com/maildirector/maildirector/protocols/tcp"
	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/tlsutil"
)

// buildFrontend translates one [frontend.NAME] into the engine's Frontend
// with its protocol handler.
func (rt *runtime) buildFrontend(cfg *config.Config, f *config.Frontend, bb *backendBuild) (proxy.Frontend, error) {
	fe := proxy.Frontend{
		Name:           f.Name,
		Protocol:       string(f.Protocol),
		Addrs:          f.Bind,
		ImplicitTLS:    f.TLS.Mode == config.TLSModeImplicit,
		TrustedProxies: f.TrustedPrefixes(),
		MaxConn:        f.MaxConn,
		Timeouts:       timeouts(f.EffectiveTimeouts(cfg.Global)),
	}
	if f.TLS.Mode != config.TLSModeNone {
		tc, err := serverTLS(f)
		if err != nil {
			return fe, fmt.Errorf("tls: %w", err)
		}
		fe.TLS = tc
	}
	log := rt.log.With("frontend", f.Name)
	b := bb.b
	p := bb.pickerFor(f.Protocol)
	retries := retriesOption(bb.cfg.Retries)
	switch f.Protocol {
	case config.ProtocolIMAP:
		fe.Handler = imap.New(imap.Options{
			Picker:             p,
			Retries:            retries,
			Greeting:           f.Greeting,
			PlaintextLogin:     f.PlaintextAllowed(),
			MaxLoginAttempts:   f.MaxLoginAttempts,
			ServerCapabilities: b.capabilities(config.CheckTypeIMAP),
			Logger:             log,
		})
	case config.ProtocolPOP3:
		fe.Handler = pop3.New(pop3.Options{
			Picker:             p,
			Retries:            retries,
			Greeting:           f.Greeting,
			PlaintextLogin:     f.PlaintextAllowed(),
			MaxLoginAttempts:   f.MaxLoginAttempts,
			ServerCapabilities: b.capabilities(config.CheckTypePOP3),
			Logger:             log,
		})
	case config.ProtocolSubmission:
		fe.Handler = submission.New(submission.Options{
			Picker:           p,
			Retries:          retries,
			Hostname:         hostname(f),
			PlaintextLogin:   f.PlaintextAllowed(),
			MaxLoginAttempts: f.MaxLoginAttempts,
			Logger:           log,
		})
	case config.ProtocolLMTP:
		h, err := rt.lmtpHandler(cfg, f, p, log)
		if err != nil {
			return fe, err
		}
		fe.Handler = h
	case config.ProtocolTCP:
		fe.Handler = tcp.New(tcp.Options{Picker: p, Retries: retries})
	default:
		return fe, fmt.Errorf("protocol %q is not supported", f.Protocol)
	}
	return fe, nil
}

// retriesOption translates backend.retries for the frontends' Options,
// where zero means "the package default" and a negative value "none": the
// configuration already resolved the default, so its 0 means none.
func retriesOption(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func serverTLS(f *config.Frontend) (*tls.Config, error) {
	opts := tlsutil.ServerOptions{MinVersion: f.TLS.MinVersion.Uint16()}
	for _, c := range f.TLS.Certs {
		opts.Certs = append(opts.Certs, tlsutil.CertFiles{Cert: c.Cert, Key: c.Key})
	}
	s, err := tlsutil.NewServer(opts)
	if err != nil {
		return nil, err
	}
	return s.Config(), nil
}

func hostname(f *config.Frontend) string {
	if f.Hostname != "" {
		return f.Hostname
	}
	h, err := os.Hostname()
	if err != nil {
		return "localhost"
	}
	return h
}
