package lmtp

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/maildirector/maildirector/proxy"
)

// userPicker sends each user to one target; its leases name the user, as
// cmd's do, so the session's line names users and servers.
type userPicker map[string]proxy.Target

func (p userPicker) Pick(_ context.Context, req proxy.PickRequest) (proxy.Lease, error) {
	t, ok := p[req.User]
	if !ok {
		return nil, proxy.ErrUnavailable
	}
	return userLease{t, req.User}, nil
}

type userLease struct {
	t    proxy.Target
	user string
}

func (l userLease) Target() proxy.Target { return l.t }
func (l userLease) User() string         { return l.user }
func (userLease) Established()           {}
func (userLease) Answered()              {}
func (userLease) Failed(error)           {}
func (userLease) Release()               {}

// infoRecorder keeps the Info of every ended session.
type infoRecorder struct {
	mu    sync.Mutex
	infos []proxy.Info
}

func (r *infoRecorder) SessionStarted()         {}
func (r *infoRecorder) Login(proxy.LoginResult) {}
func (r *infoRecorder) Recipient(int)           {}
func (r *infoRecorder) SessionEnded(i proxy.Info, _ string) {
	r.mu.Lock()
	r.infos = append(r.infos, i)
	r.mu.Unlock()
}

// TestTwoBackendsSameServerName: one transaction fans out to two backends
// (routing rules) whose servers are both named s1. Each recipient's mail
// reaches its own server; each server's idle connection is pooled on its
// own (max_server_conns 1 per server, not per name), so the next
// transaction reuses both; the session names both servers with their
// backends.
func TestTwoBackendsSameServerName(t *testing.T) {
	a, b := startFakeServer(t, "s1", false), startFakeServer(t, "s1", false)
	p := userPicker{
		"ann@a.example": {Backend: "mail-a", Server: "s1", Address: a.addr},
		"bob@b.example": {Backend: "mail-b", Server: "s1", Address: b.addr},
	}
	l := New(Options{Picker: p, MaxServerConns: 1})
	rec := &infoRecorder{}
	srv := proxy.New(proxy.Options{})
	if err := srv.Configure([]proxy.Frontend{{Name: "lmtp", Protocol: "lmtp", Addrs: []string{"127.0.0.1:0"}, Handler: l, Stats: rec}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		l.Close()
	})
	c := dialLMTP(t, srv.ListenerAddr("lmtp").String())
	for i := range 2 {
		_, replies := c.transaction([]string{"ann@a.example", "bob@b.example"}, "Subject: x\r\n\r\nhello\r\n")
		if len(replies) != 2 || replies[0].code != 250 || replies[1].code != 250 {
			t.Fatalf("transaction %d: got %v, want two 250", i, replies)
		}
	}
	for _, s := range []struct {
		f    *fakeServer
		rcpt string
	}{{a, "ann@a.example"}, {b, "bob@b.example"}} {
		msgs := s.f.messages()
		if len(msgs) != 2 || len(msgs[0].rcpts) != 1 || msgs[0].rcpts[0] != s.rcpt {
			t.Errorf("server at %s: got %+v, want two messages for %s", s.f.addr, msgs, s.rcpt)
		}
		if n := s.f.connCount(); n != 1 {
			t.Errorf("server at %s: %d connections, want 1 (pooled and reused)", s.f.addr, n)
		}
	}
	c.cmd("QUIT")
	c.nc.Close()
	for range 500 {
		rec.mu.Lock()
		n := len(rec.infos)
		rec.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.infos) != 1 {
		t.Fatalf("got %d sessions ended, want 1", len(rec.infos))
	}
	if i := rec.infos[0]; i.Backend != "mail-a,mail-b" || i.Server != "mail-a/s1,mail-b/s1" {
		t.Errorf("session: backend %q server %q, want mail-a,mail-b and mail-a/s1,mail-b/s1", i.Backend, i.Server)
	}
}
