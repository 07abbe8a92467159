package lmtp

import (
	"sync"
	"testing"
	"time"

	"github.com/maildirector/maildirector/proxy"
)

// endRecorder is a proxy.Recorder that keeps the end reason of every
// session: what the session's log line says in end.
type endRecorder struct {
	mu   sync.Mutex
	ends []string
}

func (r *endRecorder) SessionStarted()         {}
func (r *endRecorder) Login(proxy.LoginResult) {}
func (r *endRecorder) Recipient(int)           {}
func (r *endRecorder) SessionEnded(_ proxy.Info, end string) {
	r.mu.Lock()
	r.ends = append(r.ends, end)
	r.mu.Unlock()
}

// waitEnd waits (bounded) for the one session's end reason.
func (r *endRecorder) waitEnd(t *testing.T) string {
	t.Helper()
	for range 500 {
		r.mu.Lock()
		ends := append([]string(nil), r.ends...)
		r.mu.Unlock()
		if len(ends) > 1 {
			t.Fatalf("got %d sessions ended (%q), want 1", len(ends), ends)
		}
		if len(ends) == 1 {
			return ends[0]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the session did not end in 5s")
	return ""
}

// TestSessionEnd: an LMTP session ends "done" only after QUIT; a client
// that goes away without one, between commands or in the middle of a
// message (DATA or BDAT), ends "client closed".
func TestSessionEnd(t *testing.T) {
	tests := []struct {
		name string
		run  func(c *testClient)
		want string
	}{
		{"quit", func(c *testClient) {
			if r := c.cmd("QUIT"); r.code != 221 {
				t.Fatalf("QUIT: got %v, want 221", r)
			}
		}, proxy.EndDone},
		{"closed between commands", func(c *testClient) {
			c.cmd("NOOP")
		}, proxy.EndClientClosed},
		{"closed mid-DATA", func(c *testClient) {
			c.cmd("MAIL FROM:<sender@example.net>")
			if r := c.cmd("RCPT TO:<u@example.org>"); r.code != 250 {
				t.Fatalf("RCPT: got %v, want 250", r)
			}
			if r := c.cmd("DATA"); r.code != 354 {
				t.Fatalf("DATA: got %v, want 354", r)
			}
			c.writeRaw("Subject: cut short\r\n\r\nhalf a mess")
		}, proxy.EndClientClosed},
		{"closed mid-BDAT", func(c *testClient) {
			c.cmd("MAIL FROM:<sender@example.net>")
			if r := c.cmd("RCPT TO:<u@example.org>"); r.code != 250 {
				t.Fatalf("RCPT: got %v, want 250", r)
			}
			c.writeRaw("BDAT 100 LAST\r\nonly part of the chunk")
		}, proxy.EndClientClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s1 := startFakeServer(t, "s1", false)
			rec := &endRecorder{}
			l := New(Options{Picker: pickerFor(map[string][]*fakeServer{"u@example.org": {s1}})})
			srv := proxy.New(proxy.Options{})
			err := srv.Configure([]proxy.Frontend{{
				Name: "lmtp", Protocol: "lmtp", Addrs: []string{"127.0.0.1:0"}, Handler: l, Stats: rec,
			}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				srv.Close()
				l.Close()
			})
			c := dialLMTP(t, srv.ListenerAddr("lmtp").String())
			tt.run(c)
			c.nc.Close()
			if got := rec.waitEnd(t); got != tt.want {
				t.Errorf("end: got %q, want %q", got, tt.want)
			}
			if n := len(s1.messages()); n != 0 {
				t.Errorf("server got %d messages, want none", n)
			}
		})
	}
}
