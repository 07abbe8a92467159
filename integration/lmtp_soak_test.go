package integration

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// lmtpSoakResult is the reply one recipient of one soak message got.
type lmtpSoakResult struct {
	id, user string
	code     int
	text     string
}

// lmtpSoak is the shared state of the soak's clients.
type lmtpSoak struct {
	addr     string
	total    int64
	users    []string
	next     atomic.Int64 // next message number to send
	finished atomic.Int64 // messages whose transaction ended

	mu      sync.Mutex
	results []lmtpSoakResult
	errs    []error
}

func (s *lmtpSoak) fail(err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

// lmtpSoakClient is one MTA: transactions of 1–5 distinct recipients, a
// new session every 50. It exits when every message has been taken or
// after too many session failures.
func lmtpSoakClient(s *lmtpSoak, client int, wg *sync.WaitGroup) {
	defer wg.Done()
	rng := rand.New(rand.NewPCG(uint64(client), 42))
	var m *lmtpMTA
	defer func() {
		if m != nil {
			m.close()
		}
	}()
	failures := 0
	for done := 0; ; done++ {
		n := s.next.Add(1) - 1
		if n >= s.total {
			return
		}
		if m == nil || done%50 == 0 {
			if m != nil {
				m.close()
			}
			var err error
			if m, err = lmtpConnect(s.addr); err != nil {
				s.fail(fmt.Errorf("client %d: %w", client, err))
				return
			}
		}
		id := fmt.Sprintf("soak-%05d", n)
		size := 0
		if n%10 == 0 {
			size = 12 << 10 // past spool_memory: spooled to disk
		}
		perm := rng.Perm(len(s.users))[:1+rng.IntN(5)]
		rcpts := make([]string, len(perm))
		for i, p := range perm {
			rcpts[i] = lmtpAddr(s.users[p])
		}
		replies, err := m.send("mta@example.org", rcpts, lmtpMessage(id, size))
		s.finished.Add(1)
		if err != nil {
			// The session broke: the proxy must never do that. The
			// message's fate is unknown, so it is reported, not counted.
			s.fail(fmt.Errorf("client %d, %s to %v: %w", client, id, rcpts, err))
			m.c.Close()
			m = nil
			if failures++; failures > 10 {
				return
			}
			continue
		}
		s.mu.Lock()
		for _, r := range replies {
			u, _, _ := strings.Cut(r.Rcpt, "@")
			s.results = append(s.results, lmtpSoakResult{id: id, user: u, code: r.Code, text: r.Text})
		}
		s.mu.Unlock()
	}
}

// waitFinished waits (bounded) until n messages have been sent, or the
// clients are done.
func (s *lmtpSoak) waitFinished(n int64, clients <-chan struct{}) {
	for range 60000 {
		if s.finished.Load() >= n {
			return
		}
		select {
		case <-clients:
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// TestLMTPSoakServerRestarts sends 5,000 messages (1–5 recipients each)
// from 4 concurrent MTA clients while one of three servers is stopped
// politely, started, killed with SIGKILL and started again. Afterwards
// every 250 is exactly one message in a maildir and nothing else landed:
// every other recipient got a 4xx, none a 5xx. Bodies past spool_memory
// went through spool_dir, which is empty at the end.
func TestLMTPSoakServerRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("soak: skipped with -short")
	}
	const (
		messages = 5000
		clients  = 4
		victim   = "dovecot2"
	)
	spool := t.TempDir()
	// maildirector gives up on a server before the MTA gives up on
	// maildirector (the MTA waits 30s here), as a proxy must: a Dovecot
	// that stalls after the kill (a delivery waiting for the mailbox lock
	// the killed process left) then costs its recipients a 451, never
	// silence.
	fes := lmtpFrontends(lmtpSpoolOptions(spool))
	fes[0].Extra += "\n[frontend.lmtp.timeouts]\ndata = \"10s\"\nserver_login = \"10s\"\n"
	e := startEnv(t, setupSpec{
		Instances: 3,
		Frontends: fes,
		Backend:   lmtpBackend,
		// Users return to their server soon after it is back, so that the
		// kill finds deliveries to it again.
		UserExpire: "100ms",
	})
	s := &lmtpSoak{addr: e.addrs["lmtp"], total: messages}
	for i := range 60 {
		s.users = append(s.users, fmt.Sprintf("user%03d", i))
	}

	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go lmtpSoakClient(s, c, &wg)
	}
	clientsDone := make(chan struct{})
	go func() { wg.Wait(); close(clientsDone) }()

	in := e.instanceOf(victim)
	steps := []struct {
		after int64
		name  string
		do    func() error
	}{
		{messages * 2 / 10, "stop (SIGTERM)", in.Stop},
		{messages * 3 / 10, "start", in.Start},
		{messages * 5 / 10, "kill (SIGKILL)", in.Kill},
		{messages * 6 / 10, "start", in.Start},
	}
	for _, st := range steps {
		s.waitFinished(st.after, clientsDone)
		t.Logf("%s %s after %d messages", st.name, victim, s.finished.Load())
		if err := st.do(); err != nil {
			t.Fatalf("%s %s: %v", st.name, victim, err)
		}
	}
	<-clientsDone
	elapsed := time.Since(start)

	for _, err := range s.errs {
		t.Error(err)
	}
	// What landed, by user and X-Test-Id: the servers holding a copy.
	found := make(map[[2]string][]string)
	offHome := 0
	for _, u := range s.users {
		for server, ids := range e.lmtpIDs(u) {
			for id, n := range ids {
				for range n {
					found[[2]string{u, id}] = append(found[[2]string{u, id}], server)
				}
				if server != e.lmtpServer(u) {
					offHome += n
				}
			}
		}
	}
	codes := make(map[int]int)
	var ambiguous []string
	for _, r := range s.results {
		codes[r.code]++
		key := [2]string{r.user, r.id}
		copies := found[key]
		delete(found, key)
		switch {
		case r.code == 250 && len(copies) != 1:
			t.Errorf("%s for %s: got 250 and copies on %v, want exactly one", r.id, r.user, copies)
		case r.code/100 == 4 && len(copies) == 1 && copies[0] == victim:
			// The server stored the message, then died or shut down
			// before its 250 (Dovecot says 421 4.3.2 "Shutting down"
			// after the data on SIGTERM): LMTP cannot tell, so 4xx is the
			// only answer that loses nothing (the MTA's retry makes a
			// duplicate). Bounded by the transactions in flight.
			ambiguous = append(ambiguous, fmt.Sprintf("%s for %s: %d %s", r.id, r.user, r.code, r.text))
		case r.code/100 == 4 && len(copies) != 0:
			t.Errorf("%s for %s: got %d %s and copies on %v, want none", r.id, r.user, r.code, r.text, copies)
		case r.code != 250 && r.code/100 != 4:
			t.Errorf("%s for %s: got %d %s, want 250 or 4xx (no 5xx for proxy-side faults)", r.id, r.user, r.code, r.text)
		}
	}
	for key, servers := range found {
		t.Errorf("%s for %s: copies on %v that no reply accounts for", key[1], key[0], servers)
	}
	// Two disruptions, each with at most every client's transaction in
	// flight, each of at most 5 recipients.
	if len(ambiguous) > 2*clients*5 {
		t.Errorf("%d recipients got 4xx though %s stored their message, want at most %d (in flight at the stop and the kill):\n%s",
			len(ambiguous), victim, 2*clients*5, strings.Join(ambiguous, "\n"))
	} else {
		for _, a := range ambiguous {
			t.Logf("stored by %s before it went away, answered 4xx: %s", victim, a)
		}
	}
	lmtpSpoolEmpty(t, spool)
	if e.md.exited() {
		t.Errorf("maildirector exited: %v", e.md.err)
	}
	t.Logf("%d messages, %d recipients in %v (%.0f deliveries/s); replies %v; %d landed off their hash server; %d stored but answered 4xx",
		s.finished.Load(), len(s.results), elapsed.Round(time.Millisecond),
		float64(len(s.results))/elapsed.Seconds(), codes, offHome, len(ambiguous))
	if codes[250] == 0 || codes[451] == 0 {
		t.Errorf("replies %v: want both 250s and 451s (the restarts must have been seen)", codes)
	}
}
