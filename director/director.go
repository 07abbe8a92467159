package director

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Defaults for zero Options fields.
const (
	// DefaultUserExpire is how long a sticky entry outlives the user's last
	// session when Options.UserExpire is zero. Dovecot's director uses 15
	// minutes (director_user_expire) for the same reason: a reconnecting
	// client should find its server's caches warm.
	DefaultUserExpire = 15 * time.Minute
	// DefaultStickySize bounds the sticky table when Options.StickySize is
	// zero: about a million users, a few hundred bytes each.
	DefaultStickySize = 1 << 20
	// DefaultVhostCount is a server's points on the ring when
	// ServerOptions.VhostCount is zero: Dovecot's VHOST_MULTIPLIER, the
	// vhost_count of a server added without one.
	DefaultVhostCount = 100
	// MaxVhostCount bounds ServerOptions.VhostCount: a ring of a hundred
	// servers at the maximum is a million points.
	MaxVhostCount = 10000
)

// ServerOptions describes one server of a backend.
type ServerOptions struct {
	// Name identifies the server in logs, Leases and the control API; it is
	// also the hash seed, so renaming a server moves its users. Usually the
	// dial address. Required, unique within the backend.
	Name string
	// Weight is the server's share of new users, 0..MaxWeight.
	// Zero means no new users (existing sticky users stay).
	Weight int
	// Backup servers take users only when no active server is usable.
	Backup bool
	// Admin is the initial administrative state; zero is AdminReady.
	Admin AdminState
	// MaxConn caps the server's live sessions; a full server takes no new
	// sessions, not even sticky ones. LMTP recipients are not sessions
	// (Request.Recipient): they neither fill a server nor are refused by
	// a full one. Zero (or negative) means unlimited.
	MaxConn int
	// IP is the server's address: under BalanceDirector the seed of its
	// points on the ring, as Dovecot's director hashes "<ip>-<i>"
	// (required then); ignored by the other algorithms.
	IP netip.Addr
	// VhostCount is the server's number of points on the ring under
	// BalanceDirector, Dovecot's vhost_count (doveadm director add HOST
	// COUNT): its share of new users is VhostCount / Σ VhostCount. Zero
	// means DefaultVhostCount; negative means none: no new users, as
	// Dovecot's vhost_count 0. Ignored by the other algorithms, which use
	// Weight.
	VhostCount int
}

// Options configures a Director.
type Options struct {
	// Name is the backend name, for logs and errors.
	Name string
	// Balance places users without a sticky entry; zero is BalanceUser.
	Balance Balance
	// UserExpire is how long a sticky entry lives after the user's last
	// session ends. Zero means DefaultUserExpire; negative means the entry is
	// forgotten as soon as the last session ends.
	UserExpire time.Duration
	// DefaultDomain is appended (after '@') to user names without '@', like
	// Dovecot's auth_default_realm; it must not contain '@'. Empty means
	// names are used as given (lower-cased and trimmed; see Request.User).
	DefaultDomain string
	// RecipientDelimiter is Dovecot's recipient_delimiter: each of its
	// characters (bytes) is a delimiter, and the detail, from the first
	// delimiter in the local part up to the '@', is stripped before routing,
	// as Dovecot strips it before its user lookup: "alice+lists@example.org"
	// routes as "alice@example.org". It applies to LMTP recipients
	// (Request.Recipient), and to login names with StripLoginDetail. Empty
	// means nothing is stripped; the configuration resolves Dovecot's
	// default "+", the director takes what it is given.
	RecipientDelimiter string
	// StripLoginDetail strips the RecipientDelimiter detail from IMAP, POP3,
	// submission and ManageSieve login names too, for sites whose Dovecot
	// strips it at login as well (say with auth_username_format). False
	// means login names keep it, as Dovecot's auth does by default.
	StripLoginDetail bool
	// MasterSeparator is Dovecot's auth_master_user_separator, e.g. "*": a
	// login name "alice*admin" is alice logged in by master user admin and
	// routes as "alice". As in Dovecot, the first separator counts, and it
	// applies to login names only (never to LMTP recipients). Empty means
	// none; it must be a single character (byte) that DefaultDomain does
	// not contain.
	MasterSeparator string
	// UsernameHash is Dovecot's director_username_hash, the name whose MD5
	// places a user on the ring under BalanceDirector; see usernameHash for
	// what is expanded. "" means DefaultUsernameHash, "%Lu". Ignored by the
	// other algorithms.
	UsernameHash string
	// AllBackups spreads users over all usable backups with the balance
	// algorithm when no active server is usable. False means only the first
	// usable backup in configuration order is used.
	AllBackups bool
	// ErrorLimit is the number of consecutive Failed leases that mark a
	// server down (passive health). Zero or negative turns it off.
	ErrorLimit int
	// StickySize bounds the sticky table (least recently used entries are
	// evicted first). Zero or negative means DefaultStickySize. An evicted
	// user with live sessions only loses its pin: the next session is placed
	// by the balance algorithm, for BalanceUser usually on the same server.
	StickySize int
	// Servers are the backend's servers; at least one is required.
	Servers []ServerOptions
	// Holds are the users an operator froze: Pick refuses them with a
	// *HeldError. Nil means none; share one among a process's directors.
	Holds *Holds
	// Logger receives state changes at Info and user moves at Debug.
	// Nil means discard.
	Logger *slog.Logger
	// Shared, if set, is the placement this node shares with others
	// (package cluster): Pick claims each new placement there first.
	// Nil means the node decides alone.
	Shared Shared
	// OnPassiveDown, if set, is called when ErrorLimit marks a server down,
	// after the Director's lock is released, so that the health checker can
	// force its own state machine down too. It must not block for long.
	OnPassiveDown func(server, reason string)
}

// Request is one placement question.
type Request struct {
	// User is the login name as the client sent it, or with Recipient the
	// LMTP recipient address; Pick normalises it to the user name Dovecot
	// will look up: trimmed, ASCII lower-cased, without the master user
	// part (login names) or the recipient detail (recipients, and login
	// names with Options.StripLoginDetail), with Options.DefaultDomain.
	User string
	// Recipient says User is an LMTP recipient address (RCPT TO), whose
	// Options.RecipientDelimiter detail is always stripped. False means a
	// login name (IMAP, POP3, submission, ManageSieve): the master user
	// part is cut off, the detail only with Options.StripLoginDetail.
	//
	// A recipient's lease does not count as a session on its server: not
	// against the server's MaxConn, not for BalanceLeastConn. It is one
	// delivery, held for an LMTP transaction, and the frontend caps its
	// connections to a server with its own pool; counted as sessions, an
	// MTA's burst of RCPTs made a server "full" and moved its IMAP users
	// elsewhere. Nor does a server that its sessions fill refuse a
	// recipient: mail goes to the user's server whatever its IMAP load.
	// The lease pins the user as any other does (sticky entry, Established,
	// Failed and passive health); ServerStatus counts it in Recipients.
	// One flag, not a second "do not count" one: every recipient is a
	// delivery and no delivery is a login, so the two could only disagree.
	Recipient bool
	// Client is the client's address; BalanceSource hashes its IP.
	Client netip.AddrPort
	// Exclude names servers already tried (and failed) for this login.
	Exclude []string
	// Stay asks for the user's own server and never another: the sticky
	// server, else the one the balance algorithm picks as if every server
	// were up. When that server is down (or in maintenance) Pick fails with
	// ErrServerUnavailable instead of placing the user elsewhere, and no
	// assignment moves. LMTP uses it so that, without shared storage, two
	// servers never write one mailbox.
	Stay bool
}

// server is the mutable state of one server, guarded by Director.mu.
type server struct {
	name    string
	hash    uint64
	weight  int
	backup  bool
	admin   AdminState
	maxConn int

	up      bool
	reason  string
	changed time.Time // the last change of up or admin

	assigned     int    // sticky entries in the table on this server
	failed       uint64 // Failed leases, ever
	passiveDowns uint64 // times Failed leases took the server down

	sessions   int      // live leases of logins (not Request.Recipient)
	recipients int      // live leases of LMTP recipients (Request.Recipient)
	ip         string   // ServerOptions.IP as net_ip2addr prints it ("" without one)
	ipKey      []byte   // the address in net_ip_cmp's order (ipKey)
	vhosts     []uint32 // the hashes of the server's ring points (BalanceDirector)
	picks      uint64   // leases handed out, ever
	failures   int      // consecutive Failed leases
	rrCur      int      // smooth weighted round robin "current weight"
}

// Director places users on the servers of one backend. All methods are
// safe for concurrent use.
type Director struct {
	name       string
	balance    Balance
	userExpire time.Duration
	names      userNames
	allBackups bool
	errorLimit int
	log        *slog.Logger
	onDown     func(server, reason string)
	holds      *Holds
	shared     Shared

	mu      sync.Mutex
	servers []server
	byName  map[string]int
	table   *simplelru.LRU[string, *sticky]
	// pending holds the entries of users who have leases but no sticky
	// entry yet: none of their sessions was established. Its size is
	// bounded by the live leases; StickyLen does not count it.
	pending map[string]*sticky
	rr      int // tie-break rotation for leastconn
	// userHash places users on the ring (BalanceDirector); rings are the
	// rings built so far, by membership (ringLocked).
	userHash usernameHash
	rings    []cachedRing
}

// New validates opts and returns a Director with every server up.
func New(opts Options) (*Director, error) {
	var errs []error
	if opts.Balance < BalanceUser || opts.Balance > BalanceDirector {
		errs = append(errs, fmt.Errorf("balance: %w: %d", ErrUnknownBalance, int(opts.Balance)))
	}
	if len(opts.Servers) == 0 {
		errs = append(errs, errors.New("no servers"))
	}
	if strings.Contains(opts.DefaultDomain, "@") {
		errs = append(errs, fmt.Errorf("default domain %q contains '@'", opts.DefaultDomain))
	}
	if sep := opts.MasterSeparator; len(sep) > 1 {
		errs = append(errs, fmt.Errorf("master user separator %q: want one character", sep))
	} else if sep != "" && strings.Contains(asciiLower(opts.DefaultDomain), asciiLower(sep)) {
		errs = append(errs, fmt.Errorf("default domain %q contains the master user separator %q", opts.DefaultDomain, sep))
	} else if sep != "" && strings.Contains(asciiLower(opts.RecipientDelimiter), asciiLower(sep)) {
		// "alice+bob" could be alice's detail or alice logged in by the
		// master user bob: no one reading can tell (found by fuzzing:
		// normalizing twice gave another name).
		errs = append(errs, fmt.Errorf("master user separator %q is also a recipient delimiter (%q)", sep, opts.RecipientDelimiter))
	}
	d := &Director{
		holds:      opts.Holds,
		shared:     opts.Shared,
		name:       opts.Name,
		balance:    opts.Balance,
		userExpire: opts.UserExpire,
		names: userNames{
			domain:     strings.TrimSpace(opts.DefaultDomain),
			delimiters: asciiLower(opts.RecipientDelimiter),
			masterSep:  asciiLower(opts.MasterSeparator),
			stripLogin: opts.StripLoginDetail,
		},
		allBackups: opts.AllBackups,
		errorLimit: max(opts.ErrorLimit, 0),
		log:        opts.Logger,
		onDown:     opts.OnPassiveDown,
		servers:    make([]server, len(opts.Servers)),
		byName:     make(map[string]int, len(opts.Servers)),
		pending:    make(map[string]*sticky),
	}
	if d.userExpire == 0 {
		d.userExpire = DefaultUserExpire
	}
	if d.balance == BalanceDirector {
		var err error
		if d.userHash, err = parseUsernameHash(opts.UsernameHash); err != nil {
			errs = append(errs, err)
		}
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	for i, so := range opts.Servers {
		switch _, dup := d.byName[so.Name]; {
		case so.Name == "":
			errs = append(errs, fmt.Errorf("server[%d]: missing name", i))
		case dup:
			errs = append(errs, fmt.Errorf("server[%d]: duplicate name %q", i, so.Name))
		}
		if so.Weight < 0 || so.Weight > MaxWeight {
			errs = append(errs, fmt.Errorf("server[%d]: %w %d: want 0..%d", i, ErrInvalidWeight, so.Weight, MaxWeight))
		}
		if so.Admin < AdminReady || so.Admin > AdminMaint {
			errs = append(errs, fmt.Errorf("server[%d]: %w: %d", i, ErrUnknownAdminState, int(so.Admin)))
		}
		if so.VhostCount > MaxVhostCount {
			errs = append(errs, fmt.Errorf("server[%d]: vhost count %d: want at most %d", i, so.VhostCount, MaxVhostCount))
		}
		if d.balance == BalanceDirector && !so.IP.IsValid() {
			errs = append(errs, fmt.Errorf("server[%d]: balance director needs the server's IP address (the ring hashes it)", i))
		}
		d.byName[so.Name] = i
		d.servers[i] = server{
			name:    so.Name,
			hash:    serverHash(so.Name),
			weight:  so.Weight,
			backup:  so.Backup,
			admin:   so.Admin,
			maxConn: max(so.MaxConn, 0),
			up:      true,
			reason:  "initial state",
			changed: time.Now(),
		}
		if so.IP.IsValid() && d.balance == BalanceDirector {
			ip := so.IP.Unmap()
			d.servers[i].ip, d.servers[i].ipKey = ip.String(), ipKey(ip)
			d.servers[i].vhosts = vhostPoints(d.servers[i].ip, vhostCount(so.VhostCount))
		}
	}
	size := opts.StickySize
	if size <= 0 {
		size = DefaultStickySize
	}
	table, err := simplelru.NewLRU(size, d.evicted)
	if err != nil {
		errs = append(errs, fmt.Errorf("sticky table: %w", err))
	}
	d.table = table
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("director %s: %w", opts.Name, err)
	}
	return d, nil
}

// vhostCount resolves ServerOptions.VhostCount: zero is the default,
// negative none.
func vhostCount(n int) int {
	switch {
	case n == 0:
		return DefaultVhostCount
	case n < 0:
		return 0
	}
	return min(n, MaxVhostCount)
}

// Name returns the backend name.
func (d *Director) Name() string { return d.name }

// Balance returns the balance algorithm.
func (d *Director) Balance() Balance { return d.balance }

// lookupServer returns the index of the named server.
func (d *Director) lookupServer(name string) (int, error) {
	i, ok := d.byName[name]
	if !ok {
		return -1, fmt.Errorf("director %s: server %q: %w", d.name, name, ErrUnknownServer)
	}
	return i, nil
}
