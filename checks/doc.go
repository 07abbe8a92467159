// Package checks runs active health checks against mail servers and keeps
// each server's up/down state with HAProxy-style rise/fall hysteresis.
//
// One Checker watches one server. It probes the server's protocol (tcp, imap,
// pop3, lmtp, smtp, http or managesieve), ends every conversation politely
// (LOGOUT or QUIT) so the server does not log aborted sessions, and
// optionally sends a PROXY v2 header first, as Dovecot listeners with
// "haproxy = yes" require. Transitions between up and down are logged and
// reported to Options.OnChange, which is where the director and stats learn
// about them.
//
//	c, err := checks.New(checks.Options{
//		Server:  "mail1",
//		Type:    checks.TypeIMAP,
//		Address: "10.0.0.11:143",
//		Proxy:   checks.ProxyLocal,
//		Logger:  logger,
//		OnChange: func(t checks.Transition) {
//			dir.SetHealth(t.Server, t.Up, t.Reason)
//		},
//	})
//	if err != nil {
//		return err
//	}
//	go c.Run(ctx) // returns when ctx is done
//
// A single probe without any state change, for "maildirector check" or the
// control socket:
//
//	res := c.CheckNow(ctx)
//	fmt.Println(res.Reason) // "imap: OK in 3ms" or "imap: timeout after 2s reading greeting"
//
// # Rise and fall
//
// The state machine is HAProxy's: a health counter runs from 0 to
// rise+fall-1. A passing check increments it, and the server comes up when it
// reaches rise. A failing check decrements it while it is above rise; at or
// below rise, a failure drops it to 0 and the server goes down. So an up
// server with a full counter needs fall consecutive failures to go down, and a
// down server needs rise consecutive passes to come up (a failure while down
// starts the count again).
//
// A new Checker starts fully up (InitFullyUp): fall failed checks are needed
// before the first transition, so restarting maildirector does not flap a
// fleet on one unlucky probe. HAProxy's own default, init-state "up", takes a
// server down on its first failure; Options.Initial selects it, or one of the
// down states.
//
// Checks are spaced by Inter while the counter is full (steady up), by
// DownInter while it is 0 (steady down) and by FastInter in between, where the
// state is about to change.
//
// ForceDown is the hook for passive health: the proxy saw real sessions fail,
// so the server goes down now and needs rise passing checks to come back.
package checks
