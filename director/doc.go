// Package director owns the servers of one backend (their weights, health
// and administrative states) and the decision "which server gets this user".
//
// A Director is built once per backend from Options. Frontends call Pick at
// login time, dial the server named in the returned Lease, and report back:
// Established when the server accepted the session (the login, or the LMTP
// recipient), Failed when it did not answer (which may count toward passive
// health), and Release when the session ends.
//
//	d, err := director.New(director.Options{
//		Name:          "imap",
//		DefaultDomain: "example.com",
//		ErrorLimit:    3,
//		Servers: []director.ServerOptions{
//			{Name: "mail1", Weight: 100},
//			{Name: "mail2", Weight: 100},
//			{Name: "spare", Weight: 100, Backup: true},
//		},
//	})
//	if err != nil {
//		return err
//	}
//	lease, err := d.Pick(director.Request{User: "Alice", Client: clientAddr})
//	if err != nil {
//		return err // errors.Is(err, director.ErrNoServer)
//	}
//	conn, err := dial(lease.Server)
//	if err != nil {
//		lease.Failed(err) // counts as the release
//		return err
//	}
//	lease.Established()
//	defer lease.Release()
//
// # Balancing
//
// BalanceUser (the default) keeps a sticky table, user → server, in an LRU
// cache. A user with live sessions always returns to the server that holds
// them, as long as that server is up and not in maintenance: Dovecot's
// indexes must not be written by two servers at once. When the user's last
// session ends the entry lives on for Options.UserExpire, so a client that
// reconnects lands where its caches are warm. Only an established session
// (Lease.Established) creates or refreshes an entry: logins in progress
// share an entry outside the table, so that they land together, and a
// login that ends without one (a rejected password, an unknown recipient,
// a dead server) leaves the table as it found it: failed logins cannot
// grow it or keep a user's entry alive. Users without an entry are
// placed by weighted rendezvous hashing (HRW, highest random weight):
//
//	score(server, user) = -weight / ln(u),  u = hash(server, user) mapped into (0, 1)
//
// and the usable server with the highest score wins. HRW is chosen over a
// hash ring because
//
//   - each server's share of users is exactly its weight share (no virtual
//     nodes, no ring-resolution error);
//   - adding a server of weight w moves only about w/W of the users, and all
//     of them to the new server; removing a server moves only its own users;
//   - sorting servers by score gives every user a stable preference order for
//     free, which is what "next server" means for retries and LMTP (HashOrder).
//
// The hash is FNV-1a 64 of the user and of the server name, combined and
// passed through the splitmix64 finaliser. It is fixed on purpose: every
// maildirector node with the same configuration, before and after a
// restart, places every user on the same server.
//
// BalanceLeastConn picks the server with the fewest live sessions relative to
// its weight (LMTP recipients' leases are not sessions, see Request.Recipient), BalanceRoundRobin runs smooth weighted round robin; both still
// record sticky entries so a user's later sessions follow the first one.
// BalanceSource hashes the client IP address (HRW again) and keeps no table.
//
// BalanceDirector replaces HRW by Dovecot 2.3's director placement, for
// sites that migrate from a Dovecot director tier without moving anyone:
// each server contributes ServerOptions.VhostCount points MD5("<ip>-<i>")
// to a ring, and a user goes to the first point at or after the MD5 of
// Options.UsernameHash expanded for the name (ring.go cites the Dovecot
// functions each rule reproduces). It keeps the sticky table as
// BalanceUser does; Assign restores the director's own assignments.
//
// # Server states
//
// A server takes new users when it is up, AdminReady, has weight > 0 and is
// under MaxConn, which counts sessions only: LMTP recipients neither fill a
// server nor are refused by a full one (Request.Recipient). AdminDrain and weight 0 mean "no new users": sticky users
// and their sessions stay. AdminMaint and health down move sticky users
// elsewhere on their next login. Backup servers are used only when no active
// server is usable: the first usable one in configuration order, or all of
// them through the balance algorithm with Options.AllBackups.
//
// Health comes from the outside (SetHealth, fed by package checks) and from
// passive observation: Options.ErrorLimit consecutive Failed leases mark the
// server down; only SetHealth(up=true) brings it back.
package director
