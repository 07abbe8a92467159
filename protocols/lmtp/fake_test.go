package lmtp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/pires/go-proxyproto"

	"github.com/maildirector/maildirector/proxy"
)

// fakeServer is a server of the fleet: go-smtp in LMTP mode on 127.0.0.1:0
// with programmable replies per recipient.
type fakeServer struct {
	name string
	addr string

	mu         sync.Mutex
	rcptReply  map[string]*gosmtp.SMTPError // refused at RCPT
	dataReply  map[string]*gosmtp.SMTPError // refused after the data
	dropInData bool                         // close the connection in the middle of the data
	hold       chan struct{}                // non-nil: wait on it before answering the data
	rcptDelay  time.Duration                // wait this long before answering each RCPT
	msgs       []fakeMsg
	conns      int
	mails      int
	remotes    []string // each connection's remote address (from the PROXY header when wanted)
	transcript bytes.Buffer
	accepted   []net.Conn // every connection, for dropAll
}

// dropAll closes every connection from the server's side, as a server
// that times out idle clients or restarts does.
func (f *fakeServer) dropAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.accepted {
		c.Close()
	}
}

type fakeMsg struct {
	from  string
	rcpts []string
	body  []byte
}

func startFakeServer(t *testing.T, name string, wantProxy bool) *fakeServer {
	t.Helper()
	return startFakeServerDSN(t, name, wantProxy, false)
}

// startFakeServerDSN is startFakeServer, advertising DSN (RFC 3461) if dsn.
func startFakeServerDSN(t *testing.T, name string, wantProxy, dsn bool) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{name: name, addr: ln.Addr().String(),
		rcptReply: map[string]*gosmtp.SMTPError{}, dataReply: map[string]*gosmtp.SMTPError{}}
	var l net.Listener = &fakeListener{Listener: ln, f: f}
	if wantProxy {
		l = &proxyproto.Listener{Listener: l}
	}
	srv := gosmtp.NewServer(f)
	srv.LMTP = true
	srv.Domain = name
	srv.EnableSMTPUTF8 = true
	srv.EnableDSN = dsn
	srv.Debug = fakeTranscript{f}
	srv.ErrorLog = log.New(io.Discard, "", 0)
	go srv.Serve(l)
	// Not srv.Close: go-smtp v0.25.1's Conn.Close sets the BDAT pipe to nil
	// under its lock while the connection's own goroutine reads it without
	// (handleBdat), a data race of the library's. Closing the listener and
	// the sockets ends each connection in its own goroutine instead.
	t.Cleanup(func() {
		ln.Close()
		f.dropAll()
	})
	return f
}

func (f *fakeServer) target() proxy.Target { return proxy.Target{Server: f.name, Address: f.addr} }

func (f *fakeServer) messages() []fakeMsg {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.msgs)
}

func (f *fakeServer) connCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

func (f *fakeServer) mailCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mails
}

// transcriptText is everything the server read and wrote.
func (f *fakeServer) transcriptText() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.transcript.String()
}

// commands counts the lines of the transcript that start with verb.
func (f *fakeServer) commands(verb string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, line := range strings.Split(f.transcript.String(), "\r\n") {
		if strings.HasPrefix(strings.ToUpper(line), verb) {
			n++
		}
	}
	return n
}

type fakeListener struct {
	net.Listener
	f *fakeServer
}

func (l *fakeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.f.mu.Lock()
		l.f.conns++
		l.f.accepted = append(l.f.accepted, c)
		l.f.mu.Unlock()
	}
	return c, err
}

type fakeTranscript struct{ f *fakeServer }

func (w fakeTranscript) Write(p []byte) (int, error) {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	return w.f.transcript.Write(p)
}

func (f *fakeServer) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	f.mu.Lock()
	f.remotes = append(f.remotes, c.Conn().RemoteAddr().String())
	f.mu.Unlock()
	return &fakeSession{f: f, c: c}, nil
}

type fakeSession struct {
	f     *fakeServer
	c     *gosmtp.Conn
	from  string
	rcpts []string
}

func (s *fakeSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *fakeSession) Logout() error { return nil }

func (s *fakeSession) Mail(from string, _ *gosmtp.MailOptions) error {
	s.from = from
	s.f.mu.Lock()
	s.f.mails++
	s.f.mu.Unlock()
	return nil
}

func (s *fakeSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	s.f.mu.Lock()
	delay := s.f.rcptDelay
	s.f.mu.Unlock()
	time.Sleep(delay)
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if r := s.f.rcptReply[to]; r != nil {
		return r
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *fakeSession) Data(io.Reader) error { return errors.New("not LMTP") }

func (s *fakeSession) LMTPData(r io.Reader, status gosmtp.StatusCollector) error {
	s.f.mu.Lock()
	drop, hold := s.f.dropInData, s.f.hold
	s.f.mu.Unlock()
	if drop {
		io.ReadFull(r, make([]byte, 10))
		s.c.Conn().Close()
		return errors.New("dropped")
	}
	body, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if hold != nil {
		<-hold
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.msgs = append(s.f.msgs, fakeMsg{from: s.from, rcpts: slices.Clone(s.rcpts), body: body})
	for _, rc := range s.rcpts {
		if r := s.f.dataReply[rc]; r != nil {
			status.SetStatus(rc, r)
		} else {
			status.SetStatus(rc, &gosmtp.SMTPError{Code: 250, EnhancedCode: gosmtp.EnhancedCode{2, 0, 0}, Message: "<" + rc + "> Saved on " + s.f.name})
		}
	}
	return nil
}

// fakePicker maps users to their servers in order (the first is the
// director's choice); it counts leases.
type fakePicker struct {
	mu          sync.Mutex
	order       map[string][]proxy.Target
	held        map[string]bool // users an operator froze: ErrHeld
	picks       int
	outstanding int
	failed      int
	established int
	answered    int
}

func (p *fakePicker) Pick(_ context.Context, req proxy.PickRequest) (proxy.Lease, error) {
	user, exclude := req.User, req.Exclude
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held[user] {
		return nil, proxy.ErrHeld
	}
	for _, t := range p.order[user] {
		if !slices.Contains(exclude, t.Server) {
			p.picks++
			p.outstanding++
			return &fakeLease{p: p, t: t}, nil
		}
	}
	return nil, proxy.ErrUnavailable
}

func (p *fakePicker) counts() (outstanding, failed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.outstanding, p.failed
}

type fakeLease struct {
	p    *fakePicker
	t    proxy.Target
	done bool
}

func (l *fakeLease) Target() proxy.Target { return l.t }
func (l *fakeLease) User() string         { return "" }

func (l *fakeLease) Established() {
	l.p.mu.Lock()
	l.p.established++
	l.p.mu.Unlock()
}

func (l *fakeLease) Answered() {
	l.p.mu.Lock()
	l.p.answered++
	l.p.mu.Unlock()
}

func (l *fakeLease) Failed(error) {
	l.p.mu.Lock()
	l.p.failed++
	l.p.mu.Unlock()
	l.Release()
}

func (l *fakeLease) Release() {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	if !l.done {
		l.done = true
		l.p.outstanding--
	}
}

// startFrontend runs the engine with the LMTP frontend on 127.0.0.1:0.
func startFrontend(t testing.TB, opts Options) (string, *Frontend, *proxy.Server) {
	t.Helper()
	l := New(opts)
	srv := proxy.New(proxy.Options{})
	err := srv.Configure([]proxy.Frontend{{
		Name: "lmtp", Protocol: "lmtp", Addrs: []string{"127.0.0.1:0"}, Handler: l,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Close()
		l.Close()
	})
	return srv.ListenerAddr("lmtp").String(), l, srv
}

// waitSessionsDone waits (bounded) until the engine has no live session.
func waitSessionsDone(t *testing.T, srv *proxy.Server) {
	t.Helper()
	for range 500 {
		if len(srv.Sessions()) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("sessions still live: %d", len(srv.Sessions()))
}

// testClient is the MTA side, speaking raw LMTP.
type testClient struct {
	t  *testing.T
	nc net.Conn
	tp *textproto.Conn
}

type testReply struct {
	code int
	msg  string
}

func (r testReply) String() string { return fmt.Sprintf("%d %s", r.code, r.msg) }

// dialLMTP connects, reads the greeting and says LHLO.
func dialLMTP(t *testing.T, addr string) *testClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second)) // hang guard only
	t.Cleanup(func() { nc.Close() })
	c := &testClient{t: t, nc: nc, tp: textproto.NewConn(nc)}
	if r := c.read(); r.code != 220 {
		t.Fatalf("greeting: got %v, want 220", r)
	}
	if r := c.cmd("LHLO mta.example.org"); r.code != 250 {
		t.Fatalf("LHLO: got %v, want 250", r)
	}
	return c
}

func (c *testClient) read() testReply {
	c.t.Helper()
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		c.t.Fatalf("read reply: %v", err)
	}
	return testReply{code, msg}
}

func (c *testClient) cmd(line string) testReply {
	c.t.Helper()
	if err := c.tp.PrintfLine("%s", line); err != nil {
		c.t.Fatalf("send %q: %v", line, err)
	}
	return c.read()
}

func (c *testClient) writeRaw(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// transaction runs MAIL, RCPT for each of rcpts, DATA with the raw data
// (dot-stuffed, without the final dot) and returns the RCPT replies and the
// replies after the data (one per accepted RCPT).
func (c *testClient) transaction(rcpts []string, data string) (rcptReplies, dataReplies []testReply) {
	c.t.Helper()
	if r := c.cmd("MAIL FROM:<sender@example.net>"); r.code != 250 {
		c.t.Fatalf("MAIL: got %v, want 250", r)
	}
	accepted := 0
	for _, rc := range rcpts {
		r := c.cmd("RCPT TO:<" + rc + ">")
		rcptReplies = append(rcptReplies, r)
		if r.code == 250 {
			accepted++
		}
	}
	if accepted == 0 {
		return rcptReplies, nil
	}
	if r := c.cmd("DATA"); r.code != 354 {
		c.t.Fatalf("DATA: got %v, want 354", r)
	}
	c.writeRaw(data + ".\r\n")
	for range accepted {
		dataReplies = append(dataReplies, c.read())
	}
	return rcptReplies, dataReplies
}
