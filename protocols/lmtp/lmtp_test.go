package lmtp

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/maildirector/maildirector/proxy"
)

const testBody = "From: sender@example.net\r\nSubject: hi\r\n\r\nhello\r\n..a stuffed dot line\r\n"

// testUnstuffed is testBody as a server stores it.
const testUnstuffed = "From: sender@example.net\r\nSubject: hi\r\n\r\nhello\r\n.a stuffed dot line\r\n"

func pickerFor(routes map[string][]*fakeServer) *fakePicker {
	p := &fakePicker{order: make(map[string][]proxy.Target)}
	for user, servers := range routes {
		for _, f := range servers {
			p.order[user] = append(p.order[user], f.target())
		}
	}
	return p
}

func codes(replies []testReply) []int {
	out := make([]int, len(replies))
	for i, r := range replies {
		out[i] = r.code
	}
	return out
}

func TestRepliesInRCPTOrder(t *testing.T) {
	s1 := startFakeServer(t, "s1", false)
	s2 := startFakeServer(t, "s2", false)
	s3 := startFakeServer(t, "s3", false)
	s2.rcptReply["nobody@example.org"] = &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "<nobody@example.org> User doesn't exist"}
	s3.dataReply["full@example.org"] = &gosmtp.SMTPError{Code: 552, EnhancedCode: gosmtp.EnhancedCode{5, 2, 2}, Message: "<full@example.org> Quota exceeded"}

	servers := []*fakeServer{s1, s2, s3}
	routes := map[string][]*fakeServer{
		"nobody@example.org": {s2},
		"full@example.org":   {s3},
	}
	var rcpts []string
	for i := range 7 {
		u := fmt.Sprintf("u%d@example.org", i)
		routes[u] = []*fakeServer{servers[i%3]}
		rcpts = append(rcpts, u)
	}
	// 10 RCPTs: 7 users, a 550 at RCPT, a 552 after data, a duplicate.
	rcpts = append(rcpts, "nobody@example.org", "full@example.org", "u1@example.org")
	picker := pickerFor(routes)
	addr, l, srv := startFrontend(t, Options{Picker: picker})

	c := dialLMTP(t, addr)
	rcptReplies, dataReplies := c.transaction(rcpts, testBody)
	// At RCPT each recipient gets its server's own answer (as from
	// Dovecot's own LMTP proxy): the unknown user 550 at once.
	wantRcpt := []int{250, 250, 250, 250, 250, 250, 250, 550, 250, 250}
	if got := codes(rcptReplies); fmt.Sprint(got) != fmt.Sprint(wantRcpt) {
		t.Fatalf("RCPT replies: got %v, want %v (%v)", got, wantRcpt, rcptReplies)
	}
	if got := rcptReplies[7].msg; !strings.HasPrefix(got, "5.1.1 ") || strings.Count(got, "<nobody@example.org>") != 1 {
		t.Errorf("relayed 550 at RCPT: got %q, want 5.1.1 naming the recipient once", got)
	}
	// After the data one reply per accepted RCPT, in RCPT order.
	accepted := []string{rcpts[0], rcpts[1], rcpts[2], rcpts[3], rcpts[4], rcpts[5], rcpts[6], rcpts[8], rcpts[9]}
	want := []int{250, 250, 250, 250, 250, 250, 250, 552, 250}
	if got := codes(dataReplies); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("replies after data: got %v, want %v (%v)", got, want, dataReplies)
	}
	owners := []int{0, 1, 2, 0, 1, 2, 0, 2, 1}
	for i, r := range dataReplies {
		if !strings.Contains(r.msg, "<"+accepted[i]+">") {
			t.Errorf("reply %d: got %q, want it to name <%s>", i, r.msg, accepted[i])
		}
		if r.code == 250 {
			owner := servers[owners[i]]
			if !strings.Contains(r.msg, "Saved on "+owner.name) {
				t.Errorf("reply %d: got %q, want the server's own reply from %s", i, r.msg, owner.name)
			}
		}
	}
	if got := dataReplies[7].msg; !strings.HasPrefix(got, "5.2.2 ") {
		t.Errorf("relayed 552: got %q, want 5.2.2", got)
	}
	// Only the recipients their server accepted are established (pinned
	// to it); the refused ones only say the server answered.
	picker.mu.Lock()
	established, answered := picker.established, picker.answered
	picker.mu.Unlock()
	if established != 7 || answered != 2 {
		t.Errorf("leases: got %d established and %d answered, want 7 (the users, the duplicate delivered once) and 2 (550, 552)", established, answered)
	}

	wantRcpts := map[string][]string{
		"s1": {"u0@example.org", "u3@example.org", "u6@example.org"},
		"s2": {"u1@example.org", "u4@example.org"},
		"s3": {"u2@example.org", "u5@example.org", "full@example.org"},
	}
	for _, f := range servers {
		msgs := f.messages()
		if len(msgs) != 1 {
			t.Fatalf("%s: got %d messages, want 1", f.name, len(msgs))
		}
		if got := fmt.Sprint(msgs[0].rcpts); got != fmt.Sprint(wantRcpts[f.name]) {
			t.Errorf("%s: got recipients %v, want %v", f.name, got, wantRcpts[f.name])
		}
		if got := string(msgs[0].body); got != testUnstuffed {
			t.Errorf("%s: got body %q, want %q", f.name, got, testUnstuffed)
		}
		if msgs[0].from != "sender@example.net" {
			t.Errorf("%s: got MAIL FROM %q, want sender@example.net", f.name, msgs[0].from)
		}
	}
	if r := c.cmd("QUIT"); r.code != 221 {
		t.Errorf("QUIT: got %v, want 221", r)
	}
	waitSessionsDone(t, srv)
	if out, _ := picker.counts(); out != 0 {
		t.Errorf("leases outstanding: got %d, want 0", out)
	}
	st := l.Stats()
	if st.Recipients != 10 || st.Delivered != 8 || st.Rejected != 2 || st.Deferred != 0 {
		t.Errorf("stats: got %+v, want 10 recipients, 8 delivered, 2 rejected", st)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestServerFailures(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, f *fakeServer) proxy.Target
		opts  Options
		want  string // RCPT replies, then the replies after the data
	}{
		{
			name: "down",
			setup: func(t *testing.T, f *fakeServer) proxy.Target {
				return proxy.Target{Server: "down", Address: closedAddr(t)}
			},
			want: "[250 451 250 451 250 250]",
		},
		{
			name: "drops mid-DATA",
			setup: func(t *testing.T, f *fakeServer) proxy.Target {
				f.dropInData = true
				return f.target()
			},
			want: "[250 250 250 250 250 451 250 451]",
		},
		{
			name: "times out after DATA",
			setup: func(t *testing.T, f *fakeServer) proxy.Target {
				hold := make(chan struct{})
				t.Cleanup(func() { close(hold) })
				f.hold = hold
				return f.target()
			},
			opts: Options{DataTimeout: 300 * time.Millisecond},
			want: "[250 250 250 250 250 451 250 451]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := startFakeServer(t, "good", false)
			bad := startFakeServer(t, "bad", false)
			badTarget := tt.setup(t, bad)
			picker := &fakePicker{order: map[string][]proxy.Target{
				"a@example.org": {good.target()},
				"b@example.org": {badTarget},
				"c@example.org": {good.target()},
				"d@example.org": {badTarget},
			}}
			opts := tt.opts
			opts.Picker = picker
			addr, l, srv := startFrontend(t, opts)
			c := dialLMTP(t, addr)
			rcptReplies, replies := c.transaction([]string{"a@example.org", "b@example.org", "c@example.org", "d@example.org"}, testBody)
			// A server that cannot be reached fails its recipients at
			// RCPT; one that fails after accepting them, after the data.
			all := append(codes(rcptReplies), codes(replies)...)
			want := tt.want
			if got := fmt.Sprint(all); got != want {
				t.Fatalf("RCPT and data replies: got %v, want %v (%v %v)", got, want, rcptReplies, replies)
			}
			for _, r := range append(rcptReplies, replies...) {
				if r.code == 451 && !strings.HasPrefix(r.msg, "4.4.1 ") {
					t.Errorf("got %q, want 4.4.1", r.msg)
				}
			}
			if n := len(good.messages()); n != 1 {
				t.Errorf("good server: got %d messages, want 1", n)
			}
			c.cmd("QUIT")
			waitSessionsDone(t, srv)
			out, failed := picker.counts()
			if out != 0 || failed != 1 {
				t.Errorf("leases: got %d outstanding and %d failed, want 0 and 1", out, failed)
			}
			if st := l.Stats(); st.ServerFails != 1 || st.Deferred != 2 {
				t.Errorf("stats: got %+v, want 1 server failure and 2 deferred", st)
			}
		})
	}
}

func TestServerDownNext(t *testing.T) {
	good := startFakeServer(t, "good", false)
	down := proxy.Target{Server: "down", Address: closedAddr(t)}
	picker := &fakePicker{order: map[string][]proxy.Target{
		"a@example.org": {down, good.target()},
		"b@example.org": {down}, // no other server
	}}
	addr, _, _ := startFrontend(t, Options{Picker: picker, ServerDown: ServerDownNext})
	c := dialLMTP(t, addr)
	rcptReplies, replies := c.transaction([]string{"a@example.org", "b@example.org"}, testBody)
	if got := codes(rcptReplies); fmt.Sprint(got) != "[250 451]" {
		t.Fatalf("RCPT: got %v, want [250 451] (%v)", got, rcptReplies)
	}
	if got := codes(replies); fmt.Sprint(got) != "[250]" {
		t.Fatalf("after data: got %v, want [250] (%v)", got, replies)
	}
	if msgs := good.messages(); len(msgs) != 1 || fmt.Sprint(msgs[0].rcpts) != "[a@example.org]" {
		t.Errorf("next server: got %v, want one message for a@example.org", msgs)
	}
}

func TestNoServerAtRCPT(t *testing.T) {
	good := startFakeServer(t, "good", false)
	picker := &fakePicker{order: map[string][]proxy.Target{"a@example.org": {good.target()}}}
	addr, _, _ := startFrontend(t, Options{Picker: picker})
	c := dialLMTP(t, addr)
	rcptReplies, dataReplies := c.transaction([]string{"unrouted@example.org", "a@example.org"}, testBody)
	if r := rcptReplies[0]; r.code != 451 || !strings.HasPrefix(r.msg, "4.4.1 ") {
		t.Errorf("RCPT without server: got %v, want 451 4.4.1", r)
	}
	if got := codes(dataReplies); fmt.Sprint(got) != "[250]" {
		t.Errorf("after data: got %v, want [250]", got)
	}
}

// TestHeldRecipient: a recipient an operator froze gets 451 4.2.0 at RCPT
// and nothing is sent for it; the others of the transaction are delivered.
func TestHeldRecipient(t *testing.T) {
	good := startFakeServer(t, "good", false)
	picker := &fakePicker{
		order: map[string][]proxy.Target{"a@example.org": {good.target()}, "frozen@example.org": {good.target()}},
		held:  map[string]bool{"frozen@example.org": true},
	}
	addr, _, _ := startFrontend(t, Options{Picker: picker})
	c := dialLMTP(t, addr)
	rcptReplies, dataReplies := c.transaction([]string{"frozen@example.org", "a@example.org"}, testBody)
	if r := rcptReplies[0]; r.code != 451 || !strings.HasPrefix(r.msg, "4.2.0 ") {
		t.Errorf("RCPT of a frozen user: got %v, want 451 4.2.0", r)
	}
	if got := codes(dataReplies); fmt.Sprint(got) != "[250]" {
		t.Errorf("after data: got %v, want [250] for the other recipient", got)
	}
}

func TestBareLF(t *testing.T) {
	// A smuggling attempt: bare-LF "dot lines" that Dovecot 2.3 would take
	// as the end of the data, then a second transaction.
	data := "Subject: x\r\n\r\nfirst\n.\nMAIL FROM:<evil@example.net>\nRCPT TO:<a@example.org>\nDATA\nsmuggled\r.\r\nend\r\n"
	tests := []struct {
		name     string
		mode     BareLF
		wantCode int
		wantMsgs int
	}{
		{"normalize", BareLFNormalize, 250, 1},
		{"reject", BareLFReject, 554, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeServer(t, "s1", false)
			picker := pickerFor(map[string][]*fakeServer{"a@example.org": {f}})
			addr, _, _ := startFrontend(t, Options{Picker: picker, BareLF: tt.mode})
			c := dialLMTP(t, addr)
			_, replies := c.transaction([]string{"a@example.org"}, data)
			if len(replies) != 1 || replies[0].code != tt.wantCode {
				t.Fatalf("got %v, want %d", replies, tt.wantCode)
			}
			if r := c.cmd("NOOP"); r.code != 250 {
				t.Errorf("NOOP after the message: got %v, want 250", r)
			}
			msgs := f.messages()
			if len(msgs) != tt.wantMsgs {
				t.Fatalf("server got %d messages, want %d", len(msgs), tt.wantMsgs)
			}
			// The server had MAIL and RCPT at RCPT time; only the data is refused.
			if got := f.mailCount(); got != 1 {
				t.Errorf("server got %d MAIL commands, want 1", got)
			}
			if tt.wantMsgs == 0 {
				if !strings.HasPrefix(replies[0].msg, "5.6.0 ") {
					t.Errorf("got %q, want 5.6.0", replies[0].msg)
				}
				return
			}
			body := msgs[0].body
			want := "Subject: x\r\n\r\nfirst\r\n.\r\nMAIL FROM:<evil@example.net>\r\nRCPT TO:<a@example.org>\r\nDATA\r\nsmuggled\r\n.\r\nend\r\n"
			if string(body) != want {
				t.Errorf("body: got %q, want %q", body, want)
			}
		})
	}
}

func TestLimits(t *testing.T) {
	f := startFakeServer(t, "s1", false)
	picker := pickerFor(map[string][]*fakeServer{"a@example.org": {f}, "b@example.org": {f}, "c@example.org": {f}})
	addr, _, _ := startFrontend(t, Options{Picker: picker, MaxRecipients: 2, MaxMessageSize: 100})

	t.Run("MaxRecipients", func(t *testing.T) {
		c := dialLMTP(t, addr)
		rcptReplies, dataReplies := c.transaction([]string{"a@example.org", "b@example.org", "c@example.org"}, "short\r\n")
		if r := rcptReplies[2]; r.code != 452 || !strings.HasPrefix(r.msg, "4.5.3 ") {
			t.Errorf("third RCPT: got %v, want 452 4.5.3", r)
		}
		if got := codes(dataReplies); fmt.Sprint(got) != "[250 250]" {
			t.Errorf("after data: got %v, want [250 250]", got)
		}
	})
	t.Run("SIZE at MAIL", func(t *testing.T) {
		c := dialLMTP(t, addr)
		if r := c.cmd("MAIL FROM:<s@example.net> SIZE=1000"); r.code != 552 || !strings.HasPrefix(r.msg, "5.3.4 ") {
			t.Errorf("got %v, want 552 5.3.4", r)
		}
	})
	t.Run("MaxMessageSize", func(t *testing.T) {
		before := len(f.messages())
		c := dialLMTP(t, addr)
		_, replies := c.transaction([]string{"a@example.org", "b@example.org"}, strings.Repeat("0123456789abcdef\r\n", 20))
		for _, r := range replies {
			if r.code != 552 || !strings.HasPrefix(r.msg, "5.3.4 ") {
				t.Errorf("got %v, want 552 5.3.4", r)
			}
		}
		if n := len(f.messages()) - before; n != 0 {
			t.Errorf("server got %d messages, want 0", n)
		}
		if r := c.cmd("NOOP"); r.code != 250 {
			t.Errorf("NOOP after: got %v, want 250", r)
		}
	})
	t.Run("line too long", func(t *testing.T) {
		addr, _, _ := startFrontend(t, Options{Picker: picker})
		c := dialLMTP(t, addr)
		c.cmd("MAIL FROM:<s@example.net>")
		c.cmd("RCPT TO:<a@example.org>")
		c.cmd("DATA")
		c.writeRaw(strings.Repeat("x", 3000) + "\r\n.\r\n")
		if r := c.read(); r.code != 554 || !strings.HasPrefix(r.msg, "5.6.0 ") {
			t.Errorf("got %v, want 554 5.6.0", r)
		}
		// The rest of the data was read to its end: the session is in step.
		if r := c.cmd("NOOP"); r.code != 250 {
			t.Errorf("then NOOP: got %v, want 250", r)
		}
	})
	t.Run("sequence", func(t *testing.T) {
		c := dialLMTP(t, addr)
		if r := c.cmd("RCPT TO:<a@example.org>"); r.code != 503 || !strings.HasPrefix(r.msg, "5.5.1 ") {
			t.Errorf("RCPT before MAIL: got %v, want 503 5.5.1", r)
		}
		c.cmd("MAIL FROM:<s@example.net>")
		if r := c.cmd("DATA"); r.code != 503 || !strings.HasPrefix(r.msg, "5.5.1 ") {
			t.Errorf("DATA without RCPT: got %v, want 503 5.5.1", r)
		}
	})
}

func TestSpoolToDisk(t *testing.T) {
	f := startFakeServer(t, "s1", false)
	g := startFakeServer(t, "s2", false)
	picker := pickerFor(map[string][]*fakeServer{"a@example.org": {f}, "b@example.org": {g}})
	dir := t.TempDir()
	addr, l, _ := startFrontend(t, Options{Picker: picker, SpoolMemory: 1024, SpoolDir: dir})
	var body strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&body, "line %d of a body that does not fit in memory\r\n", i)
	}
	c := dialLMTP(t, addr)
	_, replies := c.transaction([]string{"a@example.org", "b@example.org"}, body.String())
	if got := codes(replies); fmt.Sprint(got) != "[250 250]" {
		t.Fatalf("got %v, want [250 250]", replies)
	}
	for _, s := range []*fakeServer{f, g} {
		if msgs := s.messages(); len(msgs) != 1 || string(msgs[0].body) != body.String() {
			t.Errorf("%s: body not delivered intact", s.name)
		}
	}
	if n := l.Stats().SpooledToDisk; n != 1 {
		t.Errorf("spooled to disk: got %d, want 1", n)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("spool dir: got %d entries, want none", len(entries))
	}
}

func TestClientDisconnectMidData(t *testing.T) {
	f := startFakeServer(t, "s1", false)
	picker := pickerFor(map[string][]*fakeServer{"a@example.org": {f}})
	addr, _, srv := startFrontend(t, Options{Picker: picker})
	c := dialLMTP(t, addr)
	c.cmd("MAIL FROM:<s@example.net>")
	c.cmd("RCPT TO:<a@example.org>")
	if r := c.cmd("DATA"); r.code != 354 {
		t.Fatalf("DATA: got %v, want 354", r)
	}
	c.writeRaw("Subject: half\r\n\r\nhalf a body\r\n")
	c.nc.Close()
	waitSessionsDone(t, srv)
	if n := len(f.messages()); n != 0 {
		t.Errorf("server got %d messages, want 0", n)
	}
	if n := f.connCount(); n != 1 {
		t.Errorf("server got %d connections, want 1 (the RCPT's)", n)
	}
	if out, _ := picker.counts(); out != 0 {
		t.Errorf("leases outstanding: got %d, want 0", out)
	}
}

func TestConnectionReuse(t *testing.T) {
	f := startFakeServer(t, "s1", false)
	picker := pickerFor(map[string][]*fakeServer{"a@example.org": {f}})
	addr, l, srv := startFrontend(t, Options{Picker: picker})
	for i := range 2 { // two transactions in one session
		c := dialLMTP(t, addr)
		for range 2 {
			if _, replies := c.transaction([]string{"a@example.org"}, testBody); len(replies) != 1 || replies[0].code != 250 {
				t.Fatalf("session %d: got %v, want 250", i, replies)
			}
		}
		c.cmd("QUIT")
		waitSessionsDone(t, srv)
	}
	if n := f.connCount(); n != 1 {
		t.Errorf("server connections: got %d, want 1", n)
	}
	if n := len(f.messages()); n != 4 {
		t.Errorf("messages: got %d, want 4", n)
	}
	if n := f.commands("RSET"); n != 3 {
		t.Errorf("RSET commands: got %d, want 3", n)
	}
	if st := l.Stats(); st.ServerDials != 1 || st.ServerReuses != 3 {
		t.Errorf("stats: got %+v, want 1 dial and 3 reuses", st)
	}

	// A pooled connection the server has dropped is replaced, not a failure.
	l.pool.mu.Lock()
	for _, list := range l.pool.conns {
		for _, sc := range list {
			sc.nc.Close()
		}
	}
	l.pool.mu.Unlock()
	c := dialLMTP(t, addr)
	if _, replies := c.transaction([]string{"a@example.org"}, testBody); len(replies) != 1 || replies[0].code != 250 {
		t.Fatalf("after a stale pooled connection: got %v, want 250", replies)
	}
	if n := f.connCount(); n != 2 {
		t.Errorf("server connections: got %d, want 2", n)
	}

	// A pooled connection the server dropped while it was idle: its RSET,
	// sent ahead of MAIL, gets no 250, so the transaction moves to a fresh
	// connection; the MTA sees a plain 250 and the server no failure.
	f.dropAll()
	c = dialLMTP(t, addr)
	if _, replies := c.transaction([]string{"a@example.org"}, testBody); len(replies) != 1 || replies[0].code != 250 {
		t.Fatalf("after the server dropped a pooled connection: got %v, want 250", replies)
	}
	if n := f.connCount(); n != 3 {
		t.Errorf("server connections: got %d, want 3", n)
	}
	if _, failed := picker.counts(); failed != 0 {
		t.Errorf("failed leases: got %d, want 0 (a stale pooled connection is not the server's failure)", failed)
	}
}

func TestProxyHeader(t *testing.T) {
	f := startFakeServer(t, "s1", true)
	tgt := f.target()
	tgt.Proxy = proxy.ProxyV2
	picker := &fakePicker{order: map[string][]proxy.Target{"a@example.org": {tgt}}}
	addr, _, _ := startFrontend(t, Options{Picker: picker})
	c := dialLMTP(t, addr)
	if _, replies := c.transaction([]string{"a@example.org"}, testBody); len(replies) != 1 || replies[0].code != 250 {
		t.Fatalf("got %v, want 250", replies)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.remotes) != 1 || f.remotes[0] != c.nc.LocalAddr().String() {
		t.Errorf("server saw client %v, want %s from the PROXY header", f.remotes, c.nc.LocalAddr())
	}
}

func TestShutdown(t *testing.T) {
	f := startFakeServer(t, "s1", false)
	picker := pickerFor(map[string][]*fakeServer{"a@example.org": {f}})
	addr, _, srv := startFrontend(t, Options{Picker: picker})
	c := dialLMTP(t, addr)
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	if r := c.read(); r.code != 421 || !strings.HasPrefix(r.msg, "4.3.2 ") {
		t.Errorf("got %v, want 421 4.3.2", r)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// TestShutdownFinishesTransaction: a graceful shutdown that comes in the
// middle of a transaction lets the MTA finish it (the message is delivered
// and answered 250), then says 421 and closes; the MTA has nothing to send
// again.
func TestShutdownFinishesTransaction(t *testing.T) {
	f := startFakeServer(t, "s1", false)
	picker := pickerFor(map[string][]*fakeServer{"a@example.org": {f}})
	addr, _, srv := startFrontend(t, Options{Picker: picker})
	c := dialLMTP(t, addr)
	if r := c.cmd("MAIL FROM:<sender@example.net>"); r.code != 250 {
		t.Fatalf("MAIL: got %v, want 250", r)
	}
	if r := c.cmd("RCPT TO:<a@example.org>"); r.code != 250 {
		t.Fatalf("RCPT: got %v, want 250", r)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	for range 500 { // the listener closes first, then the sessions are drained
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		nc.Close()
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // paced: the drain has reached the session
	if r := c.cmd("DATA"); r.code != 354 {
		t.Fatalf("DATA during a graceful shutdown, inside a transaction: got %v, want 354", r)
	}
	c.writeRaw(testBody + ".\r\n")
	if r := c.read(); r.code != 250 {
		t.Errorf("reply after the data: got %v, want 250", r)
	}
	if r := c.read(); r.code != 421 || !strings.HasPrefix(r.msg, "4.3.2 ") {
		t.Errorf("after the transaction: got %v, want 421 4.3.2", r)
	}
	if err := <-done; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if n := len(f.messages()); n != 1 {
		t.Errorf("messages delivered: got %d, want 1", n)
	}
}

func TestSpoolRemovesFile(t *testing.T) {
	dir := t.TempDir()
	sp := &spool{dir: dir, limit: 4}
	if _, err := sp.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if sp.file == nil {
		t.Fatal("body past the limit: got memory, want a file")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("while spooled: got %d directory entries, want none (unlinked)", len(entries))
	}
	var got bytes.Buffer
	got.ReadFrom(sp.reader())
	if got.String() != "0123456789" {
		t.Errorf("got %q, want 0123456789", got.String())
	}
	sp.Close()
}

func TestPipeliningAndBDAT(t *testing.T) {
	f := startFakeServer(t, "s1", false)
	picker := pickerFor(map[string][]*fakeServer{"a@example.org": {f}, "b@example.org": {f}})
	addr, _, _ := startFrontend(t, Options{Picker: picker})
	c := dialLMTP(t, addr)

	// RFC 2920: the whole envelope in one write.
	c.writeRaw("MAIL FROM:<sender@example.net> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
	for i, want := range []int{250, 250, 250, 354} {
		if r := c.read(); r.code != want {
			t.Fatalf("pipelined reply %d: got %v, want %d", i, r, want)
		}
	}
	c.writeRaw(testBody + ".\r\n")
	for i := range 2 {
		if r := c.read(); r.code != 250 {
			t.Errorf("reply %d after data: got %v, want 250", i, r)
		}
	}

	// RFC 3030 CHUNKING: two chunks, one reply per recipient after LAST.
	c.cmd("MAIL FROM:<sender@example.net>")
	c.cmd("RCPT TO:<a@example.org>")
	c.cmd("RCPT TO:<b@example.org>")
	chunk1, chunk2 := "Subject: bdat\r\n\r\nline one\n", ".line two\r\n"
	c.writeRaw(fmt.Sprintf("BDAT %d\r\n%s", len(chunk1), chunk1))
	if r := c.read(); r.code != 250 {
		t.Fatalf("BDAT: got %v, want 250", r)
	}
	c.writeRaw(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk2), chunk2))
	for i := range 2 {
		if r := c.read(); r.code != 250 {
			t.Errorf("reply %d after BDAT LAST: got %v, want 250", i, r)
		}
	}
	msgs := f.messages()
	if len(msgs) != 2 {
		t.Fatalf("server got %d messages, want 2", len(msgs))
	}
	if want := "Subject: bdat\r\n\r\nline one\r\n.line two\r\n"; string(msgs[1].body) != want {
		t.Errorf("BDAT body: got %q, want %q", msgs[1].body, want)
	}
}
