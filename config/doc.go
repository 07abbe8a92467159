// Package config owns maildirector's configuration file: the TOML schema
// (the documented structs of this package), strict loading, defaults and
// validation.
//
// Loading is strict: a key the schema does not know is an error (a typo
// must not silently leave a default in place), and so is a value of the
// wrong type. Every problem [Config.Validate] finds is reported at once,
// each prefixed with its key path, e.g.
//
//	backend.dovecot.server[2].address: "10.0.0.13:99999": port 99999 out of range 1..65535
//	frontend.imap.timeouts.idle: 10m is too short for imap: ...
//
// Array entries ([[backend.NAME.server]], [[frontend.NAME.tls.cert]]) are
// indexed from 0 in file order.
//
// After [Load] or [Parse] the Config is an immutable snapshot: callers
// read it and never write to it; a reload parses a new one. Values that
// depend on other keys are resolved at load, so readers need no fallbacks:
// Frontend.Timeouts holds the effective timeouts (global values where the
// frontend sets none), Frontend.TrustedProxies the effective list,
// Frontend.Hostname and LMTP.SpoolDir their system defaults,
// Check.FastInter and Check.DownInter default to Check.Inter,
// ServerTLS.ServerName to the server's host, Check.Password to the content
// of Check.PasswordFile, and Backend.Protocols lists who uses a backend.
// Values that depend on a caller's choice are methods: [Server.Port],
// [Server.DialAddress], [Backend.CheckAddress], [Backend.CheckSendProxy],
// [Frontend.PlaintextAllowed].
//
// The package imports nothing from this module; cmd translates a Config
// into each runtime package's Options.
//
// Usage:
//
//	cfg, err := config.Load("/etc/maildirector/maildirector.toml")
//	if err != nil {
//		for _, p := range config.Problems(err) {
//			fmt.Fprintln(os.Stderr, p)
//		}
//		os.Exit(1)
//	}
//	fmt.Println(cfg.Summary())
//	for _, name := range cfg.FrontendNames() {
//		f := cfg.Frontends[name]
//		b := cfg.Backends[f.Backend]
//		for _, s := range b.Servers {
//			fmt.Println(name, "->", s.Name, s.DialAddress(f.Protocol))
//		}
//	}
package config
