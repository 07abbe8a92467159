package main

import (
	"log/slog"

	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/protocols/smtp"
	"github.com/maildirector/maildirector/proxy"
)

// lmtpHandler builds the LMTP frontend (store and forward, per recipient).
func (rt *runtime) lmtpHandler(cfg *config.Config, f *config.Frontend, p *picker, log *slog.Logger) (proxy.Handler, error) {
	opts := smtp.LMTPOptions{
		Picker:   p,
		Hostname: hostname(f),
		Retries:  cfg.Backends[f.Backend].Retries,
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
			opts.ServerDown = smtp.LMTPServerDownNext
		}
		if l.BareLF == config.BareLFReject {
			opts.BareLF = smtp.LMTPBareLFReject
		}
	}
	return smtp.NewLMTP(opts), nil
}
