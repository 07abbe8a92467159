// Package chrometest drives Debian's headless Chromium for the tests of
// the dashboard (through chromedp): start it, run bounded actions and
// scripts in the page, poll it, save screenshots. Every action has a
// deadline, and a missing chromium fails the test (scripts/deps.sh
// installs it), never skips it.
package chrometest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ActionTimeout bounds every browser action; startTimeout its start.
const (
	ActionTimeout = 15 * time.Second
	startTimeout  = 60 * time.Second
)

// Start starts chromium headless with a window of width × height (as root
// in a container it needs --no-sandbox) and returns its tab's context; the
// browser ends with the test.
func Start(t testing.TB, width, height int) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium not found (%v): run `make deps` (scripts/deps.sh installs Debian's chromium)", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.WindowSize(width, height))
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

// Do runs actions with a bounded timeout.
func Do(t testing.TB, ctx context.Context, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, ActionTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// Eval evaluates expr in the page with a bounded timeout.
func Eval[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, ActionTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// Wait polls the page until expr is true, for up to ActionTimeout.
func Wait(t testing.TB, ctx context.Context, what, expr string) {
	t.Helper()
	WaitFor(t, ctx, ActionTimeout, what, expr)
}

// WaitFor polls the page until expr is true, up to limit (bounded polling,
// not a timing assertion).
func WaitFor(t testing.TB, ctx context.Context, limit time.Duration, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if Eval[bool](t, ctx, "!!("+expr+")") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (%s)", limit, what, expr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Shot saves a screenshot of the whole page as name in
// $MAILDIRECTOR_ARTIFACTS (default: the test's temporary directory) and
// logs where.
func Shot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("MAILDIRECTOR_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(ctx, ActionTimeout)
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
