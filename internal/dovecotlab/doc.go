// Package dovecotlab starts real Dovecot 2.3 servers on loopback for
// maildirector's integration tests, benchmarks and demo. It owns their
// lifecycle (start, polite stop, kill, freeze) and gives tests a look at
// their logs and maildirs; it never touches the packaged Dovecot service.
//
// Each instance has its own dovecot.conf (no include of /etc/dovecot),
// base_dir, state_dir, log file, users file and maildirs, and listens on
// 127.0.0.1 only (or ::1 only, with Options.ListenAddress):
//
//	IMAP, POP3, LMTP, Submission   haproxy = yes: a PROXY v1/v2 header is mandatory
//	IMAPDirect, POP3Direct, LMTPDirect   plain, for direct-connection comparisons
//	ManageSieve   haproxy = yes, only with Options.ManageSieve (Pigeonhole's sieve protocol)
//
// Settings: ssl = no (Options.TLS: implicit TLS on the haproxy IMAP, POP3
// and submission listeners, after the PROXY header), auth_mechanisms = plain login, passwd-file passdb and
// userdb, auth_username_format = %Ln (so "user000" and "user000@lab.test"
// are one user, for logins and LMTP RCPT), maildir:~/Maildir owned by the
// "dovecot" user, auth_verbose = yes, the default login_log_format_elements
// plus rport and local_name (the TLS SNI, or a PROXY v2 AUTHORITY TLV),
// no authentication penalty (every test connects from 127.0.0.1), and
// mail_max_userip_connections high enough for benchmarks.
//
// What Dovecot 2.3.19 logs for a login through a haproxy = yes port with a
// PROXY v2 header from 203.0.113.8:40002 to 198.51.100.2:993 whose PP2 SSL
// TLV has the client bit set:
//
//	Nov 21 06:28:43 imap-login: Info: Login: user=<user001>, method=PLAIN, rip=203.0.113.8, lip=198.51.100.2, mpid=7517, secured, session=<bm7geMNgQJzLAHEH>
//
// rip and lip are the header's addresses. The SSL TLV shows as "secured",
// not "TLS": Dovecot 2.3 prints "TLS" only for TLS it terminated itself.
// Without the TLV the element is absent (rip differs from lip), and a
// plaintext LOGIN is refused when Options.DisablePlaintextAuth is set.
// A direct loopback login also shows "secured" (rip equals lip). Ports are
// not logged. ParseLogin and Instance.Logins read these lines.
//
// Usage in a test:
//
//	lab := dovecotlab.StartT(t, dovecotlab.Options{Instances: 2})
//	backend := lab.Instances[0]
//	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(backend.Ports.IMAP))
//	// … connect through maildirector, LOGIN user000 pass …
//	logins, _ := backend.Logins()
//	_ = backend.Freeze() // accepts TCP, answers nothing
//
// Outside tests, Start returns errors and Close must be called:
//
//	lab, err := dovecotlab.Start(dovecotlab.Options{Dir: ".demo/lab"})
//	if err != nil { ... }
//	defer lab.Close()
//
// StartDirector runs a Dovecot 2.3 director instead (the director service
// alone, a ring of one on a loopback port, director_mail_servers given as
// IPs it never connects to), for comparing maildirector's balance
// "director" with the real thing through doveadm director:
//
//	d := dovecotlab.StartDirectorT(t, dovecotlab.DirectorOptions{MailServers: []string{"127.0.0.2", "127.0.0.3"}})
//	_, _ = d.Doveadm("director", "add", "127.0.0.2", "50")
//	ip, _ := d.Hashed("user000") // doveadm director status user000: "Hashed:"
//
// The machine needs the Debian packages dovecot-imapd, dovecot-pop3d,
// dovecot-lmtpd and dovecot-submissiond, and dovecot-managesieved for
// Options.ManageSieve (scripts/deps.sh), and root, since
// the master runs as root and drops privileges like a packaged Dovecot.
package dovecotlab
