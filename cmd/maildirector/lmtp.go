package main

import (
	"log/slog"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/protocols/lmtp"
	"github.com/maildirector/maildirector/proxy"
)

// lmtpHandler builds the LMTP frontend (store and forward, per recipient).
func (rt *runtime) lmtpHandler(cfg *config.Config, f *config.Frontend, p *picker, log *slog.Logger) (proxy.Handler, error) {
	opts := lmtp.Options{
		Picker:   p,
		Hostname: hostname(f),
		Retries:  retriesOption(cfg.Backends[f.Backend].Retries),
		Logger:   log,
	}
	t := f.EffectiveTimeouts(cfg.Global)
	opts.DataTimeout = t.Data.D()
	opts.ClientTimeout = t.Preauth.D()
	opts.ServerTimeout = t.ServerLogin.D()
	if l := f.LMTP; l != nil {
		opts.MaxRecipients = l.MaxRecipients
		opts.MaxMessageSize = int64(l.MaxMessageSize)
		opts.SpoolMemory = int64(l.SpoolMemory)
		opts.SpoolDir = l.SpoolDir
		opts.MaxServerConns = l.MaxServerConns
		if l.ServerDown == config.ServerDownNext {
			opts.ServerDown = lmtp.ServerDownNext
		}
		if l.BareLF == config.BareLFReject {
			opts.BareLF = lmtp.BareLFReject
		}
	}
	h := lmtp.New(opts)
	rt.pendingLMTP = append(rt.pendingLMTP, h)
	return h, nil
}

// swapLMTP makes the LMTP frontends just built the running ones and closes
// the idle server connections of those they replace (sessions still using
// an old one finish with it; its later transactions dial anew).
func (rt *runtime) swapLMTPLocked() {
	for _, h := range rt.lmtp {
		h.Close()
	}
	rt.lmtp, rt.pendingLMTP = rt.pendingLMTP, nil
}
