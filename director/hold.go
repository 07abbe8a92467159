package director

import (
	"errors"
	"fmt"
	"slices"
	"sync"
)

// ErrHeld means an operator froze the user (Holds.Freeze): no server may
// take the user's sessions or mail until the user is released.
var ErrHeld = errors.New("user frozen by an operator")

// HeldError is Pick's error for a frozen user. Released is closed when the
// user is released; a login may wait on it and pick again.
type HeldError struct {
	User     string
	Released <-chan struct{}
}

func (e *HeldError) Error() string { return fmt.Sprintf("%s: %v", e.User, ErrHeld) }
func (e *HeldError) Unwrap() error { return ErrHeld }

// Holds is the set of users an operator froze, by their normalised name.
// One Holds is shared by every Director of a process (Options.Holds) and
// outlives them, so that a freeze survives a reload that rebuilds a
// director. Safe for concurrent use.
type Holds struct {
	mu sync.Mutex
	m  map[string]chan struct{}
}

// NewHolds returns an empty set.
func NewHolds() *Holds { return &Holds{m: make(map[string]chan struct{})} }

// Freeze holds user; it reports false if the user was held already.
func (h *Holds) Freeze(user string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.m[user]; ok {
		return false
	}
	h.m[user] = make(chan struct{})
	return true
}

// Release lets user's sessions through again and wakes the logins that
// wait; it reports false if the user was not held.
func (h *Holds) Release(user string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.m[user]
	if ok {
		close(ch)
		delete(h.m, user)
	}
	return ok
}

// Held lists the held users, sorted.
func (h *Holds) Held() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.m))
	for u := range h.m {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// held returns the channel a held user's logins wait on, or nil.
func (h *Holds) held(user string) chan struct{} {
	if h == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[user]
}
