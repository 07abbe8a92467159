package checks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults applied to zero Options fields.
const (
	// DefaultInter is HAProxy's default "inter".
	DefaultInter = 2 * time.Second
	// DefaultTimeout bounds a whole check, connect to close.
	DefaultTimeout = 2 * time.Second
	// DefaultRise and DefaultFall are HAProxy's defaults.
	DefaultRise = 2
	DefaultFall = 3
	// DefaultHostname is sent in LHLO and EHLO.
	DefaultHostname = "maildirector"
)

// Type is the protocol a check speaks.
type Type int

// Check types. The zero value is TypeTCP.
const (
	TypeTCP         Type = iota // connect (and TLS handshake, if configured), then close
	TypeIMAP                    // greeting, CAPABILITY, optional LOGIN and SELECT INBOX, LOGOUT
	TypePOP3                    // greeting, CAPA, QUIT
	TypeLMTP                    // greeting, LHLO, QUIT
	TypeSMTP                    // greeting, EHLO, QUIT
	TypeHTTP                    // one request with Connection: close, status compared
	TypeManageSieve             // greeting with its capabilities, LOGOUT (RFC 5804)
)

var typeNames = [...]string{
	TypeTCP:         "tcp",
	TypeIMAP:        "imap",
	TypePOP3:        "pop3",
	TypeLMTP:        "lmtp",
	TypeSMTP:        "smtp",
	TypeHTTP:        "http",
	TypeManageSieve: "managesieve",
}

// String returns the lower-case name used in configuration and reasons.
func (t Type) String() string {
	if t < 0 || int(t) >= len(typeNames) {
		return "type(" + strconv.Itoa(int(t)) + ")"
	}
	return typeNames[t]
}

func (t Type) valid() bool { return t >= 0 && int(t) < len(typeNames) }

// ErrUnknownType is returned by ParseType for a name it does not know.
var ErrUnknownType = errors.New("unknown check type")

// ParseType returns the Type named s: "tcp", "imap", "pop3", "lmtp", "smtp",
// "http" or "managesieve".
func ParseType(s string) (Type, error) {
	for i, name := range typeNames {
		if s == name {
			return Type(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q", ErrUnknownType, s)
}

// ProxyHeader says which PROXY protocol header a check sends before anything
// else (and before TLS).
type ProxyHeader int

const (
	// ProxyNone sends no header.
	ProxyNone ProxyHeader = iota
	// ProxyLocal sends a PROXY v2 header with the LOCAL command: "this
	// connection comes from the proxy itself". Dovecot listeners with
	// haproxy = yes demand a header; LOCAL satisfies them without inventing a
	// client address.
	ProxyLocal
	// ProxyV2 sends a PROXY v2 header with the PROXY command carrying the
	// checker's own connection addresses (source = local end).
	ProxyV2
)

var proxyNames = [...]string{ProxyNone: "none", ProxyLocal: "local", ProxyV2: "v2"}

// String returns "none", "local" or "v2".
func (p ProxyHeader) String() string {
	if p < 0 || int(p) >= len(proxyNames) {
		return "proxy(" + strconv.Itoa(int(p)) + ")"
	}
	return proxyNames[p]
}

// ErrUnknownProxyHeader is returned by ParseProxyHeader for a name it does not know.
var ErrUnknownProxyHeader = errors.New("unknown proxy header kind")

// ParseProxyHeader returns the ProxyHeader named s: "none" (or ""), "local" or "v2".
func ParseProxyHeader(s string) (ProxyHeader, error) {
	if s == "" {
		return ProxyNone, nil
	}
	for i, name := range proxyNames {
		if s == name {
			return ProxyHeader(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q", ErrUnknownProxyHeader, s)
}

// InitialState is where the state machine starts, as HAProxy's init-state.
type InitialState int

const (
	// InitFullyUp (the zero value) starts up with a full health counter: fall
	// failed checks are needed to go down. This keeps a restart of
	// maildirector from flapping servers on one unlucky probe.
	InitFullyUp InitialState = iota
	// InitUp starts up with the counter at rise: one failed check takes the
	// server down. This is HAProxy's default.
	InitUp
	// InitDown starts down with the counter at rise-1: one passing check
	// brings the server up.
	InitDown
	// InitFullyDown starts down with the counter at 0: rise passing checks are
	// needed to come up.
	InitFullyDown
)

var initialNames = [...]string{InitFullyUp: "fully-up", InitUp: "up", InitDown: "down", InitFullyDown: "fully-down"}

// String returns HAProxy's init-state name: "fully-up", "up", "down" or "fully-down".
func (s InitialState) String() string {
	if s < 0 || int(s) >= len(initialNames) {
		return "initial(" + strconv.Itoa(int(s)) + ")"
	}
	return initialNames[s]
}

// ErrUnknownInitialState is returned by ParseInitialState for a name it does not know.
var ErrUnknownInitialState = errors.New("unknown initial state")

// ParseInitialState returns the InitialState named s (HAProxy's init-state
// names); "" is InitFullyUp.
func ParseInitialState(s string) (InitialState, error) {
	if s == "" {
		return InitFullyUp, nil
	}
	for i, name := range initialNames {
		if s == name {
			return InitialState(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q", ErrUnknownInitialState, s)
}

// Options configure one Checker. Only Address is required.
type Options struct {
	// Server names the server in logs, reasons and Transitions.
	Server string
	// Type is the protocol to speak. Zero: TypeTCP.
	Type Type
	// Address is the host:port to probe.
	Address string

	// Inter spaces checks while the server is steadily up. Zero:
	// DefaultInter. For this and the durations below, negative is an error.
	Inter time.Duration
	// FastInter spaces checks while a transition is in progress (the counter
	// is neither full nor empty). Zero: Inter.
	FastInter time.Duration
	// DownInter spaces checks while the server is steadily down. Zero: Inter.
	DownInter time.Duration
	// Timeout bounds one whole check, connect to close. Zero: DefaultTimeout.
	Timeout time.Duration
	// Spread delays the first check by a random duration in [0, Spread), so
	// many checkers started together do not probe in lockstep. Zero: the first
	// check runs as soon as Run starts.
	Spread time.Duration

	// Rise is the number of consecutive passing checks that bring a down
	// server up. Zero: DefaultRise. Negative: error.
	Rise int
	// Fall is the number of consecutive failing checks that take a fully up
	// server down. Zero: DefaultFall. Negative: error.
	Fall int
	// Initial is the starting state. Zero: InitFullyUp.
	Initial InitialState

	// TLS, if not nil, makes the check use implicit TLS (after the PROXY
	// header, if any). An empty ServerName is filled from Address unless
	// InsecureSkipVerify is set. Nil: plaintext.
	TLS *tls.Config
	// Proxy selects the PROXY header to send first. Zero: ProxyNone.
	Proxy ProxyHeader

	// Hostname is the LHLO/EHLO argument. Zero: DefaultHostname.
	Hostname string

	// User, if not empty, makes an IMAP check LOGIN as User with Password
	// after CAPABILITY. Zero: no login. Only for TypeIMAP.
	User     string
	Password string
	// SelectInbox makes an IMAP check SELECT INBOX after LOGIN (it needs User).
	SelectInbox bool

	// HTTPMethod is the request method of an HTTP check. Zero: "GET".
	HTTPMethod string
	// HTTPPath is the request target. Zero: "/".
	HTTPPath string
	// HTTPHost is the Host header. Zero: the host of Address.
	HTTPHost string
	// ExpectStatus is the status code an HTTP check wants. Zero: 200.
	ExpectStatus int
	// ExpectStatusMax, when above ExpectStatus, makes the check accept any
	// status from ExpectStatus to it ("200-399", as HAProxy's http-check
	// expect status). Zero: ExpectStatus only.
	ExpectStatusMax int

	// Logger receives transitions (Warn for down, Info for up) and every
	// check result at Debug. Zero: slog.Default().
	Logger *slog.Logger
	// OnChange, if not nil, is called on every up/down transition, from the
	// goroutine that caused it: Run's, or ForceDown's caller. Calls are
	// serialized and arrive in state order. OnChange must not call ForceDown
	// (it would deadlock); it may call Status.
	OnChange func(Transition)
	// OnResult, if not nil, is called with every probe's result after the
	// state took it in (for statistics: durations, failed checks). It runs
	// on the checker's goroutine and must not block.
	OnResult func(Result)
	// Dial opens the connection. Zero: a net.Dialer. The context carries the
	// check's deadline.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Transition reports that a server went up or down.
type Transition struct {
	Server  string
	Up      bool
	Reason  string        // result of the check that caused it, or ForceDown's reason
	Latency time.Duration // of that check; zero for ForceDown
	Forced  bool          // caused by ForceDown
	At      time.Time
}

// Status is a snapshot of a Checker's state.
type Status struct {
	Up bool
	// Reason is the last check's result ("imap: OK in 3ms",
	// "imap: timeout after 2s reading greeting"), or ForceDown's reason.
	// Before the first check it is "not checked yet".
	Reason string
	// Latency is the last check's duration.
	Latency time.Duration
	// LastCheck is when the last check ended; zero before the first.
	LastCheck time.Time
	// Capabilities are those of the last passing check (IMAP CAPABILITY
	// atoms, POP3 CAPA lines, EHLO/LHLO keywords, ManageSieve greeting
	// lines as "NAME value").
	Capabilities []string
	// Health is the HAProxy-style counter, 0..Rise+Fall-1; up when >= Rise.
	Health int
	// Rise and Fall are the effective thresholds.
	Rise, Fall int
	// Forced says the server is down because of ForceDown and has not come
	// back up since.
	Forced bool
}

// Result is the outcome of one probe.
type Result struct {
	OK bool
	// Reason is a one-line summary: "<type>: OK in <latency>" or what failed.
	Reason  string
	Latency time.Duration
	// Capabilities advertised by the server (see Status.Capabilities).
	Capabilities []string
	// Err is nil when OK; otherwise a *CheckError (or context.Canceled).
	Err error
}

// Checker probes one server on a schedule and keeps its up/down state.
// Its methods are safe for concurrent use; Run must not run twice at once.
type Checker struct {
	opts Options // defaults resolved
	log  *slog.Logger
	// probe runs one check; tests replace it.
	probe func(ctx context.Context) Result

	// rearm wakes Run after ForceDown so the next check comes after
	// DownInter, not after the Inter the timer was armed with (HAProxy's
	// on-error mark-down also speeds up the following checks).
	rearm chan struct{}

	notifyMu sync.Mutex // serializes state changes with their OnChange calls; taken before mu
	mu       sync.Mutex // guards the fields below
	health   int
	up       bool
	forced   bool
	last     Result
	lastAt   time.Time
	caps     []string
}

// New validates opts, resolves its defaults and returns a Checker that has
// not started checking yet.
func New(opts Options) (*Checker, error) {
	if err := opts.resolve(); err != nil {
		return nil, fmt.Errorf("new checker %q: %w", opts.Server, err)
	}
	c := &Checker{
		opts:  opts,
		log:   opts.Logger.With("server", opts.Server, "check", opts.Type.String(), "address", opts.Address),
		rearm: make(chan struct{}, 1),
	}
	c.probe = c.runProbe
	max := opts.Rise + opts.Fall - 1
	switch opts.Initial {
	case InitFullyUp:
		c.health, c.up = max, true
	case InitUp:
		c.health, c.up = opts.Rise, true
	case InitDown:
		c.health, c.up = opts.Rise-1, false
	case InitFullyDown:
		c.health, c.up = 0, false
	}
	c.last.Reason = "not checked yet"
	return c, nil
}

// OptionError is one problem New found in Options.
type OptionError struct {
	Field   string
	Problem string
}

func (e *OptionError) Error() string { return e.Field + ": " + e.Problem }

// resolve fills defaults and returns every problem, joined.
func (o *Options) resolve() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &OptionError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if !o.Type.valid() {
		bad("Type", "unknown type %d", int(o.Type))
	}
	host, _, err := net.SplitHostPort(o.Address)
	if err != nil {
		bad("Address", "%v", err)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
	}{{"Inter", &o.Inter}, {"FastInter", &o.FastInter}, {"DownInter", &o.DownInter}, {"Timeout", &o.Timeout}, {"Spread", &o.Spread}} {
		if *d.v < 0 {
			bad(d.name, "negative duration %v", *d.v)
		}
	}
	if o.Inter <= 0 {
		o.Inter = DefaultInter
	}
	if o.FastInter <= 0 {
		o.FastInter = o.Inter
	}
	if o.DownInter <= 0 {
		o.DownInter = o.Inter
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Rise < 0 {
		bad("Rise", "negative count %d", o.Rise)
	}
	if o.Fall < 0 {
		bad("Fall", "negative count %d", o.Fall)
	}
	if o.Rise <= 0 {
		o.Rise = DefaultRise
	}
	if o.Fall <= 0 {
		o.Fall = DefaultFall
	}
	if o.Initial < InitFullyUp || o.Initial > InitFullyDown {
		bad("Initial", "unknown initial state %d", int(o.Initial))
	}
	if o.Proxy < ProxyNone || o.Proxy > ProxyV2 {
		bad("Proxy", "unknown proxy header kind %d", int(o.Proxy))
	}
	if o.Hostname == "" {
		o.Hostname = DefaultHostname
	}
	if strings.ContainsAny(o.Hostname, " \t\r\n\x00") {
		bad("Hostname", "contains white space or control characters")
	}
	if o.User == "" && (o.Password != "" || o.SelectInbox) {
		bad("User", "empty, but Password or SelectInbox is set")
	}
	if o.User != "" && o.Type != TypeIMAP {
		bad("User", "login is only supported by imap checks")
	}
	// Literals could carry CR and LF, but NUL is not a CHAR8 (RFC 3501 section 9).
	if strings.ContainsRune(o.User, 0) || strings.ContainsRune(o.Password, 0) {
		bad("User", "user or password contains NUL")
	}
	if o.HTTPMethod == "" {
		o.HTTPMethod = "GET"
	}
	if !isHTTPToken(o.HTTPMethod) {
		bad("HTTPMethod", "%q is not an HTTP token", o.HTTPMethod)
	}
	if o.HTTPPath == "" {
		o.HTTPPath = "/"
	}
	if !strings.HasPrefix(o.HTTPPath, "/") || strings.ContainsAny(o.HTTPPath, " \t\r\n\x00") {
		bad("HTTPPath", "%q must start with / and contain no white space", o.HTTPPath)
	}
	if o.HTTPHost == "" {
		o.HTTPHost = host
		if strings.Contains(host, ":") {
			o.HTTPHost = "[" + host + "]"
		}
	}
	if strings.ContainsAny(o.HTTPHost, " \t\r\n\x00") {
		bad("HTTPHost", "contains white space or control characters")
	}
	if o.ExpectStatus == 0 {
		o.ExpectStatus = 200
	}
	if o.ExpectStatus < 100 || o.ExpectStatus > 999 {
		bad("ExpectStatus", "%d is not a three-digit status", o.ExpectStatus)
	}
	if o.ExpectStatusMax == 0 {
		o.ExpectStatusMax = o.ExpectStatus
	}
	if o.ExpectStatusMax < o.ExpectStatus || o.ExpectStatusMax > 999 {
		bad("ExpectStatusMax", "%d is not a three-digit status from ExpectStatus (%d)", o.ExpectStatusMax, o.ExpectStatus)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Dial == nil {
		var d net.Dialer
		o.Dial = d.DialContext
	}
	if o.TLS != nil && o.TLS.ServerName == "" && !o.TLS.InsecureSkipVerify {
		o.TLS = o.TLS.Clone()
		o.TLS.ServerName = host
	}
	return errors.Join(errs...)
}

// isHTTPToken reports whether s is a token (RFC 9110 section 5.6.2).
func isHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r >= 0x7f || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}

// Run checks the server on its schedule until ctx is done, then stops its
// timer and returns. A check in flight when ctx ends is abandoned and not
// counted.
func (c *Checker) Run(ctx context.Context) {
	first := time.Duration(0)
	if c.opts.Spread > 0 {
		first = rand.N(c.opts.Spread)
	}
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.rearm:
			timer.Reset(c.interval())
			continue
		case <-timer.C:
		}
		res := c.probe(ctx)
		if ctx.Err() != nil {
			return
		}
		if localResource(res.Err) {
			// This host is out of descriptors or memory: the probe says
			// nothing of the server, so it counts neither way.
			c.log.Warn("check skipped: local resources exhausted (not the server's fault)", "err", res.Err)
			timer.Reset(c.interval())
			continue
		}
		c.record(res)
		timer.Reset(c.interval())
	}
}

// CheckNow runs one probe and returns its result without touching the state.
func (c *Checker) CheckNow(ctx context.Context) Result {
	return c.probe(ctx)
}

// Status returns a snapshot of the state.
func (c *Checker) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Status{
		Up:           c.up,
		Reason:       c.last.Reason,
		Latency:      c.last.Latency,
		LastCheck:    c.lastAt,
		Capabilities: slices.Clone(c.caps),
		Health:       c.health,
		Rise:         c.opts.Rise,
		Fall:         c.opts.Fall,
		Forced:       c.forced,
	}
}

// ForceDown takes the server down now, whatever the counter says, for
// passive health: real sessions failed. It then needs Rise passing checks to
// come back. A server already down has its counter reset to 0. The transition
// (if any) is logged and reported to OnChange before ForceDown returns.
func (c *Checker) ForceDown(reason string) {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	c.mu.Lock()
	wasUp := c.up
	c.health, c.up, c.forced = 0, false, true
	c.last = Result{Reason: reason}
	c.lastAt = time.Now()
	at := c.lastAt
	c.mu.Unlock()
	if wasUp {
		c.notify(Transition{Server: c.opts.Server, Up: false, Reason: reason, Forced: true, At: at})
	}
	select {
	case c.rearm <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// record applies one result to the state machine (HAProxy's
// check_notify_success/failure) and reports a transition.
func (c *Checker) record(res Result) {
	c.notifyMu.Lock()
	defer c.notifyMu.Unlock()
	c.mu.Lock()
	max := c.opts.Rise + c.opts.Fall - 1
	wasUp := c.up
	if res.OK {
		if c.health < max {
			c.health++
		}
		if c.health >= c.opts.Rise {
			c.up = true
			c.forced = false
		}
		c.caps = res.Capabilities
	} else {
		if c.health > c.opts.Rise {
			c.health--
		} else {
			c.health = 0
			c.up = false
		}
	}
	c.last = res
	c.lastAt = time.Now()
	at, up, health := c.lastAt, c.up, c.health
	c.mu.Unlock()
	c.log.Debug("check", "ok", res.OK, "reason", res.Reason, "latency", res.Latency, "health", health)
	if up != wasUp {
		c.notify(Transition{Server: c.opts.Server, Up: up, Reason: res.Reason, Latency: res.Latency, At: at})
	}
	if c.opts.OnResult != nil {
		c.opts.OnResult(res)
	}
}

// notify logs t and hands it to OnChange. Called with notifyMu held.
func (c *Checker) notify(t Transition) {
	if t.Up {
		c.log.Info("server up", "reason", t.Reason, "latency", t.Latency)
	} else {
		c.log.Warn("server down", "reason", t.Reason, "latency", t.Latency, "forced", t.Forced)
	}
	if c.opts.OnChange != nil {
		c.opts.OnChange(t)
	}
}

// interval is HAProxy's srv_getinter: Inter on a full counter, DownInter on
// an empty one, FastInter in between.
func (c *Checker) interval() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.health {
	case c.opts.Rise + c.opts.Fall - 1:
		return c.opts.Inter
	case 0:
		return c.opts.DownInter
	default:
		return c.opts.FastInter
	}
}

// localResource reports whether err is this host's resource limit (out of
// descriptors, EMFILE/ENFILE, or of kernel memory, ENOBUFS/ENOMEM), not
// the server's failure.
func localResource(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}
