package stats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/maildirector/maildirector/internal/chrometest"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/maildirector/maildirector/checks"
	"github.com/maildirector/maildirector/director"
	"github.com/maildirector/maildirector/proxy"
)

// The dashboard's tests: the page as served (self-contained, behind the
// same auth as the JSON), and the page as a browser draws it for a fleet of
// 50 servers behind 20 frontends (headless Chromium, which scripts/deps.sh
// installs; the test fails without it).

const (
	testUser, testPassword = "admin", "s3cret"
	// longReason is longer than the reason column shows.
	longReason = "imap: timeout after 2s reading greeting from 192.0.2.3:143 (the server accepted the connection " +
		"but said nothing; its imap-login processes may be exhausted, see login_max_processes_count)"
)

// fleetSource is a fixed fleet for Snapshot.
type fleetSource struct {
	fronts   []FrontendInfo
	backs    []BackendInfo
	sessions []proxy.Info
}

func (f *fleetSource) Frontends() []FrontendInfo { return f.fronts }
func (f *fleetSource) Backends() []BackendInfo   { return f.backs }
func (f *fleetSource) Sessions() []proxy.Info    { return f.sessions }

// fleet is a Stats over a fake fleet: backend "dovecot" with 45 checked
// servers (mail01..mail45: mail03 down with a long reason, mail05 drain,
// mail07 maint, mail09 up but failing its checks, mail44 and mail45
// backups) and backend "archive" with 5 unchecked ones (arch4 and arch5
// backups), behind 20 frontends of every login protocol and LMTP.
type fleet struct {
	stats *Stats
	dirs  map[string]*director.Director
}

func newFleet(t *testing.T, refresh time.Duration) *fleet {
	t.Helper()
	s := New(Options{Version: "v-test", Refresh: refresh})
	fl := &fleet{stats: s, dirs: make(map[string]*director.Director)}
	src := &fleetSource{}

	// A listener the passing checks connect to.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go acceptAndClose(ln)

	newBackend := func(name string, balance director.Balance, n int, prefix string, backups int) *director.Director {
		opts := director.Options{Name: name, Balance: balance}
		for i := 1; i <= n; i++ {
			opts.Servers = append(opts.Servers, director.ServerOptions{
				Name: fmt.Sprintf(prefix, i), Weight: 100, Backup: i > n-backups, MaxConn: 500 * (i % 2),
			})
		}
		d, err := director.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		fl.dirs[name] = d
		return d
	}
	mail := newBackend("dovecot", director.BalanceUser, 45, "mail%02d", 2)
	arch := newBackend("archive", director.BalanceLeastConn, 5, "arch%d", 2)

	// Checkers for "dovecot": each runs its first check at once; mail03
	// fails twice (down), mail09 once (up, going down).
	ctx, cancel := context.WithCancel(context.Background())
	var running sync.WaitGroup
	bi := BackendInfo{Name: "dovecot", Director: mail}
	for i, st := range mail.Servers() {
		name := st.Name
		sv := s.Server("dovecot", name)
		opts := checks.Options{
			Server: name, Type: checks.TypeTCP, Address: ln.Addr().String(),
			Inter: time.Hour, Rise: 2, Fall: 2,
			Logger: discardLogger(),
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				time.Sleep(time.Duration(i%7) * 300 * time.Microsecond) // some spread in the latencies
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
			OnResult: func(r checks.Result) { sv.CheckResult(checks.TypeTCP, r) },
			OnChange: func(tr checks.Transition) {
				mail.SetHealth(name, tr.Up, tr.Reason)
				sv.Transition(tr)
			},
		}
		switch name {
		case "mail03":
			opts.FastInter = time.Millisecond // the second failure right after the first
			opts.Dial = failingDial(errors.New(strings.TrimPrefix(longReason, "imap: ")))
		case "mail09":
			opts.Dial = failingDial(errors.New("connection refused"))
		}
		c, err := checks.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		running.Add(1)
		go func() {
			defer running.Done()
			c.Run(ctx)
		}()
		bi.Servers = append(bi.Servers, ServerInfo{Name: name, Address: fmt.Sprintf("10.0.0.%d:143", i+1), Check: c, CheckType: "tcp"})
	}
	waitFor(t, "every first check", func() bool {
		for _, si := range bi.Servers {
			st := si.Check.Status()
			if st.LastCheck.IsZero() || si.Name == "mail03" && st.Up {
				return false
			}
		}
		return true
	})
	cancel()
	running.Wait()
	src.backs = append(src.backs, bi)

	ai := BackendInfo{Name: "archive", Director: arch}
	for i, st := range arch.Servers() {
		ai.Servers = append(ai.Servers, ServerInfo{Name: st.Name, Address: fmt.Sprintf("10.0.1.%d:143", i+1)})
	}
	src.backs = append(src.backs, ai)
	mustOK(t, mail.SetAdmin("mail05", director.AdminDrain))
	mustOK(t, mail.SetAdmin("mail07", director.AdminMaint))

	// Users with live sessions (sticky entries), on both backends.
	for u := range 300 {
		d := mail
		if u%10 == 0 {
			d = arch
		}
		l, err := d.Pick(director.Request{User: fmt.Sprintf("user%03d@example.org", u)})
		if err != nil {
			t.Fatal(err)
		}
		l.Established()
	}

	// 20 frontends with sessions, logins and recipients.
	protos := []string{"imap", "pop3", "submission", "lmtp"}
	for i := range 20 {
		p := protos[i%len(protos)]
		fi := FrontendInfo{Name: fmt.Sprintf("%s%02d", p, i+1), Protocol: p, Backend: "dovecot",
			Bind: []string{fmt.Sprintf("192.0.2.1:%d", 10000+i)}, MaxConn: 1000 * (i % 3)}
		if i%5 == 4 {
			fi.Backend = "archive"
		}
		src.fronts = append(src.fronts, fi)
		f := s.Frontend(fi.Name)
		for k := range 10 + 7*i {
			f.SessionStarted()
			if k%3 == 0 {
				continue // still live
			}
			f.SessionEnded(proxy.Info{Frontend: fi.Name, Backend: fi.Backend, Server: "mail01", TLS: k%4 != 0,
				BytesIn: int64(2000 * (k + 1)), BytesOut: int64(90000 * (k + 1))}, []string{"done", "client closed", "timeout"}[k%3])
			if p == "lmtp" {
				f.Recipient([]int{250, 250, 451, 550}[k%4])
				continue
			}
			f.Login([]proxy.LoginResult{proxy.LoginOK, proxy.LoginOK, proxy.LoginRejected, proxy.LoginNoServer, proxy.LoginTempFail}[k%5])
		}
	}
	s.SetSource(src)
	// An hour of history: users come and some go.
	var walk []*director.Lease
	for i := range historyLen {
		for k := range 3 {
			l, err := mail.Pick(director.Request{User: fmt.Sprintf("walk%d-%d@example.org", i, k)})
			if err != nil {
				t.Fatal(err)
			}
			l.Established()
			walk = append(walk, l)
		}
		if i%2 == 0 {
			walk[i].Release()
		}
		s.sampleHistory()
	}
	s.sampleRates()
	return fl
}

func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func failingDial(err error) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) { return nil, err }
}

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// waitFor retries cond until it holds or 10s passed (bounded polling, not
// a timing assertion).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serve serves fl's handler with basic auth; while fail is set, the JSON
// answers 503 (the page must go stale); while extra is set, its keys are
// added to the JSON (sections of later issues).
type served struct {
	url   string
	fail  atomic.Bool
	extra atomic.Pointer[map[string]any]
}

func (fl *fleet) serve(t *testing.T) *served {
	t.Helper()
	sv := &served{}
	h := fl.stats.Handler(HandlerOptions{Users: map[string]string{testUser: testPassword}})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stats.json" {
			h.ServeHTTP(w, r)
			return
		}
		if sv.fail.Load() {
			http.Error(w, "stats: going away", http.StatusServiceUnavailable)
			return
		}
		extra := sv.extra.Load()
		if extra == nil {
			h.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		for k, v := range *extra {
			m[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(m)
	}))
	t.Cleanup(ts.Close)
	sv.url = ts.URL + "/"
	return sv
}

func get(t *testing.T, url string, auth bool) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth {
		req.SetBasicAuth(testUser, testPassword)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestDashboardPageIsSelfContained: the page loads nothing from elsewhere
// (it works offline, without a CDN), and whatever it links to is served by
// the same handler behind the same authentication.
func TestDashboardPageIsSelfContained(t *testing.T) {
	fl := newFleet(t, 2*time.Second)
	sv := fl.serve(t)

	if resp, _ := get(t, sv.url, false); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET / without credentials: got %d, want 401", resp.StatusCode)
	}
	resp, page := get(t, sv.url, true)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: got %d %q, want 200 text/html", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	lower := strings.ToLower(page)
	for _, bad := range []string{"<iframe", "<object", "<embed", "<img", "<script src", "<link rel=\"stylesheet"} {
		if strings.Contains(lower, bad) {
			t.Errorf("the page contains %q: it must load nothing from elsewhere", bad)
		}
	}
	// CSS loads nothing either: no url() or @import in the style sheet
	// and style attributes.
	for _, m := range regexp.MustCompile(`(?is)<style>(.*?)</style>|style="([^"]*)"`).FindAllStringSubmatch(lower, -1) {
		if css := m[1] + m[2]; strings.Contains(css, "url(") || strings.Contains(css, "@import") {
			t.Errorf("the page's CSS loads something: %.80q", css)
		}
	}
	// Absolute URLs: only the SVG namespace, which is a name, not a fetch.
	for _, u := range regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s"'<>)]*`).FindAllString(page, -1) {
		if u != "http://www.w3.org/2000/svg" {
			t.Errorf("the page names the absolute URL %q: it must work offline", u)
		}
	}
	// Every link, and the JSON the script fetches, is relative and served.
	links := []string{"stats.json"}
	for _, m := range regexp.MustCompile(`(?i)\b(?:src|href)\s*=\s*"([^"]*)"`).FindAllStringSubmatch(page, -1) {
		if !strings.HasPrefix(m[1], "data:") {
			links = append(links, m[1])
		}
	}
	if !strings.Contains(page, `new URL("stats.json", location.href)`) {
		t.Errorf(`the page does not fetch "stats.json" relative to itself`)
	}
	for _, l := range links {
		if strings.HasPrefix(l, "/") || strings.Contains(l, ":") {
			t.Errorf("link %q: want a relative path (the page may sit behind a path prefix)", l)
			continue
		}
		if resp, _ := get(t, sv.url+l, true); resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s (linked from the page): got %d, want 200", l, resp.StatusCode)
		}
		if resp, _ := get(t, sv.url+l, false); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without credentials: got %d, want 401 like the page", l, resp.StatusCode)
		}
	}
}

// TestDashboardFleet loads the page in headless Chromium against 50
// servers behind 20 frontends and checks what it shows, that it stays
// compact, that it updates itself, and what it does when the JSON fails.
func TestDashboardFleet(t *testing.T) {
	fl := newFleet(t, 300*time.Millisecond)
	sv := fl.serve(t)
	snap, err := fl.stats.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	ctx := chrometest.Start(t, 1800, 1000)
	// Credentials in the address, as a browser's prompt would have them:
	// the page's own fetches must carry them too.
	chrometest.Do(t, ctx, chromedp.Navigate(strings.Replace(sv.url, "http://", "http://"+testUser+":"+testPassword+"@", 1)))
	chrometest.Wait(t, ctx, "the first update", `!!document.body.dataset.updated`)
	chrometest.Eval[chromedp.Void](t, ctx, `window.noReload = true`)

	t.Run("every frontend and server", func(t *testing.T) {
		if n := chrometest.Eval[int](t, ctx, `document.querySelectorAll("tr[data-frontend]").length`); n != 20 {
			t.Errorf("frontend rows: got %d, want 20", n)
		}
		if n := chrometest.Eval[int](t, ctx, `document.querySelectorAll("tr[data-server]").length`); n != 50 {
			t.Errorf("server rows: got %d, want 50", n)
		}
		for _, b := range snap.Backends {
			for _, s := range b.Servers {
				key := b.Name + "/" + s.Name
				got := chrometest.Eval[string](t, ctx, fmt.Sprintf(`document.querySelector('tr[data-server="%s"] td[data-col=status]').textContent`, key))
				if !strings.HasPrefix(got, s.Status) {
					t.Errorf("%s: status cell %q, want %q", key, got, s.Status)
				}
			}
		}
		text := chrometest.Eval[string](t, ctx, `document.querySelector("main").innerText`)
		for _, bad := range []string{"undefined", "NaN", "null", "[object"} {
			if strings.Contains(text, bad) {
				t.Errorf("the page shows %q", bad)
			}
		}
	})

	t.Run("figures", func(t *testing.T) {
		// Each figure in its column, as the JSON has it.
		cell := func(row, col string) string {
			return chrometest.Eval[string](t, ctx, fmt.Sprintf(`document.querySelector('%s td[data-col=%s]').textContent`, row, col))
		}
		n := func(v uint64) string { return fmt.Sprint(v) } // all below 1000: no grouping
		for _, f := range snap.Frontends {
			row := fmt.Sprintf(`tr[data-frontend="%s"]`, f.Name)
			want := map[string]string{"scur": fmt.Sprint(f.Cur), "smax": fmt.Sprint(f.Max), "stot": n(f.Total),
				"tls": fmt.Sprintf("%d%%", int(f.TLSShare*100+0.5))}
			for _, r := range []string{"ok", "rejected", "no_server", "temp_fail"} {
				want["login_"+r] = n(f.Logins[r])
				if f.Protocol == "lmtp" {
					want["login_"+r] = "\u2013"
				}
			}
			for _, c := range []string{"2xx", "4xx", "5xx"} {
				want["rcpt_"+c] = "\u2013"
				if f.Protocol == "lmtp" {
					want["rcpt_"+c] = n(f.Recipients[c])
				}
			}
			for col, w := range want {
				if got := cell(row, col); got != w {
					t.Errorf("frontend %s, %s: got %q, want %q", f.Name, col, got, w)
				}
			}
		}
		for _, b := range snap.Backends {
			for _, s := range b.Servers {
				row := fmt.Sprintf(`tr[data-server="%s/%s"]`, b.Name, s.Name)
				want := map[string]string{"scur": fmt.Sprint(s.Cur), "users": fmt.Sprint(s.Assigned), "stot": n(s.Total),
					"admin": s.Admin, "weight": fmt.Sprint(s.Weight)}
				for col, w := range want {
					if got := cell(row, col); got != w {
						t.Errorf("server %s/%s, %s: got %q, want %q", b.Name, s.Name, col, got, w)
					}
				}
			}
		}
	})

	t.Run("states", func(t *testing.T) {
		for _, tc := range []struct {
			server, status, class string
		}{
			{"dovecot/mail01", "UP", "up"},
			{"dovecot/mail03", "DOWN", "down"},
			{"dovecot/mail05", "DRAIN", "drain"},
			{"dovecot/mail07", "MAINT", "maint"},
			{"dovecot/mail09", "UP 1/2", "goingdown"},
			{"dovecot/mail45", "UP", "up bck"},
			{"archive/arch1", "no check", "nocheck"},
			{"archive/arch5", "no check", "nocheck bck"},
		} {
			row := fmt.Sprintf(`document.querySelector('tr[data-server="%s"]')`, tc.server)
			if got := chrometest.Eval[string](t, ctx, row+`.querySelector("td[data-col=status]").textContent`); got != tc.status {
				t.Errorf("%s: status %q, want %q", tc.server, got, tc.status)
			}
			if got := chrometest.Eval[string](t, ctx, row+`.className`); got != tc.class {
				t.Errorf("%s: class %q, want %q (its colour)", tc.server, got, tc.class)
			}
		}
		// Colour as HAProxy's page: UP green, DOWN red, DRAIN blue, MAINT brown, no check grey.
		for server, want := range map[string]string{
			"dovecot/mail01": "rgb(192, 255, 192)", "dovecot/mail03": "rgb(255, 144, 144)",
			"dovecot/mail05": "rgb(32, 160, 255)", "dovecot/mail07": "rgb(192, 120, 32)", "archive/arch1": "rgb(224, 224, 224)",
		} {
			got := chrometest.Eval[string](t, ctx, fmt.Sprintf(`getComputedStyle(document.querySelector('tr[data-server="%s"]')).backgroundColor`, server))
			if got != want {
				t.Errorf("%s: background %s, want %s", server, got, want)
			}
		}
		row := `document.querySelector('tr[data-server="archive/arch1"]')`
		if got := chrometest.Eval[string](t, ctx, row+`.innerText`); !strings.Contains(got, "\u2013") {
			t.Errorf("archive/arch1 (no check): row %q shows no dash for its check", got)
		}
	})

	t.Run("long reason truncated with its tooltip", func(t *testing.T) {
		cell := `document.querySelector('tr[data-server="dovecot/mail03"] td[data-col=reason]')`
		if got := chrometest.Eval[string](t, ctx, cell+`.title`); !strings.Contains(got, "exhausted, see login_max_processes_count") {
			t.Errorf("reason tooltip: got %q, want the whole reason", got)
		}
		// Cut to the cell's width with an ellipsis, not spilling over.
		if !chrometest.Eval[bool](t, ctx, cell+`.scrollWidth > `+cell+`.clientWidth`) {
			t.Errorf("the long reason fits its cell: the test needs a longer one")
		}
		if got := chrometest.Eval[string](t, ctx, `(s => s.overflowX + " " + s.textOverflow)(getComputedStyle(`+cell+`))`); got != "hidden ellipsis" {
			t.Errorf("reason cell: overflow and text-overflow %q, want %q", got, "hidden ellipsis")
		}
		if w := chrometest.Eval[float64](t, ctx, cell+`.getBoundingClientRect().width`); w > 400 {
			t.Errorf("reason cell: %vpx wide, want at most 400", w)
		}
		h := chrometest.Eval[float64](t, ctx, `document.querySelector('tr[data-server="dovecot/mail03"]').getBoundingClientRect().height`)
		h1 := chrometest.Eval[float64](t, ctx, `document.querySelector('tr[data-server="dovecot/mail01"]').getBoundingClientRect().height`)
		if h != h1 {
			t.Errorf("the row with the long reason is %vpx high, a plain one %vpx: the reason wraps", h, h1)
		}
	})

	t.Run("compact", func(t *testing.T) {
		// Tables, one line per server: 50 servers and 20 frontends fit in
		// a few screens.
		max := chrometest.Eval[float64](t, ctx, `Math.max(...[...document.querySelectorAll("tr[data-server], tr[data-frontend]")].map(r => r.getBoundingClientRect().height))`)
		if max > 26 {
			t.Errorf("the highest row is %vpx: want one line (<= 26px)", max)
		}
		if n := chrometest.Eval[int](t, ctx, `document.querySelectorAll("tr[data-server] svg path[d^=M]").length`); n < 2*45 {
			t.Errorf("drawn charts: got %d, want at least the 90 of the checked servers", n)
		}
	})

	t.Run("no HTTP section without data", func(t *testing.T) {
		if !chrometest.Eval[bool](t, ctx, `document.getElementById("http").hidden`) {
			t.Errorf("the HTTP section is shown though the JSON has none")
		}
	})

	t.Run("updates itself", func(t *testing.T) {
		mustOK(t, fl.dirs["dovecot"].SetAdmin("mail01", director.AdminDrain))
		chrometest.Wait(t, ctx, "mail01 to show DRAIN",
			`document.querySelector('tr[data-server="dovecot/mail01"] td[data-col=status]').textContent === "DRAIN"`)
		mustOK(t, fl.dirs["dovecot"].SetHealth("mail01", false, "imap: connection refused"))
		chrometest.Wait(t, ctx, "mail01 to show DOWN with its reason",
			`document.querySelector('tr[data-server="dovecot/mail01"] td[data-col=status]').textContent === "DOWN" &&
			 document.querySelector('tr[data-server="dovecot/mail01"] td[data-col=reason]').textContent === "imap: connection refused"`)
		if !chrometest.Eval[bool](t, ctx, `window.noReload === true`) {
			t.Errorf("the page reloaded")
		}
	})

	t.Run("HTTP section when the JSON has one", func(t *testing.T) {
		sv.extra.Store(&map[string]any{"http": []map[string]any{
			{"reason": "user is over quota", "path": "/auth", "count": 3},
			{"reason": "internal error", "path": "/auth", "count": 1},
		}})
		defer sv.extra.Store(nil)
		chrometest.Wait(t, ctx, "the HTTP section", `!document.getElementById("http").hidden`)
		if got := chrometest.Eval[string](t, ctx, `document.getElementById("http").innerText`); !strings.Contains(got, "user is over quota") {
			t.Errorf("HTTP section: got %q, want its rows", got)
		}
		sv.extra.Store(nil)
		chrometest.Wait(t, ctx, "the HTTP section to go", `document.getElementById("http").hidden`)
	})

	chrometest.Shot(t, ctx, "dashboard-fleet.png")

	t.Run("stale", func(t *testing.T) {
		sv.fail.Store(true)
		chrometest.Wait(t, ctx, "the stale banner", `!document.getElementById("stale").hidden`)
		banner := chrometest.Eval[string](t, ctx, `document.getElementById("stale").textContent`)
		updated := chrometest.Eval[string](t, ctx, `document.body.dataset.updated`) // of the last poll that worked
		if !strings.HasPrefix(banner, "stale: last update at ") || !strings.Contains(banner, "503") {
			t.Errorf("banner: got %q, want %q with the error", banner, "stale: last update at …")
		}
		if at := strings.TrimPrefix(banner, "stale: last update at "); !strings.HasPrefix(at, stampOf(t, updated)) {
			t.Errorf("banner: got %q, want the last update's time %s", banner, stampOf(t, updated))
		}
		if n := chrometest.Eval[int](t, ctx, `document.querySelectorAll("tr[data-server]").length`); n != 50 {
			t.Errorf("while stale: %d server rows, want the last data's 50", n)
		}
		if got := chrometest.Eval[string](t, ctx, `document.querySelector('tr[data-server="dovecot/mail03"] td[data-col=status]').textContent`); got != "DOWN" {
			t.Errorf("while stale: mail03 shows %q, want the last data's DOWN", got)
		}
		chrometest.Shot(t, ctx, "dashboard-stale.png")
		sv.fail.Store(false)
		chrometest.Wait(t, ctx, "the stale banner to go", `document.getElementById("stale").hidden`)
	})
}

// stampOf formats an RFC 3339 time as the page does, in local time.
func stampOf(t *testing.T, s string) string {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("data-updated %q: %v", s, err)
	}
	return at.Local().Format("2006-01-02 15:04:05")
}
