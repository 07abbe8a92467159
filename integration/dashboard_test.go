package integration

import (
	"encoding/json"
	"fmt"
	"github.com/maildirector/maildirector/internal/chrometest"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// These tests prove issue 9's dashboard end to end: the page in real
// headless Chromium (Debian's chromium, installed by scripts/deps.sh; the
// test fails without it) against the real binary with real Dovecot servers
// behind it.

const dashUser, dashPassword = "ops", "dash-secret"

// TestDashboardShowsServerDown: with a few sessions running, one Dovecot
// is stopped; the page, which polls the JSON by itself, shows that server
// DOWN with the reason of its transition, without a reload. When
// maildirector goes away the page keeps the last figures under a "stale"
// banner. A screenshot is saved (MAILDIRECTOR_ARTIFACTS, default the
// test's temporary directory).
func TestDashboardShowsServerDown(t *testing.T) {
	statsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	spec := setupSpec{
		Instances: 3,
		Frontends: append(imapFrontends()[:2], lmtpFrontends("")...),
		Check:     "imap",
		Inter:     "500ms", // fall = 2 (the harness's)
		Backend:   lmtpBackend,
	}
	e := startChecksEnv(t, spec, func(e *env) string {
		e.addrs["stats"] = statsAddr // startProcess waits for it too
		return fmt.Sprintf("[stats]\nbind = %q\nrefresh = \"500ms\"\nauth = [%q]\n", statsAddr, dashUser+":"+dashPassword)
	})

	// A few sessions: IMAP logins left open (one on TLS), a wrong
	// password, and LMTP deliveries to a known and an unknown user.
	for _, u := range []string{"user001", "user002", "user003", "user004"} {
		greeted(t, e.addrs["imap"]).login(u)
	}
	greetedTLS(t, e.addrs["imaps"]).login("user005")
	if _, tagged := greeted(t, e.addrs["imap"]).cmd("L1", "LOGIN user006 wrong"); !strings.HasPrefix(tagged, "L1 NO") {
		t.Fatalf("LOGIN with a wrong password: got %q, want NO", tagged)
	}
	mta := lmtpDial(t, e.addrs["lmtp"])
	for i, rcpts := range [][]string{{lmtpAddr("user001"), lmtpAddr("user007")}, {"nobody@" + lmtpDomain}} {
		if _, err := mta.send("sender@example.org", rcpts, lmtpMessage(fmt.Sprint("dash", i), 2000)); err != nil {
			t.Fatal(err)
		}
	}

	ctx := chrometest.Start(t, 1600, 900)
	// The credentials in the address, as after the browser's prompt: the
	// page's own requests must carry them too.
	chrometest.Do(t, ctx, chromedp.Navigate("http://"+dashUser+":"+dashPassword+"@"+statsAddr+"/"))
	row := `document.querySelector('tr[data-server="dovecot/dovecot2"]')`
	chrometest.Wait(t, ctx, "dovecot2 UP on the page", row+` && `+row+`.querySelector("td[data-col=status]").textContent === "UP"`)
	chrometest.Eval[chromedp.Void](t, ctx, `window.noReload = true`)

	if err := e.instanceOf("dovecot2").Stop(); err != nil {
		t.Fatal(err)
	}
	// Bounded polling of the DOM as the page updates itself; fall × inter
	// is 1s, but no wall-clock time is asserted.
	chrometest.WaitFor(t, ctx, 30*time.Second, "dovecot2 DOWN on the page", row+`.querySelector("td[data-col=status]").textContent.startsWith("DOWN")`)

	reason := serverReason(t, statsAddr, "dovecot", "dovecot2")
	if !strings.HasPrefix(reason, "imap: ") {
		t.Fatalf("stats.json: dovecot2's reason %q, want an imap check's", reason)
	}
	// The reason cell, not the last check's result, which often reads the same.
	if got := chrometest.Eval[string](t, ctx, row+`.querySelector("td[data-col=reason]").title`); got != reason {
		t.Errorf("dovecot2's reason: got %q, want %q", got, reason)
	}
	if got := chrometest.Eval[string](t, ctx, row+`.querySelector("td[data-col=reason]").textContent`); got != reason {
		t.Errorf("dovecot2's reason: got %q, want %q", got, reason)
	}
	if got := chrometest.Eval[string](t, ctx, row+`.className`); got != "down" {
		t.Errorf("dovecot2's row: class %q, want down (red)", got)
	}
	if got := chrometest.Eval[string](t, ctx, `document.querySelector('tr[data-server="dovecot/dovecot1"] td[data-col=status]').textContent`); got != "UP" {
		t.Errorf("dovecot1: status %q, want UP", got)
	}
	if !chrometest.Eval[bool](t, ctx, `window.noReload === true`) {
		t.Errorf("the page reloaded: it must update itself in place")
	}
	chrometest.Shot(t, ctx, "dashboard.png")

	// maildirector gone: the last data stays, under the banner.
	e.md.stop()
	chrometest.Wait(t, ctx, "the stale banner", `!document.getElementById("stale").hidden`)
	if got := chrometest.Eval[string](t, ctx, `document.getElementById("stale").textContent`); !strings.HasPrefix(got, "stale: last update at ") {
		t.Errorf("banner: got %q, want %q", got, "stale: last update at …")
	}
	if got := chrometest.Eval[string](t, ctx, row+`.querySelector("td[data-col=status]").textContent`); !strings.HasPrefix(got, "DOWN") {
		t.Errorf("while stale: dovecot2 shows %q, want the last data's DOWN", got)
	}
}

// serverReason reads a server's reason from stats.json.
func serverReason(t *testing.T, addr, backend, server string) string {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+"/stats.json", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(dashUser, dashPassword)
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var snap struct {
		Backends []struct {
			Name    string
			Servers []struct{ Name, Reason string }
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
		t.Fatalf("stats.json: %v", err)
	}
	for _, b := range snap.Backends {
		for _, s := range b.Servers {
			if b.Name == backend && s.Name == server {
				return s.Reason
			}
		}
	}
	t.Fatalf("stats.json: no server %s/%s", backend, server)
	return ""
}
