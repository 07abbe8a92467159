package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// protocolErrorHandler reads one line, waits until the test has written
// more than that into the socket, then ends the session on a protocol
// error with a last reply: the client's input is left unread.
func protocolErrorHandler(written <-chan struct{}) Handler {
	return HandlerFunc(func(ctx context.Context, c *Conn) error {
		if _, err := c.Reader().ReadString('\n'); err != nil {
			return err
		}
		<-written
		c.WriteString("* BYE Too many invalid commands\r\n")
		return errors.New("protocol error")
	})
}

// sendJunk writes a line and more than the handler's buffered reader takes
// in one read.
func sendJunk(t *testing.T, c io.Writer) {
	t.Helper()
	if _, err := io.WriteString(c, "junk\r\n"+strings.Repeat("x", 32<<10)+"\r\n"); err != nil {
		t.Fatal(err)
	}
}

// readBye reads the last reply and then expects the end of the stream.
func readBye(t *testing.T, c io.Reader) {
	t.Helper()
	r := bufio.NewReader(c)
	l, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("last reply: got %q, %v; want * BYE", l, err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("after the last reply: got %v, want EOF (a FIN, not a reset)", err)
	}
}

// TestLingerClose: a session the proxy ends on a protocol error while the
// client is still sending gets its last reply and then a clean close (EOF),
// not a reset. Closing with unread input makes the kernel send RST, and a
// client may then lose the reply (an IMAP BYE) or see ECONNRESET after it.
func TestLingerClose(t *testing.T) {
	written := make(chan struct{})
	_, addr := startServer(t, Frontend{Handler: protocolErrorHandler(written)})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	sendJunk(t, c)
	close(written)
	readBye(t, c)
}

// readRecorder keeps every byte a client reads from the network.
type readRecorder struct {
	net.Conn
	mu  sync.Mutex
	got []byte
}

func (r *readRecorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.mu.Lock()
	r.got = append(r.got, p[:n]...)
	r.mu.Unlock()
	return n, err
}

// TestLingerCloseTLS: over TLS the lingering close sends close_notify
// before the FIN (RFC 8446 section 6.1): the last TLS record the client
// receives is an alert. TLS 1.2, whose record headers show the content
// type.
func TestLingerCloseTLS(t *testing.T) {
	written := make(chan struct{})
	_, addr := startServer(t, Frontend{Handler: protocolErrorHandler(written), TLS: testServerTLS(t), ImplicitTLS: true})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	rec := &readRecorder{Conn: nc}
	c := tls.Client(rec, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	sendJunk(t, c)
	close(written)
	readBye(t, c)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	var last byte
	for b := rec.got; len(b) >= 5; {
		n := 5 + (int(b[3])<<8 | int(b[4]))
		if n > len(b) {
			t.Fatalf("a cut TLS record in what the client read")
		}
		last, b = b[0], b[n:]
	}
	if last != 21 { // alert
		t.Fatalf("the last TLS record has content type %d, want 21 (close_notify before the FIN)", last)
	}
}

// TestLingerFreesSlots: a lingering socket holds no slot. With one slot
// and a client that keeps writing to its refusal without closing, another
// client is still served: the linger (raised to a minute here) would
// otherwise keep it waiting.
func TestLingerFreesSlots(t *testing.T) {
	old := lingerTimeout
	lingerTimeout = time.Minute
	t.Cleanup(func() { lingerTimeout = old })
	written := make(chan struct{})
	var first sync.Once
	fe := Frontend{MaxConn: 1, Handler: HandlerFunc(func(ctx context.Context, c *Conn) error {
		isFirst := false
		first.Do(func() { isFirst = true })
		if isFirst {
			return protocolErrorHandler(written).ServeConn(ctx, c)
		}
		c.WriteString("* OK second\r\n")
		return nil
	})}
	_, addr := startServer(t, fe)
	c1, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c1.SetDeadline(time.Now().Add(10 * time.Second))
	sendJunk(t, c1)
	close(written)
	r1 := bufio.NewReader(c1)
	if l, err := r1.ReadString('\n'); err != nil || !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("first client: got %q, %v; want * BYE", l, err)
	}
	// c1 neither reads on nor closes: the proxy lingers on its socket.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(10 * time.Second)) // a hang guard: the broken case waits a minute
	if l, err := bufio.NewReader(c2).ReadString('\n'); err != nil || l != "* OK second\r\n" {
		t.Fatalf("second client while the first lingers: got %q, %v; want * OK second", l, err)
	}
}
