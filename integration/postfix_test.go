package integration

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/maildirector/maildirector/internal/postfixlab"
)

// postfixSubmitter is one SMTP client submitting to Postfix's smtpd: a new
// session every 100 messages. It exits when every message has been taken.
type postfixSubmitter struct {
	addr      string
	total     int64
	users     []string
	next      atomic.Int64 // next message number to submit
	submitted atomic.Int64

	mu    sync.Mutex
	rcpts map[string][]string // X-Test-Id → the users it was sent to
	errs  []error
}

func (s *postfixSubmitter) run(client int, wg *sync.WaitGroup) {
	defer wg.Done()
	rng := rand.New(rand.NewPCG(uint64(client), 8))
	var c *gosmtp.Client
	defer func() {
		if c != nil {
			c.Quit()
			c.Close()
		}
	}()
	for done := 0; ; done++ {
		n := s.next.Add(1) - 1
		if n >= s.total {
			return
		}
		if c == nil || done%100 == 0 {
			if c != nil {
				c.Quit()
				c.Close()
			}
			var err error
			if c, err = postfixDial(s.addr); err != nil {
				s.fail(fmt.Errorf("client %d: %w", client, err))
				return
			}
		}
		id := fmt.Sprintf("postfix-%04d", n)
		size := 0
		if n%10 == 0 {
			size = 20 << 10 // past spool_memory: maildirector spools it to disk
		}
		perm := rng.Perm(len(s.users))[:1+rng.IntN(3)]
		users := make([]string, len(perm))
		addrs := make([]string, len(perm))
		for i, p := range perm {
			users[i], addrs[i] = s.users[p], lmtpAddr(s.users[p])
		}
		if err := c.SendMail("mta@mta.test", addrs, bytes.NewReader(lmtpMessage(id, size))); err != nil {
			// Postfix's smtpd takes every message; a refusal is the lab's fault.
			s.fail(fmt.Errorf("client %d: submit %s: %w", client, id, err))
			c.Close()
			c = nil
			continue
		}
		s.mu.Lock()
		s.rcpts[id] = users
		s.mu.Unlock()
		s.submitted.Add(1)
	}
}

func (s *postfixSubmitter) fail(err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

// waitSubmitted waits (bounded) until n messages were submitted or the
// clients are done.
func (s *postfixSubmitter) waitSubmitted(n int64, clients <-chan struct{}) {
	for range 30000 {
		if s.submitted.Load() >= n {
			return
		}
		select {
		case <-clients:
			return
		case <-time.After(time.Millisecond):
		}
	}
}

func postfixDial(addr string) (*gosmtp.Client, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: clientIP}, Timeout: 5 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := gosmtp.NewClient(nc)
	c.CommandTimeout, c.SubmissionTimeout = 30*time.Second, 30*time.Second
	if err := c.Hello("submitter.test"); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting and EHLO: %w", err)
	}
	return c, nil
}

// postfixLogCount counts the log lines of LMTP deliveries with the given
// status ("sent", "deferred", "bounced").
func postfixLogCount(t *testing.T, mta *postfixlab.Instance, status string) int {
	t.Helper()
	log, err := mta.Log()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(log, "status="+status)
}

// TestPostfixDeliversThroughMaildirector: a real MTA, Postfix, submits
// 1,000 messages (1–3 recipients each, users spread over three Dovecot
// servers) over LMTP to maildirector while one server is stopped and
// started again. Postfix's queue ends empty after its retries, and every
// message is in each of its recipients' maildirs exactly once, on the
// recipient's own server: a recipient whose server was down must be
// answered 4xx (Postfix retries), never 250 (lost) nor 5xx (bounced).
func TestPostfixDeliversThroughMaildirector(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 messages through Postfix: skipped with -short")
	}
	const (
		messages = 1000
		clients  = 4
		victim   = "dovecot2"
	)
	spool := t.TempDir()
	// maildirector gives up on a server long before Postfix gives up on
	// maildirector (lmtp_data_done_timeout is 600s), so a Dovecot that
	// stalls while it stops costs a 451, never an MTA timeout.
	fes := lmtpFrontends(lmtpSpoolOptions(spool))
	fes[0].Extra += "\n[frontend.lmtp.timeouts]\ndata = \"10s\"\nserver_login = \"10s\"\n"
	e := startEnv(t, setupSpec{Instances: 3, Frontends: fes, Backend: lmtpBackend})
	mta := postfixlab.StartT(t, postfixlab.Options{LMTP: e.addrs["lmtp"], Concurrency: 4})

	s := &postfixSubmitter{addr: mta.SMTPAddr, total: messages, rcpts: make(map[string][]string)}
	for i := range 60 {
		s.users = append(s.users, fmt.Sprintf("user%03d", i))
	}
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go s.run(c, &wg)
	}
	clientsDone := make(chan struct{})
	go func() { wg.Wait(); close(clientsDone) }()

	in := e.instanceOf(victim)
	s.waitSubmitted(messages*2/10, clientsDone)
	t.Logf("stop %s after %d messages submitted, %d recipients delivered", victim, s.submitted.Load(), postfixLogCount(t, mta, "sent"))
	if err := in.Stop(); err != nil {
		t.Fatalf("stop %s: %v", victim, err)
	}
	// Down until Postfix has been told to come back later for some of its
	// recipients (bounded): else the restart tested nothing. Without a
	// deferral the test goes on, to show where the mail went.
	s.waitSubmitted(messages*5/10, clientsDone)
	for i := 0; postfixLogCount(t, mta, "deferred") == 0; i++ {
		if i == 150 {
			t.Errorf("no recipient deferred 15s after %s stopped", victim)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("start %s after %d messages submitted, %d recipients deferred", victim, s.submitted.Load(), postfixLogCount(t, mta, "deferred"))
	if err := in.Start(); err != nil {
		t.Fatalf("start %s: %v", victim, err)
	}
	<-clientsDone
	submitted := time.Since(start)
	for _, err := range s.errs {
		t.Error(err)
	}

	// Postfix retries the deferred recipients every second or two.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		empty, err := mta.QueueEmpty()
		if err != nil {
			t.Fatal(err)
		}
		if empty {
			break
		}
		if time.Now().After(deadline) {
			q, _ := mta.Queue()
			t.Fatalf("Postfix's queue is not empty 3 minutes after the last submission:\n%s", tail(q, 40))
		}
		time.Sleep(250 * time.Millisecond)
	}
	drained := time.Since(start)

	// What landed, by user and X-Test-Id: the servers holding a copy.
	found := make(map[[2]string][]string)
	for _, u := range s.users {
		for server, ids := range e.lmtpIDs(u) {
			for id, n := range ids {
				for range n {
					found[[2]string{u, id}] = append(found[[2]string{u, id}], server)
				}
			}
		}
	}
	log, err := mta.Log()
	if err != nil {
		t.Fatal(err)
	}
	deferred := postfixDeferrals(t, log)
	if len(deferred) == 0 {
		t.Errorf("Postfix deferred no recipient of a test message: the restart went unseen")
	}
	var ambiguous []string
	recipients := 0
	for id, users := range s.rcpts {
		for _, u := range users {
			recipients++
			key := [2]string{u, id}
			copies := found[key]
			delete(found, key)
			own := e.lmtpServer(u)
			switch {
			case len(copies) == 1 && copies[0] == own:
			case len(copies) == 2 && copies[0] == victim && copies[1] == victim && own == victim && deferred[key]:
				// The victim stored the message, then shut down before
				// its 250 (Dovecot's 421 4.3.2 after the data): LMTP
				// cannot tell, so the 4xx that loses nothing makes
				// Postfix's retry a second copy. Bounded below.
				ambiguous = append(ambiguous, fmt.Sprintf("%s for %s", id, u))
			default:
				t.Errorf("%s for %s: got copies on %v, want exactly one on %s; Postfix's log of it:\n%s",
					id, u, copies, own, postfixHistory(log, id))
			}
		}
	}
	for key, servers := range found {
		t.Errorf("%s for %s: copies on %v that no submission accounts for", key[1], key[0], servers)
	}
	// One stop, with at most Postfix's 4 LMTP transactions in flight, each
	// of at most 3 recipients.
	if len(ambiguous) > 4*3 {
		t.Errorf("%d recipients have two copies on %s, want at most %d (in flight at the stop):\n%s",
			len(ambiguous), victim, 4*3, strings.Join(ambiguous, "\n"))
	}
	for _, a := range ambiguous {
		t.Logf("stored by %s before it stopped and delivered again on Postfix's retry: %s", victim, a)
	}
	if n := postfixLogCount(t, mta, "bounced"); n > 0 {
		t.Errorf("Postfix bounced %d recipients, want none (a proxy-side fault must be 4xx)", n)
	}
	if len(s.rcpts) != messages {
		t.Errorf("submitted %d messages, want %d", len(s.rcpts), messages)
	}
	lmtpSpoolEmpty(t, spool)
	if e.md.exited() {
		t.Errorf("maildirector exited: %v", e.md.err)
	}
	t.Logf("%d messages, %d recipients: submitted in %v, Postfix's queue empty after %v; %d deliveries logged sent, %d deferred; %d stored twice",
		len(s.rcpts), recipients, submitted.Round(time.Millisecond), drained.Round(time.Millisecond),
		postfixLogCount(t, mta, "sent"), postfixLogCount(t, mta, "deferred"), len(ambiguous))
}

// postfixDeferrals returns the (user, X-Test-Id) pairs that Postfix
// deferred at least once over LMTP, from its log: cleanup's message-id
// line names a message's queue id, lmtp's status=deferred lines name the
// queue id and the recipient.
func postfixDeferrals(t *testing.T, log string) map[[2]string]bool {
	t.Helper()
	idOf := make(map[string]string) // queue id → X-Test-Id
	for _, m := range postfixMessageID.FindAllStringSubmatch(log, -1) {
		idOf[m[1]] = m[2]
	}
	out := make(map[[2]string]bool)
	for _, m := range postfixDeferred.FindAllStringSubmatch(log, -1) {
		u, _, _ := strings.Cut(m[2], "@")
		out[[2]string{u, idOf[m[1]]}] = true
	}
	return out
}

// postfixHistory returns Postfix's log lines about the message with the
// given X-Test-Id, for failure messages.
func postfixHistory(log, id string) string {
	qid := ""
	for _, m := range postfixMessageID.FindAllStringSubmatch(log, -1) {
		if m[2] == id {
			qid = m[1]
		}
	}
	if qid == "" {
		return "(not in Postfix's log)"
	}
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, " "+qid+": ") {
			out = append(out, "\t"+line)
		}
	}
	return strings.Join(out, "\n")
}

var (
	postfixMessageID = regexp.MustCompile(`cleanup\[\d+\]: ([0-9A-F]+): message-id=<([^@>]+)@mta\.test>`)
	postfixDeferred  = regexp.MustCompile(`lmtp\[\d+\]: ([0-9A-F]+): to=<([^>]+)>.*status=deferred`)
)

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
