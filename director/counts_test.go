package director

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// assignedByWalk counts the sticky table's entries per server the slow way.
func assignedByWalk(d *Director) []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]int, len(d.servers))
	for _, e := range d.table.Values() {
		out[e.server]++
	}
	return out
}

// TestAssignedFollowsTheTable drives a small director through random
// picks, establishments, releases, failures, moves, forgets, health
// changes, expiry and eviction, and checks after every step that each
// server's Assigned equals a count of the sticky table.
func TestAssignedFollowsTheTable(t *testing.T) {
	d := newDirector(t, Options{Name: "b", Servers: servers(1, 1, 1), StickySize: 8, ErrorLimit: 2})
	rng := rand.New(rand.NewPCG(1, 2))
	var live []*Lease
	for step := range 3000 {
		user := fmt.Sprintf("u%d", rng.IntN(12))
		switch op := rng.IntN(9); op {
		case 0, 1:
			if l, err := d.Pick(Request{User: user}); err == nil {
				live = append(live, l)
			}
		case 2:
			if len(live) > 0 {
				live[rng.IntN(len(live))].Established()
			}
		case 3:
			if len(live) > 0 {
				i := rng.IntN(len(live))
				live[i].Release()
				live = append(live[:i], live[i+1:]...)
			}
		case 4:
			if len(live) > 0 {
				i := rng.IntN(len(live))
				live[i].Failed(errors.New("dial refused"))
				live = append(live[:i], live[i+1:]...)
			}
		case 5:
			d.Move(user, fmt.Sprintf("s%d", rng.IntN(3)))
		case 6:
			d.Forget(user)
		case 7:
			d.SetHealth(fmt.Sprintf("s%d", rng.IntN(3)), rng.IntN(3) > 0, "test")
		case 8:
			d.Where(user)
		}
		want := assignedByWalk(d)
		for i, st := range d.Servers() {
			if st.Assigned != want[i] {
				t.Fatalf("step %d: server %s: Assigned = %d, the table holds %d", step, st.Name, st.Assigned, want[i])
			}
		}
	}
}

// TestServerCounters checks Failed, PassiveDowns and Changed.
func TestServerCounters(t *testing.T) {
	d := newDirector(t, Options{Name: "b", Servers: servers(1), ErrorLimit: 2})
	start := status(t, d, "s0").Changed
	if start.IsZero() {
		t.Fatal("Changed is zero at the start")
	}
	time.Sleep(time.Millisecond)
	pick(t, d, "a").Failed(errors.New("refused"))
	pick(t, d, "a").Failed(errors.New("refused")) // the second in a row: down
	d.SetHealth("s0", true, "check passed")
	pick(t, d, "a").Failed(errors.New("refused"))
	st := status(t, d, "s0")
	if st.Failed != 3 {
		t.Errorf("Failed = %d, want 3", st.Failed)
	}
	if st.PassiveDowns != 1 {
		t.Errorf("PassiveDowns = %d, want 1 (the second failure in a row)", st.PassiveDowns)
	}
	if !st.Changed.After(start) {
		t.Errorf("Changed = %v, not after the start %v", st.Changed, start)
	}
	before := st.Changed
	time.Sleep(time.Millisecond)
	d.SetAdmin("s0", AdminDrain)
	if got := status(t, d, "s0").Changed; !got.After(before) {
		t.Errorf("Changed = %v after an admin change, want after %v", got, before)
	}
}
