package integration

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReloadUnderLoad: reloads, SIGHUP and `ctl reload` alternating, while
// IMAP clients log in and MTAs deliver over LMTP. Every login succeeds,
// every recipient is answered 250, and every 250 is exactly one copy in a
// maildir. make test runs 20 reloads over about 15 seconds; make soak
// (MAILDIRECTOR_SOAK=1) runs 100 over 2 minutes.
func TestReloadUnderLoad(t *testing.T) {
	reloads, during := 20, 15*time.Second
	if soakScale() {
		reloads, during = 100, 2*time.Minute
	}
	var sock string
	e := startEnvEdited(t, setupSpec{
		Frontends: []frontendSpec{{Name: "imap", Protocol: "imap"}, lmtpFrontends("")[0]},
		Backend:   lmtpBackend,
	}, nil, withControl(&sock))
	orig := readFile(t, e.cfg)
	var users []string
	for i := range 40 {
		users = append(users, fmt.Sprintf("user%03d", 100+i))
	}
	imap := startIMAPLoad(e.addrs["imap"], users, 4)
	lmtp := startLMTPLoad(e.addrs["lmtp"], users, 2)

	// Each reload changes the file (a server's weight, the IMAP
	// frontend's maxconn, whose slots live sessions hold), so every one
	// builds and swaps in new handlers and limits.
	const done = "configuration reloaded"
	var viaSignal, viaCtl int
	start := time.Now()
	for i := range reloads {
		cfg := strings.Replace(orig, "name = \"dovecot2\"\n", fmt.Sprintf("name = \"dovecot2\"\nweight = %d\n", 90+i%2*10), 1)
		cfg = strings.Replace(cfg, "[frontend.imap]\n", fmt.Sprintf("[frontend.imap]\nmaxconn = %d\n", 500+i%2), 1)
		if err := os.WriteFile(e.cfg, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		before := strings.Count(e.md.log.String(), done)
		if i%2 == 0 {
			e.md.cmd.Process.Signal(syscall.SIGHUP)
			viaSignal++
		} else {
			if out, err := ctlCommand(sock, "reload"); err != nil || out != "OK" {
				t.Fatalf("ctl reload %d: got %q, %v; want OK", i, out, err)
			}
			viaCtl++
		}
		eventually(t, fmt.Sprintf("reload %d to be applied", i), func() bool {
			return strings.Count(e.md.log.String(), done) > before
		})
		// Paced, not timed: the reloads spread over the period (one
		// that takes longer than its share makes the next come at once).
		time.Sleep(time.Until(start.Add(during * time.Duration(i+1) / time.Duration(reloads))))
	}
	elapsed := time.Since(start)
	imap.finish()
	lmtp.finish()

	for _, f := range imap.failures {
		t.Errorf("IMAP: %s", f)
	}
	delivered := lmtp.checkDelivered(t, e)
	if got := strings.Count(e.md.log.String(), "reload failed"); got != 0 {
		t.Errorf("%d failed reloads in the log, want 0", got)
	}
	t.Logf("%d reloads (%d SIGHUP, %d ctl reload) in %v: %d IMAP logins, %d failed; %d LMTP messages, %d recipients delivered once each",
		reloads, viaSignal, viaCtl, elapsed.Round(time.Second), imap.ok.Load(), len(imap.failures), lmtp.soak.finished.Load(), delivered)
	if imap.ok.Load() < int64(reloads) || delivered < reloads {
		t.Errorf("only %d logins and %d deliveries during %d reloads: the load did not run", imap.ok.Load(), delivered, reloads)
	}
	if e.md.exited() {
		t.Errorf("maildirector exited: %v", e.md.err)
	}
}
