package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

	ctx := startBrowser(t)
	// The credentials in the address, as after the browser's prompt: the
	// page's own requests must carry them too.
	do(t, ctx, chromedp.Navigate("http://"+dashUser+":"+dashPassword+"@"+statsAddr+"/"))
	row := `document.querySelector('tr[data-server="dovecot/dovecot2"]')`
	waitJS(t, ctx, "dovecot2 UP on the page", row+` && `+row+`.querySelector("td[data-col=status]").textContent === "UP"`)
	evalJS[chromedp.Void](t, ctx, `window.noReload = true`)

	if err := e.instanceOf("dovecot2").Stop(); err != nil {
		t.Fatal(err)
	}
	// Bounded polling of the DOM as the page updates itself; fall × inter
	// is 1s, but no wall-clock time is asserted.
	waitJSFor(t, ctx, 30*time.Second, "dovecot2 DOWN on the page", row+`.querySelector("td[data-col=status]").textContent.startsWith("DOWN")`)

	reason := serverReason(t, statsAddr, "dovecot", "dovecot2")
	if !strings.HasPrefix(reason, "imap: ") {
		t.Fatalf("stats.json: dovecot2's reason %q, want an imap check's", reason)
	}
	// The reason cell, not the last check's result, which often reads the same.
	if got := evalJS[string](t, ctx, row+`.querySelector("td[data-col=reason]").title`); got != reason {
		t.Errorf("dovecot2's reason: got %q, want %q", got, reason)
	}
	if got := evalJS[string](t, ctx, row+`.querySelector("td[data-col=reason]").textContent`); got != reason {
		t.Errorf("dovecot2's reason: got %q, want %q", got, reason)
	}
	if got := evalJS[string](t, ctx, row+`.className`); got != "down" {
		t.Errorf("dovecot2's row: class %q, want down (red)", got)
	}
	if got := evalJS[string](t, ctx, `document.querySelector('tr[data-server="dovecot/dovecot1"] td[data-col=status]').textContent`); got != "UP" {
		t.Errorf("dovecot1: status %q, want UP", got)
	}
	if !evalJS[bool](t, ctx, `window.noReload === true`) {
		t.Errorf("the page reloaded: it must update itself in place")
	}
	shot(t, ctx, "dashboard.png")

	// maildirector gone: the last data stays, under the banner.
	e.md.stop()
	waitJS(t, ctx, "the stale banner", `!document.getElementById("stale").hidden`)
	if got := evalJS[string](t, ctx, `document.getElementById("stale").textContent`); !strings.HasPrefix(got, "stale: last update at ") {
		t.Errorf("banner: got %q, want %q", got, "stale: last update at …")
	}
	if got := evalJS[string](t, ctx, row+`.querySelector("td[data-col=status]").textContent`); !strings.HasPrefix(got, "DOWN") {
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

// ---- headless Chromium (as in stats/dashboard_test.go) ----

// actionTimeout bounds every browser action; startTimeout its start.
const (
	actionTimeout = 15 * time.Second
	startTimeout  = 60 * time.Second
)

// startBrowser starts Debian's chromium headless (as root in a container
// it needs --no-sandbox) and returns its tab's context. A missing chromium
// fails the test: scripts/deps.sh installs it.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (%v): run `make deps` (scripts/deps.sh installs Debian's chromium)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(1600, 900))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
	})
	// The first Do starts the browser and binds it to ctx, so it cannot
	// take a timeout of its own: it is bounded from here.
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start chromium: %v", err)
		}
	case <-time.After(startTimeout):
		cancelTab()
		t.Fatalf("chromium did not start within %v", startTimeout)
	}
	return ctx
}

// do runs actions with a bounded timeout.
func do(t *testing.T, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, actionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// evalJS evaluates expr in the page with a bounded timeout.
func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, actionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS polls the page until expr is true, for up to actionTimeout.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	waitJSFor(t, ctx, actionTimeout, what, expr)
}

// waitJSFor polls the page until expr is true, up to a deadline (bounded
// polling, not a timing assertion).
func waitJSFor(t *testing.T, ctx context.Context, limit time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if evalJS[bool](t, ctx, "!!("+expr+")") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (%s)", limit, what, expr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// shot saves a screenshot of the whole page in $MAILDIRECTOR_ARTIFACTS
// (default: the test's temporary directory) and logs where.
func shot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("MAILDIRECTOR_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, actionTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}
