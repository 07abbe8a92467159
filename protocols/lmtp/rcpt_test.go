package lmtp

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/maildirector/maildirector/proxy"
)

// rawServer is a hand-written LMTP server for behaviour go-smtp's server
// will not show: a 250 where DATA needs 354, an extra reply after the
// data. It advertises PIPELINING and answers pipelined commands in one write.
type rawServer struct {
	name string
	addr string

	mu        sync.Mutex
	mode      string      // "", "data250" (250 instead of 354, then as if 354), "extra" (one reply too many after the data), "late" (that extra reply a moment later, in its own write), "record" (TLS only: that extra reply in its own record, sent with the expected ones)
	lateSent  bool        // "late": the extra reply was written
	chunking  bool        // advertise CHUNKING (RFC 3030) and take BDAT
	tls       *tls.Config // set: implicit TLS
	verbs     []string
	bodies    []string // each message as the server received it (DATA unstuffed, BDAT as sent)
	conns     int
	msgs      int
	rcptReads int // network reads that brought RCPT lines
	rcpts     int
}

func startRawServer(t *testing.T, name string) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &rawServer{name: name, addr: ln.Addr().String()}
	t.Cleanup(func() { ln.Close() })
	go f.accept(ln)
	return f
}

func (f *rawServer) target() proxy.Target { return proxy.Target{Server: f.name, Address: f.addr} }

// startChunkingServer is a raw server that advertises CHUNKING.
func startChunkingServer(t *testing.T, name string) *rawServer {
	t.Helper()
	f := startRawServer(t, name)
	f.mu.Lock()
	f.chunking = true
	f.mu.Unlock()
	return f
}

func (f *rawServer) received() (verbs, bodies []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.verbs), slices.Clone(f.bodies)
}

func (f *rawServer) setMode(m string) {
	f.mu.Lock()
	f.mode = m
	f.mu.Unlock()
}

func (f *rawServer) counts() (conns, msgs, rcptReads, rcpts int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns, f.msgs, f.rcptReads, f.rcpts
}

func (f *rawServer) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns++
		cfg := f.tls
		f.mu.Unlock()
		if cfg != nil {
			c = tls.Server(&holdConn{Conn: c}, cfg)
		}
		go f.serve(c)
	}
}

func (f *rawServer) serve(c net.Conn) {
	defer c.Close()
	br, w := bufio.NewReader(c), bufio.NewWriter(c)
	w.WriteString("220 " + f.name + " LMTP\r\n")
	w.Flush()
	var rcpts []string
	for {
		fresh := br.Buffered() == 0
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, args, _ := strings.Cut(line, " ")
		f.mu.Lock()
		mode, chunking := f.mode, f.chunking
		f.verbs = append(f.verbs, strings.ToUpper(verb))
		f.mu.Unlock()
		after := func(body string) { // the replies after a message's data
			f.mu.Lock()
			f.msgs++
			f.bodies = append(f.bodies, body)
			f.mu.Unlock()
			for _, rc := range rcpts {
				w.WriteString("250 2.0.0 <" + rc + "> Saved on " + f.name + "\r\n")
			}
			if mode == "extra" {
				w.WriteString("250 2.0.0 <extra> Saved\r\n")
			}
			if mode == "record" {
				// The extra reply in a TLS record of its own, both records
				// in one TCP segment: the proxy's TLS layer reads both.
				h := c.(*tls.Conn).NetConn().(*holdConn)
				h.hold(true)
				w.Flush()
				w.WriteString("250 2.0.0 <extra> Saved\r\n")
				w.Flush()
				h.hold(false)
			}
			if mode == "late" {
				w.Flush()
				time.Sleep(20 * time.Millisecond) // the proxy has pooled the connection by now
				w.WriteString("250 2.0.0 <late> Saved\r\n")
				w.Flush()
				f.mu.Lock()
				f.lateSent = true
				f.mu.Unlock()
			}
			rcpts = nil
		}
		switch strings.ToUpper(verb) {
		case "LHLO":
			w.WriteString("250-" + f.name + "\r\n250-PIPELINING\r\n")
			if chunking {
				w.WriteString("250-CHUNKING\r\n")
			}
			w.WriteString("250 ENHANCEDSTATUSCODES\r\n")
		case "BDAT":
			// Only what maildirector sends: one chunk, LAST.
			size, last, _ := strings.Cut(args, " ")
			n, err := strconv.Atoi(size)
			if !chunking || err != nil || last != "LAST" {
				w.WriteString("501 5.5.4 Unexpected BDAT\r\n")
				break
			}
			body := make([]byte, n)
			if _, err := io.ReadFull(br, body); err != nil {
				return
			}
			after(string(body))
		case "MAIL":
			rcpts = nil
			w.WriteString("250 2.1.0 OK\r\n")
		case "RCPT":
			f.mu.Lock()
			f.rcpts++
			if fresh {
				f.rcptReads++
			}
			f.mu.Unlock()
			addr := strings.Trim(strings.TrimPrefix(strings.ToUpper(args), "TO:"), "<>")
			addr = strings.ToLower(addr)
			if strings.HasPrefix(addr, "unknown") {
				w.WriteString("550 5.1.1 <" + addr + "> User doesn't exist\r\n")
			} else {
				rcpts = append(rcpts, addr)
				w.WriteString("250 2.1.5 OK\r\n")
			}
		case "RSET":
			rcpts = nil
			w.WriteString("250 2.0.0 OK\r\n")
		case "DATA":
			if mode == "data250" {
				// Out of step: 250 where 354 is due, then the body taken
				// anyway and a 250 for each recipient after it.
				w.WriteString("250 2.0.0 OK\r\n")
			} else {
				w.WriteString("354 go ahead\r\n")
			}
			w.Flush()
			var body strings.Builder
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				body.WriteString(strings.TrimPrefix(l, ".")) // RFC 5321 section 4.5.2
			}
			after(body.String())
		case "QUIT":
			w.WriteString("221 2.0.0 Bye\r\n")
			w.Flush()
			return
		default:
			w.WriteString("500 5.5.1 Unknown command\r\n")
		}
		if br.Buffered() == 0 {
			w.Flush()
		}
	}
}

// pipelined writes lines in one write and reads one reply per line.
func (c *testClient) pipelined(lines []string) []testReply {
	c.t.Helper()
	c.writeRaw(strings.Join(lines, "\r\n") + "\r\n")
	replies := make([]testReply, len(lines))
	for i := range lines {
		replies[i] = c.read()
	}
	return replies
}

// TestPipelinedRCPTRepliesInOrder: RCPTs sent in one write to two
// servers, one slow to answer, are answered in the client's order, each
// with its own server's reply (RFC 2920 section 3.1, RFC 2033 section
// 4.2); the RCPTs reach each server pipelined, not one round trip each.
func TestPipelinedRCPTRepliesInOrder(t *testing.T) {
	slow := startFakeServer(t, "slow", false)
	slow.rcptDelay = 20 * time.Millisecond
	fast := startRawServer(t, "fast")
	slow.rcptReply["nobody@example.org"] = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "<nobody@example.org> User doesn't exist"}
	picker := &fakePicker{order: map[string][]proxy.Target{}}
	var lines []string
	var want []int
	for i := range 40 {
		var u string
		switch {
		case i%10 == 3:
			u = fmt.Sprintf("unknown%d@example.org", i) // fast's 550
			want = append(want, 550)
			picker.order[u] = []proxy.Target{fast.target()}
		case i%10 == 7:
			u = "nobody@example.org" // slow's 550, asked once per RCPT
			want = append(want, 550)
			picker.order[u] = []proxy.Target{slow.target()}
		case i%2 == 0:
			u = fmt.Sprintf("s%d@example.org", i)
			want = append(want, 250)
			picker.order[u] = []proxy.Target{slow.target()}
		default:
			u = fmt.Sprintf("f%d@example.org", i)
			want = append(want, 250)
			picker.order[u] = []proxy.Target{fast.target()}
		}
		lines = append(lines, "RCPT TO:<"+u+">")
	}
	addr, _, _ := startFrontend(t, Options{Picker: picker})
	c := dialLMTP(t, addr)
	replies := c.pipelined(append([]string{"MAIL FROM:<s@example.net>"}, lines...))
	if replies[0].code != 250 {
		t.Fatalf("MAIL: got %v, want 250", replies[0])
	}
	replies = replies[1:]
	if got := codes(replies); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("RCPT replies: got %v, want %v", got, want)
	}
	for i, r := range replies {
		if r.code == 550 && !strings.Contains(r.msg, strings.Trim(strings.TrimPrefix(lines[i], "RCPT TO:"), "")) {
			t.Errorf("reply %d: got %q, want the server's refusal of %s", i, r.msg, lines[i])
		}
	}
	if _, _, reads, rcpts := fast.counts(); rcpts != 16 || reads > 3 {
		t.Errorf("fast server: got %d RCPTs in %d reads, want 16 in at most 3 (pipelined)", rcpts, reads)
	}
	if r := c.cmd("DATA"); r.code != 354 {
		t.Fatalf("DATA: got %v, want 354", r)
	}
	c.writeRaw(testBody + ".\r\n")
	for i := range 32 {
		if r := c.read(); r.code != 250 {
			t.Errorf("reply %d after the data: got %v, want 250", i, r)
		}
	}
}

// TestServerProtocolViolations: a reply that does not fit its command
// fails that server's recipients with 451 4.4.1, never 250, and its
// connection is closed, not pooled: the next transaction is clean.
func TestServerProtocolViolations(t *testing.T) {
	for _, mode := range []string{"data250", "extra", "extra-chunking"} {
		t.Run(mode, func(t *testing.T) {
			bad := startRawServer(t, "bad")
			if mode == "extra-chunking" {
				bad = startChunkingServer(t, "bad")
				mode = "extra"
			}
			good := startFakeServer(t, "good", false)
			picker := &fakePicker{order: map[string][]proxy.Target{
				"a@example.org": {good.target()},
				"b@example.org": {bad.target()},
			}}
			addr, _, _ := startFrontend(t, Options{Picker: picker})
			c := dialLMTP(t, addr)
			bad.setMode(mode)
			rcptReplies, replies := c.transaction([]string{"a@example.org", "b@example.org"}, testBody)
			if got := codes(rcptReplies); fmt.Sprint(got) != "[250 250]" {
				t.Fatalf("RCPT: got %v, want [250 250]", rcptReplies)
			}
			if got := codes(replies); fmt.Sprint(got) != "[250 451]" {
				t.Fatalf("after the data: got %v, want [250 451] (%v)", got, replies)
			}
			if !strings.HasPrefix(replies[1].msg, "4.4.1 ") {
				t.Errorf("got %q, want 4.4.1", replies[1].msg)
			}
			_, failed := picker.counts()
			if failed != 1 {
				t.Errorf("failures reported: got %d, want 1", failed)
			}

			bad.setMode("")
			_, replies = c.transaction([]string{"b@example.org"}, testBody)
			if got := codes(replies); fmt.Sprint(got) != "[250]" {
				t.Fatalf("next transaction: got %v, want [250]", replies)
			}
			if !strings.Contains(replies[0].msg, "Saved on bad") {
				t.Errorf("next transaction: got %q, want the server's own 250", replies[0].msg)
			}
			if conns, _, _, _ := bad.counts(); conns != 2 {
				t.Errorf("connections to the bad server: got %d, want 2 (the broken one closed, not reused)", conns)
			}
		})
	}
}

// TestMaxRecipientsCountsAccepted: RCPTs a server refused do not use up
// max_recipients; past it the proxy answers 452 4.5.3 itself.
func TestMaxRecipientsCountsAccepted(t *testing.T) {
	f := startRawServer(t, "s1")
	picker := &fakePicker{order: map[string][]proxy.Target{}}
	rcpts := []string{"unknown1@example.org", "a@example.org", "unknown2@example.org", "unknown3@example.org", "b@example.org", "c@example.org", "unknown4@example.org"}
	for _, r := range rcpts {
		picker.order[r] = []proxy.Target{f.target()}
	}
	addr, _, _ := startFrontend(t, Options{Picker: picker, MaxRecipients: 2})
	for _, pipelined := range []bool{false, true} {
		c := dialLMTP(t, addr)
		var got []testReply
		if pipelined {
			lines := []string{"MAIL FROM:<s@example.net>"}
			for _, r := range rcpts {
				lines = append(lines, "RCPT TO:<"+r+">")
			}
			got = c.pipelined(lines)[1:]
		} else {
			c.cmd("MAIL FROM:<s@example.net>")
			for _, r := range rcpts {
				got = append(got, c.cmd("RCPT TO:<"+r+">"))
			}
		}
		if fmt.Sprint(codes(got)) != "[550 250 550 550 250 452 452]" {
			t.Errorf("pipelined %v: got %v, want [550 250 550 550 250 452 452]", pipelined, got)
		}
		if r := got[5]; !strings.HasPrefix(r.msg, "4.5.3 ") {
			t.Errorf("pipelined %v: got %v, want 452 4.5.3", pipelined, r)
		}
	}
}

// TestSpoolBudget: a message that would take the spools past SpoolBudget
// is answered 452 4.3.1 (the MTA retries), declared at MAIL or found
// during the data; the budget is given back afterwards.
func TestSpoolBudget(t *testing.T) {
	f := startFakeServer(t, "s1", false)
	hold := make(chan struct{})
	picker := pickerFor(map[string][]*fakeServer{"a@example.org": {f}, "b@example.org": {f}})
	addr, l, _ := startFrontend(t, Options{Picker: picker, SpoolBudget: 1000})

	c := dialLMTP(t, addr)
	if r := c.cmd("MAIL FROM:<s@example.net> SIZE=5000"); r.code != 452 || !strings.HasPrefix(r.msg, "4.3.1 ") {
		t.Errorf("MAIL SIZE past the budget: got %v, want 452 4.3.1", r)
	}
	_, replies := c.transaction([]string{"a@example.org", "b@example.org"}, strings.Repeat("0123456789abcdef\r\n", 100))
	for _, r := range replies {
		if r.code != 452 || !strings.HasPrefix(r.msg, "4.3.1 ") {
			t.Errorf("data past the budget: got %v, want 452 4.3.1", r)
		}
	}
	if n := len(f.messages()); n != 0 {
		t.Errorf("server got %d messages, want 0", n)
	}
	if st := l.Stats(); st.SpoolInUse != 0 || st.SpoolRefused != 2 {
		t.Errorf("stats: got %d in use and %d refused, want 0 and 2", st.SpoolInUse, st.SpoolRefused)
	}

	// A message within the budget is held by the spool until delivered.
	f.mu.Lock()
	f.hold = hold
	f.mu.Unlock()
	done := make(chan []testReply)
	go func() {
		c := dialLMTP(t, addr)
		_, replies := c.transaction([]string{"a@example.org"}, testBody)
		done <- replies
	}()
	deadline := time.Now().Add(10 * time.Second)
	for l.Stats().SpoolInUse != int64(len(testUnstuffed)) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := l.Stats().SpoolInUse; got != int64(len(testUnstuffed)) {
		t.Errorf("spool in use during delivery: got %d, want %d", got, len(testUnstuffed))
	}
	close(hold)
	if replies := <-done; fmt.Sprint(codes(replies)) != "[250]" {
		t.Errorf("within the budget: got %v, want [250]", replies)
	}
	if got := l.Stats().SpoolInUse; got != 0 {
		t.Errorf("spool in use after: got %d, want 0", got)
	}
}

// TestDSNParameters: RFC 3461 parameters reach a server that advertises
// DSN and are dropped, not refused, for one that does not.
func TestDSNParameters(t *testing.T) {
	withDSN := startFakeServerDSN(t, "dsn", false, true)
	without := startFakeServer(t, "plain", false)
	picker := pickerFor(map[string][]*fakeServer{"a@example.org": {withDSN}, "b@example.org": {without}})
	addr, _, _ := startFrontend(t, Options{Picker: picker})
	c := dialLMTP(t, addr)
	replies := c.pipelined([]string{
		"MAIL FROM:<s@example.net> RET=HDRS ENVID=abc+2Bdef",
		"RCPT TO:<a@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@example.org",
		"RCPT TO:<b@example.org> NOTIFY=NEVER ORCPT=rfc822;b@example.org",
		"DATA",
	})
	if got := codes(replies); fmt.Sprint(got) != "[250 250 250 354]" {
		t.Fatalf("got %v, want [250 250 250 354]", replies)
	}
	c.writeRaw(testBody + ".\r\n")
	for i := range 2 {
		if r := c.read(); r.code != 250 {
			t.Errorf("reply %d after the data: got %v, want 250", i, r)
		}
	}
	dsn := withDSN.transcriptText()
	for _, want := range []string{"RET=HDRS", "ENVID=abc+2Bdef", "NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;a@example.org"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("server with DSN: transcript lacks %q:\n%s", want, dsn)
		}
	}
	plain := without.transcriptText()
	for _, no := range []string{"RET=", "ENVID=", "NOTIFY=", "ORCPT="} {
		if strings.Contains(plain, no) {
			t.Errorf("server without DSN: got %q in\n%s", no, plain)
		}
	}
}

// FuzzParseMailRcpt: MAIL and RCPT arguments either fail or parse to a
// path without spaces or brackets, and the line the frontend builds from
// them parses back to the same.
func FuzzParseMailRcpt(f *testing.F) {
	for _, s := range []string{
		"FROM:<a@b> SIZE=10 BODY=8BITMIME SMTPUTF8 RET=FULL ENVID=x", "FROM:<>", "FROM: <a@b>",
		"TO:<a@b> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;a@b", "TO:<a b>", "TO:<a@b>x", "TO:<<a>>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, args string) {
		if from, p, err := parseMail(args); err == nil {
			if strings.ContainsAny(from, " <>\r\n") {
				t.Fatalf("parseMail(%q): path %q", args, from)
			}
			line := fmt.Sprintf("FROM:<%s>", from)
			if p.size > 0 {
				line += fmt.Sprintf(" SIZE=%d", p.size)
			}
			if p.envid != "" {
				line += " ENVID=" + p.envid
			}
			from2, p2, err := parseMail(line)
			if err != nil || from2 != from || p2.size != p.size || p2.envid != p.envid {
				t.Fatalf("parseMail(%q) = %q %+v, rebuilt %q parses to %q %+v %v", args, from, p, line, from2, p2, err)
			}
		}
		if to, p, err := parseRcpt(args); err == nil {
			if to == "" || strings.ContainsAny(to, " <>\r\n") {
				t.Fatalf("parseRcpt(%q): path %q", args, to)
			}
			line := "TO:<" + to + ">"
			if p.notify != "" {
				line += " NOTIFY=" + p.notify
			}
			if p.orcpt != "" {
				line += " ORCPT=" + p.orcpt
			}
			to2, p2, err := parseRcpt(line)
			if err != nil || to2 != to || p2 != p {
				t.Fatalf("parseRcpt(%q) = %q %+v, rebuilt %q parses to %q %+v %v", args, to, p, line, to2, p2, err)
			}
		}
	})
}

// TestBDATToChunkingServers: a server that advertises CHUNKING gets each
// message as one BDAT LAST chunk (RFC 3030), not DATA and a wait for
// 354, and the octets it receives are the ones a DATA server stores: the
// client's dot-stuffing undone, a body that did not end in CRLF given one.
// Its replies after the chunk are the recipients' replies.
func TestBDATToChunkingServers(t *testing.T) {
	chunky := startChunkingServer(t, "chunky")
	plain := startRawServer(t, "plain")
	picker := &fakePicker{order: map[string][]proxy.Target{
		"a@example.org": {chunky.target()},
		"b@example.org": {plain.target()},
	}}
	addr, _, _ := startFrontend(t, Options{Picker: picker})
	c := dialLMTP(t, addr)
	_, replies := c.transaction([]string{"a@example.org", "b@example.org"}, testBody)
	if got := codes(replies); fmt.Sprint(got) != "[250 250]" {
		t.Fatalf("after DATA: got %v, want [250 250]", replies)
	}
	if !strings.Contains(replies[0].msg, "Saved on chunky") || !strings.Contains(replies[1].msg, "Saved on plain") {
		t.Errorf("replies %v: want each server's own", replies)
	}

	// The client's own BDAT, its last chunk without a final CRLF.
	unended := "Subject: x\r\n\r\nno line end"
	for _, r := range c.pipelined([]string{"MAIL FROM:<s@example.net>", "RCPT TO:<a@example.org>", "RCPT TO:<b@example.org>"}) {
		if r.code != 250 {
			t.Fatalf("MAIL/RCPT: got %v", r)
		}
	}
	c.writeRaw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(unended), unended))
	for i := range 2 {
		if r := c.read(); r.code != 250 {
			t.Errorf("reply %d after BDAT LAST: got %v, want 250", i, r)
		}
	}

	verbs, chunkyBodies := chunky.received()
	if slices.Contains(verbs, "DATA") || !slices.Contains(verbs, "BDAT") {
		t.Errorf("chunking server got %v, want BDAT and no DATA", verbs)
	}
	verbs, plainBodies := plain.received()
	if slices.Contains(verbs, "BDAT") {
		t.Errorf("server without CHUNKING got %v, want no BDAT", verbs)
	}
	want := []string{testUnstuffed, unended + "\r\n"}
	if fmt.Sprintf("%q", chunkyBodies) != fmt.Sprintf("%q", want) {
		t.Errorf("chunking server's bodies: got %q, want %q", chunkyBodies, want)
	}
	if fmt.Sprintf("%q", plainBodies) != fmt.Sprintf("%q", want) {
		t.Errorf("DATA server's bodies: got %q, want %q", plainBodies, want)
	}
}

// TestLateExtraReplyNotReused: a server's extra reply that arrives after
// the transaction ended, in a write of its own, lies in the pooled
// connection's socket, not in what was read. The connection must not be
// reused: its stale 250 would answer the next transaction's RSET and put
// every reply after it out of step (the transaction's recipients got 451
// when only the buffered bytes were looked at). A fresh connection gives
// each RCPT its own answer.
func TestLateExtraReplyNotReused(t *testing.T) {
	bad := startRawServer(t, "bad")
	picker := &fakePicker{order: map[string][]proxy.Target{
		"a@example.org":       {bad.target()},
		"unknown@example.org": {bad.target()},
	}}
	addr, _, _ := startFrontend(t, Options{Picker: picker})
	c := dialLMTP(t, addr)
	bad.setMode("late")
	if _, replies := c.transaction([]string{"a@example.org"}, testBody); fmt.Sprint(codes(replies)) != "[250]" {
		t.Fatalf("first transaction: got %v, want [250]", replies)
	}
	for i := 0; ; i++ {
		bad.mu.Lock()
		sent := bad.lateSent
		bad.mu.Unlock()
		if sent {
			break
		}
		if i == 1000 {
			t.Fatal("the server never sent its late reply")
		}
		time.Sleep(5 * time.Millisecond)
	}
	bad.setMode("")
	rcptReplies, replies := c.transaction([]string{"unknown@example.org", "a@example.org"}, testBody)
	if got := codes(rcptReplies); fmt.Sprint(got) != "[550 250]" {
		t.Fatalf("RCPT after a late extra reply: got %v, want [550 250]", rcptReplies)
	}
	if got := codes(replies); fmt.Sprint(got) != "[250]" {
		t.Fatalf("after the data: got %v, want [250]", replies)
	}
	if conns, _, _, _ := bad.counts(); conns != 2 {
		t.Errorf("server connections: got %d, want 2 (the out-of-step one replaced)", conns)
	}
}
