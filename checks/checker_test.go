package checks

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newFakeChecker returns a Checker whose probe plays results in order; once
// they run out it calls done (if set) and keeps failing.
func newFakeChecker(t *testing.T, opts Options, results []bool, done func()) (*Checker, *[]time.Time) {
	t.Helper()
	if opts.Address == "" {
		opts.Address = "192.0.2.1:143"
	}
	opts.Logger = discardLogger()
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var (
		mu    sync.Mutex
		calls []time.Time
	)
	c.probe = func(ctx context.Context) Result {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, time.Now())
		i := len(calls) - 1
		if i >= len(results) {
			if done != nil {
				done()
			}
			return Result{Reason: "script over"}
		}
		if results[i] {
			return Result{OK: true, Reason: "fake: OK", Latency: time.Millisecond, Capabilities: []string{"X"}}
		}
		return Result{Reason: "fake: failed", Latency: 2 * time.Millisecond}
	}
	return c, &calls
}

func TestHealthCounter(t *testing.T) {
	// Rise 2, Fall 3: counter 0..4, up at >= 2.
	type want struct {
		up     bool
		health int
	}
	tests := []struct {
		name    string
		initial InitialState
		results []bool
		want    []want // after each result
	}{
		{
			name:    "fully up needs fall failures",
			initial: InitFullyUp,
			results: []bool{false, false, false},
			want:    []want{{true, 3}, {true, 2}, {false, 0}},
		},
		{
			name:    "a pass in between climbs one step",
			initial: InitFullyUp,
			results: []bool{false, false, true, false, false},
			want:    []want{{true, 3}, {true, 2}, {true, 3}, {true, 2}, {false, 0}},
		},
		{
			name:    "up (HAProxy default) goes down on one failure",
			initial: InitUp,
			results: []bool{false},
			want:    []want{{false, 0}},
		},
		{
			name:    "up climbs to full",
			initial: InitUp,
			results: []bool{true, true, true},
			want:    []want{{true, 3}, {true, 4}, {true, 4}},
		},
		{
			name:    "fully down needs rise passes",
			initial: InitFullyDown,
			results: []bool{true, true, true, true},
			want:    []want{{false, 1}, {true, 2}, {true, 3}, {true, 4}},
		},
		{
			name:    "a failure while down restarts the count",
			initial: InitFullyDown,
			results: []bool{true, false, true, true},
			want:    []want{{false, 1}, {false, 0}, {false, 1}, {true, 2}},
		},
		{
			name:    "down comes up on one pass",
			initial: InitDown,
			results: []bool{true},
			want:    []want{{true, 2}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newFakeChecker(t, Options{Initial: tt.initial}, nil, nil)
			for i, ok := range tt.results {
				c.record(Result{OK: ok, Reason: "r"})
				st := c.Status()
				if got := (want{st.Up, st.Health}); got != tt.want[i] {
					t.Fatalf("after result %d (%v): got up=%v health=%d, want up=%v health=%d",
						i, ok, got.up, got.health, tt.want[i].up, tt.want[i].health)
				}
			}
		})
	}
}

func TestRiseFallOne(t *testing.T) {
	c, _ := newFakeChecker(t, Options{Rise: 1, Fall: 1}, nil, nil)
	for i, tc := range []struct{ ok, up bool }{{false, false}, {true, true}, {false, false}} {
		c.record(Result{OK: tc.ok})
		if got := c.Status().Up; got != tc.up {
			t.Fatalf("step %d: got up=%v, want %v", i, got, tc.up)
		}
	}
}

// TestRunSchedule plays a script through Run on the fake clock and checks the
// gap before each probe and the transitions reported.
func TestRunSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		var transitions []Transition
		opts := Options{
			Server:    "mail1",
			Inter:     10 * time.Second,
			FastInter: time.Second,
			DownInter: 30 * time.Second,
			OnChange:  func(tr Transition) { transitions = append(transitions, tr) },
		}
		// Fully up (health 4), rise 2, fall 3.
		results := []bool{
			true,  // 4: steady up
			false, // 3: transitioning
			false, // 2
			false, // 0: down
			true,  // 1: transitioning
			true,  // 2: up
			true,  // 3
			true,  // 4: steady up
		}
		c, calls := newFakeChecker(t, opts, results, cancel)
		start := time.Now()
		c.Run(ctx)

		// Gap before probe i is the interval chosen after probe i-1.
		wantGaps := []time.Duration{
			0,                // first check at once (no Spread)
			10 * time.Second, // after health 4
			time.Second,      // after 3
			time.Second,      // after 2
			30 * time.Second, // after 0
			time.Second,      // after 1
			time.Second,      // after 2
			time.Second,      // after 3
			10 * time.Second, // after 4: the ninth probe ends the script
		}
		var gaps []time.Duration
		prev := start
		for _, at := range *calls {
			gaps = append(gaps, at.Sub(prev))
			prev = at
		}
		if !slices.Equal(gaps, wantGaps) {
			t.Errorf("got gaps %v, want %v", gaps, wantGaps)
		}
		if len(transitions) != 2 {
			t.Fatalf("got %d transitions, want 2: %+v", len(transitions), transitions)
		}
		down, up := transitions[0], transitions[1]
		if down.Up || down.Reason != "fake: failed" || down.Server != "mail1" || down.Latency != 2*time.Millisecond || down.Forced {
			t.Errorf("got first transition %+v, want down by fake: failed", down)
		}
		if !up.Up || up.Reason != "fake: OK" {
			t.Errorf("got second transition %+v, want up by fake: OK", up)
		}
		if got, want := up.At.Sub(down.At), 31*time.Second; got != want {
			t.Errorf("got %v between down and up, want %v", got, want)
		}
	})
}

func TestRunStopsOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		c, calls := newFakeChecker(t, Options{}, []bool{true, true, true}, nil)
		done := make(chan struct{})
		go func() {
			c.Run(ctx)
			close(done)
		}()
		time.Sleep(3 * time.Second) // probes at 0s and 2s
		synctest.Wait()
		cancel()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("Run did not return after cancel")
		}
		if got := len(*calls); got != 2 {
			t.Errorf("got %d probes, want 2", got)
		}
	})
}

func TestRunSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		c, calls := newFakeChecker(t, Options{Spread: time.Minute}, nil, cancel)
		start := time.Now()
		c.Run(ctx)
		if len(*calls) != 1 {
			t.Fatalf("got %d probes, want 1", len(*calls))
		}
		if d := (*calls)[0].Sub(start); d < 0 || d >= time.Minute {
			t.Errorf("got first probe after %v, want within [0, 1m)", d)
		}
	})
}

func TestRunIgnoresProbeCanceledByShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		c, err := New(Options{Address: "192.0.2.1:143", Logger: discardLogger(), Rise: 1, Fall: 1})
		if err != nil {
			t.Fatal(err)
		}
		c.probe = func(ctx context.Context) Result {
			cancel()
			<-ctx.Done()
			return Result{Reason: "canceled"}
		}
		c.Run(ctx)
		if st := c.Status(); !st.Up || st.Reason != "not checked yet" {
			t.Errorf("got %+v, want the initial state untouched", st)
		}
	})
}

func TestForceDown(t *testing.T) {
	var transitions []Transition
	c, _ := newFakeChecker(t, Options{OnChange: func(tr Transition) { transitions = append(transitions, tr) }}, nil, nil)
	c.ForceDown("3 sessions failed to connect")
	st := c.Status()
	if st.Up || !st.Forced || st.Health != 0 || st.Reason != "3 sessions failed to connect" {
		t.Fatalf("got %+v, want forced down with health 0", st)
	}
	if len(transitions) != 1 || transitions[0].Up || !transitions[0].Forced || transitions[0].Reason != "3 sessions failed to connect" {
		t.Fatalf("got transitions %+v, want one forced down", transitions)
	}
	c.ForceDown("again")
	if len(transitions) != 1 {
		t.Errorf("got %d transitions after forcing a down server, want 1", len(transitions))
	}
	c.record(Result{OK: true, Reason: "ok"})
	if st := c.Status(); st.Up || !st.Forced {
		t.Errorf("after one pass got %+v, want still forced down (rise 2)", st)
	}
	c.record(Result{OK: true, Reason: "ok"})
	if st := c.Status(); !st.Up || st.Forced {
		t.Errorf("after two passes got %+v, want up and not forced", st)
	}
	if len(transitions) != 2 || !transitions[1].Up {
		t.Errorf("got transitions %+v, want down then up", transitions)
	}
}

func TestOnChangeMayCallStatus(t *testing.T) {
	var c *Checker
	var seen Status
	c, _ = newFakeChecker(t, Options{Rise: 1, Fall: 1, OnChange: func(Transition) { seen = c.Status() }}, nil, nil)
	c.record(Result{Reason: "bad"})
	if seen.Up || seen.Reason != "bad" {
		t.Errorf("got %+v inside OnChange, want the new down state", seen)
	}
}

func TestStatusCapabilitiesFromLastPass(t *testing.T) {
	c, _ := newFakeChecker(t, Options{}, nil, nil)
	c.record(Result{OK: true, Capabilities: []string{"IMAP4rev1", "IDLE"}})
	c.record(Result{Reason: "bad"})
	st := c.Status()
	if !slices.Equal(st.Capabilities, []string{"IMAP4rev1", "IDLE"}) {
		t.Errorf("got capabilities %v, want those of the last pass", st.Capabilities)
	}
	st.Capabilities[0] = "changed"
	if got := c.Status().Capabilities[0]; got != "IMAP4rev1" {
		t.Errorf("got %q after changing a snapshot, want the snapshot to be a copy", got)
	}
}

func TestNewDefaults(t *testing.T) {
	c, err := New(Options{Address: "[2001:db8::1]:8080", Type: TypeHTTP})
	if err != nil {
		t.Fatal(err)
	}
	o := c.opts
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"Inter", o.Inter, DefaultInter},
		{"FastInter", o.FastInter, DefaultInter},
		{"DownInter", o.DownInter, DefaultInter},
		{"Timeout", o.Timeout, DefaultTimeout},
		{"Rise", o.Rise, DefaultRise},
		{"Fall", o.Fall, DefaultFall},
		{"Hostname", o.Hostname, DefaultHostname},
		{"HTTPMethod", o.HTTPMethod, "GET"},
		{"HTTPPath", o.HTTPPath, "/"},
		{"HTTPHost", o.HTTPHost, "[2001:db8::1]"},
		{"ExpectStatus", o.ExpectStatus, 200},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if st := c.Status(); !st.Up || st.Health != 4 || st.Rise != 2 || st.Fall != 3 {
		t.Errorf("got initial %+v, want fully up with health 4", st)
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name  string
		opts  Options
		field string
	}{
		{"no port", Options{Address: "mail1"}, "Address"},
		{"unknown type", Options{Address: "h:1", Type: Type(42)}, "Type"},
		{"negative inter", Options{Address: "h:1", Inter: -time.Second}, "Inter"},
		{"negative timeout", Options{Address: "h:1", Timeout: -1}, "Timeout"},
		{"negative rise", Options{Address: "h:1", Rise: -1}, "Rise"},
		{"negative fall", Options{Address: "h:1", Fall: -2}, "Fall"},
		{"bad initial", Options{Address: "h:1", Initial: 9}, "Initial"},
		{"bad proxy", Options{Address: "h:1", Proxy: 9}, "Proxy"},
		{"hostname with space", Options{Address: "h:1", Type: TypeLMTP, Hostname: "a b"}, "Hostname"},
		{"password without user", Options{Address: "h:1", Type: TypeIMAP, Password: "x"}, "User"},
		{"login on pop3", Options{Address: "h:1", Type: TypePOP3, User: "u"}, "User"},
		{"NUL in password", Options{Address: "h:1", Type: TypeIMAP, User: "u", Password: "a\x00b"}, "User"},
		{"bad method", Options{Address: "h:1", Type: TypeHTTP, HTTPMethod: "GE T"}, "HTTPMethod"},
		{"relative path", Options{Address: "h:1", Type: TypeHTTP, HTTPPath: "health"}, "HTTPPath"},
		{"CRLF in host", Options{Address: "h:1", Type: TypeHTTP, HTTPHost: "a\r\nX: y"}, "HTTPHost"},
		{"status out of range", Options{Address: "h:1", Type: TypeHTTP, ExpectStatus: 42}, "ExpectStatus"},
		{"status range upside down", Options{Address: "h:1", Type: TypeHTTP, ExpectStatus: 399, ExpectStatusMax: 200}, "ExpectStatusMax"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			var oe *OptionError
			if !errors.As(err, &oe) {
				t.Fatalf("got error %v, want an *OptionError", err)
			}
			if oe.Field != tt.field {
				t.Errorf("got field %q (%v), want %q", oe.Field, err, tt.field)
			}
		})
	}
}

func TestNewJoinsAllProblems(t *testing.T) {
	_, err := New(Options{Address: "nope", Rise: -1, Fall: -1})
	for _, want := range []string{"Address", "Rise", "Fall"} {
		if !strings.Contains(err.Error(), want+":") {
			t.Errorf("got %q, want it to mention %s", err, want)
		}
	}
}

func TestParseType(t *testing.T) {
	for _, typ := range []Type{TypeTCP, TypeIMAP, TypePOP3, TypeLMTP, TypeSMTP, TypeHTTP, TypeManageSieve} {
		got, err := ParseType(typ.String())
		if err != nil || got != typ {
			t.Errorf("ParseType(%q): got %v, %v, want %v", typ.String(), got, err, typ)
		}
	}
	if _, err := ParseType("IMAPS"); !errors.Is(err, ErrUnknownType) {
		t.Errorf("ParseType(IMAPS): got %v, want ErrUnknownType", err)
	}
	for _, p := range []ProxyHeader{ProxyNone, ProxyLocal, ProxyV2} {
		got, err := ParseProxyHeader(p.String())
		if err != nil || got != p {
			t.Errorf("ParseProxyHeader(%q): got %v, %v, want %v", p.String(), got, err, p)
		}
	}
	if _, err := ParseProxyHeader("v1"); !errors.Is(err, ErrUnknownProxyHeader) {
		t.Errorf("ParseProxyHeader(v1): got %v, want ErrUnknownProxyHeader", err)
	}
	for _, s := range []InitialState{InitFullyUp, InitUp, InitDown, InitFullyDown} {
		got, err := ParseInitialState(s.String())
		if err != nil || got != s {
			t.Errorf("ParseInitialState(%q): got %v, %v, want %v", s.String(), got, err, s)
		}
	}
	if _, err := ParseInitialState("maybe"); !errors.Is(err, ErrUnknownInitialState) {
		t.Errorf("ParseInitialState(maybe): got %v, want ErrUnknownInitialState", err)
	}
}

func TestTransitionsAreLogged(t *testing.T) {
	var buf strings.Builder
	c, err := New(Options{
		Server: "mail1", Address: "192.0.2.1:143", Rise: 1, Fall: 1,
		Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	c.record(Result{Reason: "imap: connection refused", Latency: time.Millisecond})
	c.record(Result{OK: true, Reason: "imap: OK in 1ms", Latency: time.Millisecond})
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got log %q, want two lines", buf.String())
	}
	for i, want := range []string{
		`level=WARN msg="server down" server=mail1 check=tcp address=192.0.2.1:143 reason="imap: connection refused" latency=1ms`,
		`level=INFO msg="server up" server=mail1 check=tcp address=192.0.2.1:143 reason="imap: OK in 1ms" latency=1ms`,
	} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("got log line %q, want it to contain %q", lines[i], want)
		}
	}
}

// TestForceDownRearmsSchedule: after a passive mark-down the next check
// comes after DownInter, not after the Inter the timer was armed with.
func TestForceDownRearmsSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		c, calls := newFakeChecker(t, Options{Inter: time.Hour, DownInter: time.Second}, nil, nil)
		done := make(chan struct{})
		go func() {
			c.Run(ctx)
			close(done)
		}()
		synctest.Wait() // first probe at 0s; the next is an hour away
		start := time.Now()
		c.ForceDown("2 consecutive connection failures")
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if got := len(*calls); got != 2 {
			t.Fatalf("got %d probes 1.5s after ForceDown, want 2 (the second after DownInter)", got)
		}
		if d := (*calls)[1].Sub(start); d != time.Second {
			t.Errorf("got the next probe %v after ForceDown, want DownInter (1s)", d)
		}
		cancel()
		<-done
	})
}

func TestOnResultSeesEveryResult(t *testing.T) {
	var got []Result
	c, _ := newFakeChecker(t, Options{Rise: 1, Fall: 1, OnResult: func(r Result) { got = append(got, r) }}, nil, nil)
	c.record(Result{OK: true, Reason: "a", Latency: time.Millisecond})
	c.record(Result{OK: true, Reason: "b", Latency: 2 * time.Millisecond}) // no transition
	c.record(Result{Reason: "c"})
	if len(got) != 3 || got[0].Reason != "a" || got[1].Latency != 2*time.Millisecond || got[2].OK {
		t.Fatalf("OnResult got %+v, want the three results in order", got)
	}
}

// TestLocalResourceFailureCountsNeitherWay: a probe that fails because this
// host is out of descriptors (EMFILE on dial) does not take the server
// down: it is the proxy's trouble, not the server's.
func TestLocalResourceFailureCountsNeitherWay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var changes []Transition
		c, _ := newFakeChecker(t, Options{Rise: 1, Fall: 1, OnChange: func(tr Transition) { changes = append(changes, tr) }}, nil, nil)
		probes := 0
		c.probe = func(context.Context) Result {
			probes++
			err := &CheckError{Type: TypeIMAP, Step: "connecting", Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("socket", syscall.EMFILE)}}
			return Result{Reason: err.Error(), Err: err}
		}
		ctx, cancel := context.WithCancel(t.Context())
		go c.Run(ctx)
		time.Sleep(7 * time.Second) // probes at 0, 2, 4, 6s
		synctest.Wait()
		cancel()
		synctest.Wait()
		if probes < 3 {
			t.Fatalf("%d probes, want several", probes)
		}
		if st := c.Status(); !st.Up || len(changes) != 0 {
			t.Errorf("after %d EMFILE probes: %+v, transitions %v; want still up", probes, st, changes)
		}
	})
}
