package dovecotlab

import (
	"fmt"
	"net"
)

// fillPorts returns fixed with every zero port replaced by a free port of
// addr; the ManageSieve port only when sieve is set. The ports are found by listening on addr:0 (all at once, so
// they differ) and closing; another process may take one before Dovecot
// binds it, which Start handles by picking again.
func fillPorts(addr string, fixed InstancePorts, sieve bool) (InstancePorts, error) {
	p := fixed
	fields := []*int{&p.IMAP, &p.IMAPDirect, &p.POP3, &p.POP3Direct, &p.LMTP, &p.LMTPDirect, &p.Submission}
	if sieve {
		fields = append(fields, &p.ManageSieve)
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, f := range fields {
		if *f != 0 {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
		if err != nil {
			return p, fmt.Errorf("pick free port: %w", err)
		}
		lns = append(lns, ln)
		*f = ln.Addr().(*net.TCPAddr).Port
	}
	return p, nil
}
