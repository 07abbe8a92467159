package main

// This file is the one translation from the configuration to the runtime
// packages' Options. The configuration has resolved every default already
// (config.Load), so nothing here picks a default of its own: a value is
// copied, or converted where a runtime package spells "none" differently.
// Runtime packages take zero as their documented default and a negative
// value as none; a configured 0 that means none becomes -1 with [none].

import (
	"crypto/tls"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/maildirector/maildirector/checks"
	"github.com/maildirector/maildirector/cluster"
	"github.com/maildirector/maildirector/config"
	"github.com/maildirector/maildirector/director"
	"github.com/maildirector/maildirector/internal/rsasign"
	httpfe "github.com/maildirector/maildirector/protocols/http"
	"github.com/maildirector/maildirector/protocols/imap"
	"github.com/maildirector/maildirector/protocols/lmtp"
	"github.com/maildirector/maildirector/protocols/managesieve"
	"github.com/maildirector/maildirector/protocols/pop3"
	"github.com/maildirector/maildirector/protocols/submission"
	"github.com/maildirector/maildirector/protocols/tcp"
	"github.com/maildirector/maildirector/proxy"
	"github.com/maildirector/maildirector/route"
	"github.com/maildirector/maildirector/tlsutil"
)

// none turns a configured count whose 0 means "none" into the runtime
// packages' spelling of none (negative); other values pass unchanged.
func none(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// frontendOptions is the engine's Frontend for f, without its handler.
// retries is the most its backends allow: each backend's picker holds its
// own sessions to its own count.
func frontendOptions(f *config.Frontend, retries int) (proxy.Frontend, error) {
	t := f.Timeouts // resolved at load: the global value where f sets none
	fe := proxy.Frontend{
		Name:           f.Name,
		Protocol:       string(f.Protocol),
		Addrs:          f.Bind,
		ImplicitTLS:    f.TLS.Mode == config.TLSModeImplicit,
		TrustedProxies: f.TrustedPrefixes(),
		MaxConn:        f.MaxConn,
		Reserve:        f.Reserve,
		BacklogWait:    f.BacklogWait.D(),
		Retries:        none(retries),
		Splice:         f.Splice,
		Timeouts: proxy.Timeouts{
			Handshake:   t.Handshake.D(),
			PreAuth:     t.Preauth.D(),
			Connect:     t.Connect.D(),
			ServerLogin: t.ServerLogin.D(),
			Idle:        t.Idle.D(),
		},
	}
	switch f.Protocol {
	case config.ProtocolIMAP, config.ProtocolPOP3, config.ProtocolSubmission, config.ProtocolManageSieve:
		fe.Timeouts.LoginDeadline = t.Login.D()
	}
	l := f.Limits // resolved at load: the global value where f sets none
	fe.Limits = proxy.Limits{
		MaxPerClient: l.MaxPerClient,
		MaxRate:      l.MaxRate,
		RateWindow:   l.RateWindow.D(),
		IPv6Prefix:   l.IPv6Prefix,
		Exempt:       l.ExemptPrefixes(),
		PenaltyInit:  l.PenaltyInit.D(),
		PenaltyMax:   l.PenaltyMax.D(),
		BlockAfter:   l.BlockAfter,
		BlockFor:     l.BlockFor.D(),
		TableSize:    l.TableSize,
	}
	if f.TLS.Mode == config.TLSModeNone {
		return fe, nil
	}
	opts := tlsutil.ServerOptions{MinVersion: f.TLS.MinVersion.Uint16(), WrapKey: rsasign.Wrap}
	for _, c := range f.TLS.Curves {
		opts.Curves = append(opts.Curves, c.CurveID())
	}
	for _, c := range f.TLS.Certs {
		opts.Certs = append(opts.Certs, tlsutil.CertFiles{Cert: c.Cert, Key: c.Key})
	}
	s, err := tlsutil.NewServer(opts)
	if err != nil {
		return fe, fmt.Errorf("tls: %w", err)
	}
	fe.TLS = s.Config()
	return fe, nil
}

func imapOptions(f *config.Frontend, p proxy.Picker, caps func() []string) imap.Options {
	return imap.Options{
		Picker:             p,
		Greeting:           f.Greeting,
		PlaintextLogin:     f.PlaintextAllowed(),
		MaxLoginAttempts:   f.MaxLoginAttempts,
		ServerCapabilities: caps,
		ForwardID:          f.Forward == config.ForwardID,
	}
}

func pop3Options(f *config.Frontend, p proxy.Picker, caps func() []string) pop3.Options {
	return pop3.Options{
		Picker:             p,
		Greeting:           f.Greeting,
		PlaintextLogin:     f.PlaintextAllowed(),
		MaxLoginAttempts:   f.MaxLoginAttempts,
		ServerCapabilities: caps,
		ForwardID:          f.Forward == config.ForwardID,
	}
}

func managesieveOptions(f *config.Frontend, p proxy.Picker, caps func() []string) managesieve.Options {
	return managesieve.Options{
		Picker:             p,
		Greeting:           f.Greeting,
		PlaintextLogin:     f.PlaintextAllowed(),
		MaxLoginAttempts:   f.MaxLoginAttempts,
		ServerCapabilities: caps,
	}
}

// submissionOptions: backends are those the frontend routes to; their
// servers with xclient are named as the targets name them.
func submissionOptions(f *config.Frontend, backends []*config.Backend, p proxy.Picker) submission.Options {
	opts := submission.Options{
		Picker:           p,
		Hostname:         f.Hostname,
		PlaintextLogin:   f.PlaintextAllowed(),
		MaxLoginAttempts: f.MaxLoginAttempts,
	}
	for _, b := range backends {
		for _, s := range b.Servers {
			if s.XClient {
				if opts.XClient == nil {
					opts.XClient = make(map[string]bool)
				}
				opts.XClient[proxy.Target{Backend: b.Name, Server: s.Name}.Name()] = true
			}
		}
	}
	return opts
}

// routeTable is f's routing rules; def is f's own backend, the default.
// A master login is routed by the domain before def's
// master_user_separator.
func routeTable(f *config.Frontend, def *config.Backend) route.Table {
	t := route.Table{Default: f.Backend, MasterSeparator: def.MasterUserSeparator}
	for _, r := range f.Route {
		rule := route.Rule{Backend: r.Backend, Client: r.ClientPrefixes()}
		for _, n := range r.DomainPatterns() {
			rule.Domains = append(rule.Domains, route.Name{Name: n.Name, Suffix: n.Suffix})
		}
		for _, n := range r.SNIPatterns() {
			rule.SNI = append(rule.SNI, route.Name{Name: n.Name, Suffix: n.Suffix})
		}
		for _, l := range r.LocalAddrs() {
			rule.Local = append(rule.Local, route.Local{Addr: l.Addr, Port: l.Port})
		}
		t.Rules = append(t.Rules, rule)
	}
	return t
}

func tcpOptions(p proxy.Picker) tcp.Options { return tcp.Options{Picker: p} }

// httpOptions: the frontend's HTTP table and its HAProxy-style timeouts
// (connect is the frontend's, shared with the mail protocols); rec counts
// its requests (nil in `check`).
func httpOptions(f *config.Frontend, p proxy.Picker, rec httpfe.Recorder) httpfe.Options {
	h, t := f.HTTP, f.Timeouts
	opts := httpfe.Options{
		Picker:           p,
		Backend:          f.Backend,
		ForwardFor:       h.ForwardFor,
		ForwardForExcept: h.ForwardForExceptPrefixes(),
		Capture:          make([]httpfe.Capture, len(h.Capture)), // empty, not nil, when none is captured
		ReasonHeader:     h.ReasonHeader,
		MaxRequests:      h.MaxRequests,
		ServerClose:      h.ServerClose,
		MaxIdlePerServer: none(h.MaxIdlePerServer),
		ReplayBuffer:     none(int(h.ReplayBuffer)),
		Timeouts: httpfe.Timeouts{
			Request:   t.Request.D(),
			Queue:     t.Queue.D(),
			Connect:   t.Connect.D(),
			Client:    t.Client.D(),
			Server:    t.Server.D(),
			KeepAlive: t.KeepAlive.D(),
		},
		Stats: rec,
	}
	for i, c := range h.Capture {
		opts.Capture[i] = httpfe.Capture{Name: c.Name, Len: c.Len}
	}
	return opts
}

// lmtpOptions: an LMTP session waits for the MTA's next command for the
// frontend's idle timeout (5m unless set, config resolves it), and for a
// server's reply before DATA for server_login.
func lmtpOptions(f *config.Frontend, p proxy.Picker) lmtp.Options {
	l, t := f.LMTP, f.Timeouts
	opts := lmtp.Options{
		Picker:         p,
		Hostname:       f.Hostname,
		MaxRecipients:  l.MaxRecipients,
		MaxMessageSize: int64(l.MaxMessageSize),
		SpoolMemory:    int64(none(int(l.SpoolMemory))),
		SpoolDir:       l.SpoolDir,
		SpoolBudget:    int64(l.SpoolBudget),
		MaxServerConns: l.MaxServerConns,
		DataTimeout:    t.Data.D(),
		ClientTimeout:  t.Idle.D(),
		ServerTimeout:  t.ServerLogin.D(),
	}
	if l.ServerDown == config.ServerDownNext {
		opts.ServerDown = lmtp.ServerDownNext
	}
	if l.BareLF == config.BareLFReject {
		opts.BareLF = lmtp.BareLFReject
	}
	return opts
}

// directorOptions is the director of backend b, without its callbacks.
func directorOptions(b *config.Backend) (director.Options, error) {
	balance, err := director.ParseBalance(string(b.Balance))
	if err != nil {
		return director.Options{}, fmt.Errorf("balance: %w", err)
	}
	opts := director.Options{
		Name:               b.Name,
		Balance:            balance,
		UserExpire:         b.UserExpire.D(),
		DefaultDomain:      b.DefaultDomain,
		RecipientDelimiter: b.RecipientDelimiter,
		StripLoginDetail:   b.StripLoginDetail,
		MasterSeparator:    b.MasterUserSeparator,
		UsernameHash:       b.DirectorUsernameHash,
		AllBackups:         b.AllBackups,
		ErrorLimit:         b.ErrorLimit,
	}
	if b.UserExpire == 0 {
		opts.UserExpire = -1 // none: forget users as soon as their last session ends
	}
	if b.Check.Type == config.CheckTypeNone {
		// Passive health marks a server down until its checks pass again;
		// without checks nothing would ever bring it back ("none": servers
		// are always up), as HAProxy's observe needs check.
		opts.ErrorLimit = 0
	}
	for i, s := range b.Servers {
		admin, err := adminState(s.State)
		if err != nil {
			return opts, fmt.Errorf("server[%d].state: %w", i, err)
		}
		ip, _ := netip.ParseAddr(s.Host()) // balance director: validated as an IP by config
		opts.Servers = append(opts.Servers, director.ServerOptions{
			Name: s.Name, Weight: s.Weight, Backup: s.Backup, Admin: admin, MaxConn: s.MaxConn,
			IP: ip, VhostCount: none(s.VhostCount),
		})
	}
	return opts, nil
}

func adminState(s config.ServerState) (director.AdminState, error) {
	return director.ParseAdminState(string(s))
}

// clientTLS is the TLS to server s, or nil for plaintext.
func clientTLS(s *config.Server) (*tls.Config, error) {
	if !s.TLS.Enabled {
		return nil, nil
	}
	return tlsutil.NewClientConfig(tlsutil.ClientOptions{
		Verify: s.TLS.Verify, CAFile: s.TLS.CA, ServerName: s.TLS.ServerName,
	})
}

// targets is how a frontend of protocol p dials each server of b.
func targets(b *config.Backend, p config.Protocol, tlsBy map[string]*tls.Config) (map[string]proxy.Target, error) {
	out := make(map[string]proxy.Target, len(b.Servers))
	for i, s := range b.Servers {
		mode, err := proxy.ParseProxyMode(string(s.SendProxy))
		if err != nil {
			return nil, fmt.Errorf("server[%d].send_proxy: %w", i, err)
		}
		out[s.Name] = proxy.Target{
			Backend: b.Name,
			Server:  s.Name,
			Address: s.DialAddress(p),
			Proxy:   mode,
			TLS:     tlsBy[s.Name],
		}
	}
	return out, nil
}

// checkOptions is the checker of server s of backend b, without its
// callbacks. tc is the TLS the sessions use to s (nil: plaintext).
func checkOptions(b *config.Backend, s *config.Server, tc *tls.Config) (checks.Options, error) {
	c := b.Check
	typ, err := checks.ParseType(string(c.Type))
	if err != nil {
		return checks.Options{}, fmt.Errorf("check.type: %w", err)
	}
	ph, err := checks.ParseProxyHeader(string(b.CheckSendProxy(s)))
	if err != nil {
		return checks.Options{}, fmt.Errorf("check.send_proxy: %w", err)
	}
	opts := checks.Options{
		Server:       s.Name,
		Type:         typ,
		Address:      b.CheckAddress(s),
		Inter:        c.Inter.D(),
		FastInter:    c.FastInter.D(),
		DownInter:    c.DownInter.D(),
		Timeout:      c.Timeout.D(),
		Spread:       c.Inter.D(),
		Rise:         c.Rise,
		Fall:         c.Fall,
		Proxy:        ph,
		User:         c.User,
		Password:     c.Password,
		SelectInbox:  c.SelectInbox,
		HTTPMethod:   c.HTTPMethod,
		HTTPPath:     c.HTTPPath,
		HTTPHost:     c.HTTPHost,
		ExpectStatus: c.ExpectStatus.Lo,
		// A range's top; one status: the same, which the checks read as
		// that status only.
		ExpectStatusMax: c.ExpectStatus.Hi,
	}
	if b.CheckTLS(s) {
		opts.TLS = tc
		if tc == nil {
			// A TLS check of a server the sessions reach in plaintext
			// verifies nothing, as HAProxy's "check-ssl verify none".
			opts.TLS = &tls.Config{InsecureSkipVerify: true, ServerName: s.TLS.ServerName}
		}
	}
	return opts, nil
}

// clusterOptions translates [cluster] (Enabled) into cluster.Options; the
// callbacks and holds are the runtime's to add.
func clusterOptions(c config.Cluster) (cluster.Options, error) {
	var tc *tls.Config
	if c.TLS.Cert != "" || c.TLS.CA != "" || slices.ContainsFunc(c.Endpoints, func(e string) bool { return strings.HasPrefix(e, "https://") }) {
		var err error
		if tc, err = tlsutil.NewClientConfig(tlsutil.ClientOptions{Verify: true, CAFile: c.TLS.CA}); err != nil {
			return cluster.Options{}, fmt.Errorf("cluster.tls: %w", err)
		}
		if c.TLS.Cert != "" {
			cert, err := tls.LoadX509KeyPair(c.TLS.Cert, c.TLS.Key)
			if err != nil {
				return cluster.Options{}, fmt.Errorf("cluster.tls: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
	}
	return cluster.Options{
		Endpoints: c.Endpoints, Prefix: c.Prefix, Node: c.Node, TLS: tc,
		DialTimeout: c.DialTimeout.D(), RequestTimeout: c.RequestTimeout.D(),
		Heartbeat: c.Heartbeat.D(), NodeTTL: c.NodeTTL.D(), Refresh: c.Refresh.D(),
	}, nil
}
