package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/maildirector/maildirector/director"
)

// runState is what operators changed at run time (`maildirector ctl`):
// admin states, weights, moves and freezes. It is applied again after
// every reload, so that a reload keeps it, and with control.state_file it
// is saved on every change and read at start, so that a restart keeps it
// too (HAProxy's server-state-file).
type runState struct {
	mu   sync.Mutex
	path string // "": not saved
	// Servers are the overrides by "backend/server".
	Servers map[string]serverOverride `json:"servers,omitempty"`
	// Moves are the users an operator placed, by backend then user.
	Moves map[string]map[string]move `json:"moves,omitempty"`
	// Frozen are the users an operator froze (normalised names).
	Frozen []string `json:"frozen,omitempty"`
}

type serverOverride struct {
	State  string `json:"state,omitempty"`
	Weight *int   `json:"weight,omitempty"`
}

// move is one user's placement: an operator's move (ctl move), or with
// Expires an assignment imported from a Dovecot director
// (import-director), which is restored with its own expiry and is no move.
type move struct {
	Server  string    `json:"server"`
	At      time.Time `json:"at"`
	Expires time.Time `json:"expires,omitzero"`
}

// loadState reads path; a missing file is an empty state.
func loadState(path string) (*runState, error) {
	st := &runState{path: path}
	if path == "" {
		return st, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("control.state_file: %w", err)
	}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("control.state_file %s: %w", path, err)
	}
	return st, nil
}

// save writes the state atomically (a temporary file renamed over it).
// Call with st.mu held.
func (st *runState) saveLocked() error {
	if st.path == "" {
		return nil
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(st.path), ".state-*")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("save state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := os.Rename(tmp.Name(), st.path); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// update runs f on the state under its lock and saves it.
func (st *runState) update(f func()) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	f()
	return st.saveLocked()
}

func (st *runState) setServer(backend, server string, f func(*serverOverride)) error {
	return st.update(func() {
		if st.Servers == nil {
			st.Servers = make(map[string]serverOverride)
		}
		o := st.Servers[backend+"/"+server]
		f(&o)
		st.Servers[backend+"/"+server] = o
	})
}

func (st *runState) setMove(backend, user, server string) error {
	return st.update(func() {
		if st.Moves == nil {
			st.Moves = make(map[string]map[string]move)
		}
		if st.Moves[backend] == nil {
			st.Moves[backend] = make(map[string]move)
		}
		st.Moves[backend][user] = move{Server: server, At: time.Now()}
	})
}

func (st *runState) setFrozen(users []string) error {
	return st.update(func() { st.Frozen = users })
}

// forgetMoves drops the recorded moves of users (a flush, a kick that
// re-places them), or of every user of server when users is nil.
func (st *runState) forgetMoves(backend, server string, users []string) error {
	return st.update(func() {
		for u, m := range st.Moves[backend] {
			if (users == nil && m.Server == server) || slices.Contains(users, u) {
				delete(st.Moves[backend], u)
			}
		}
	})
}

// applyTo applies the overrides of backend to its director, and, when the
// director is new (built by this reload or at start), the moves that are
// younger than the backend's user_expire. Unknown servers are skipped:
// the configuration no longer has them.
func (st *runState) applyTo(backend string, dir *director.Director, fresh bool, userExpire time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, key := range slices.Sorted(maps.Keys(st.Servers)) {
		b, s, _ := cutServer(key)
		if b != backend {
			continue
		}
		o := st.Servers[key]
		if o.Weight != nil {
			dir.SetWeight(s, *o.Weight)
		}
		if a, err := director.ParseAdminState(o.State); err == nil && o.State != "" {
			dir.SetAdmin(s, a)
		}
	}
	if !fresh {
		return
	}
	for user, m := range st.Moves[backend] {
		switch {
		case !m.Expires.IsZero():
			dir.Assign(user, m.Server, m.Expires) // an error: expired, or the server is gone
		case userExpire > 0 && time.Since(m.At) > userExpire:
		default:
			dir.Move(user, m.Server)
		}
	}
}
