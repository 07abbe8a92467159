package director

import (
	"errors"
	"fmt"
	"strings"
)

// Balance is the algorithm that places users who have no sticky entry.
type Balance int

const (
	// BalanceUser places users by weighted consistent hashing of the user name
	// and keeps them on their server through the sticky table. The default.
	BalanceUser Balance = iota
	// BalanceLeastConn places users on the server with the fewest live
	// sessions relative to its weight; ties go round robin.
	BalanceLeastConn
	// BalanceRoundRobin places users by smooth weighted round robin.
	BalanceRoundRobin
	// BalanceSource hashes the client IP address; no sticky table.
	BalanceSource
	// BalanceDirector places users as Dovecot 2.3's director does (a ring
	// of ServerOptions.VhostCount MD5 points per server, the user's MD5 of
	// Options.UsernameHash looked up on it; see ring.go) and keeps them on
	// their server through the sticky table, as BalanceUser does.
	BalanceDirector
)

var balanceNames = [...]string{
	BalanceUser:       "user",
	BalanceLeastConn:  "leastconn",
	BalanceRoundRobin: "roundrobin",
	BalanceSource:     "source",
	BalanceDirector:   "director",
}

// String returns the configuration spelling of b ("user", "leastconn", ...).
func (b Balance) String() string {
	if b >= 0 && int(b) < len(balanceNames) {
		return balanceNames[b]
	}
	return fmt.Sprintf("Balance(%d)", int(b))
}

// ParseBalance parses the configuration spelling of a Balance,
// case-insensitively. The empty string means BalanceUser.
func ParseBalance(s string) (Balance, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return BalanceUser, nil
	}
	for b, name := range balanceNames {
		if strings.EqualFold(s, name) {
			return Balance(b), nil
		}
	}
	return 0, fmt.Errorf("parse balance %q: %w", s, ErrUnknownBalance)
}

// AdminState is the operator's wish for a server, independent of its health.
type AdminState int

const (
	// AdminReady: the server takes new users. The default.
	AdminReady AdminState = iota
	// AdminDrain: no new users; existing (sticky) users and sessions stay.
	AdminDrain
	// AdminMaint: no users at all; sticky users move on their next login.
	// Live sessions are the caller's business (kick them or let them end).
	AdminMaint
)

var adminNames = [...]string{
	AdminReady: "ready",
	AdminDrain: "drain",
	AdminMaint: "maint",
}

// String returns the configuration spelling of s ("ready", "drain", "maint").
func (s AdminState) String() string {
	if s >= 0 && int(s) < len(adminNames) {
		return adminNames[s]
	}
	return fmt.Sprintf("AdminState(%d)", int(s))
}

// ParseAdminState parses the configuration spelling of an AdminState,
// case-insensitively. The empty string means AdminReady.
func ParseAdminState(s string) (AdminState, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return AdminReady, nil
	}
	for a, name := range adminNames {
		if strings.EqualFold(s, name) {
			return AdminState(a), nil
		}
	}
	return 0, fmt.Errorf("parse admin state %q: %w", s, ErrUnknownAdminState)
}

var (
	// ErrNoServer means no server of the backend can take the user now:
	// all are down, in maintenance, draining, full or excluded. Frontends
	// render it as "backend unavailable" (IMAP NO [UNAVAILABLE], LMTP 451).
	ErrNoServer = errors.New("no usable server")
	// ErrUnknownServer means a server name is not part of the backend.
	ErrUnknownServer = errors.New("unknown server")
	// ErrServerUnavailable means the server exists but cannot hold users
	// now (down or in maintenance); returned by Move.
	ErrServerUnavailable = errors.New("server unavailable")
	// ErrUnknownBalance is returned by ParseBalance.
	ErrUnknownBalance = errors.New("unknown balance algorithm")
	// ErrUnknownAdminState is returned by ParseAdminState.
	ErrUnknownAdminState = errors.New("unknown admin state")
	// ErrInvalidWeight means a weight outside 0..MaxWeight.
	ErrInvalidWeight = errors.New("invalid weight")
)

// MaxWeight is the largest server weight.
const MaxWeight = 1000
