package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestLingerClose: a session the proxy ends on a protocol error while the
// client is still sending gets its last reply and then a clean close (EOF),
// not a reset. Closing with unread input makes the kernel send RST, and a
// client may then lose the reply (an IMAP BYE) or see ECONNRESET after it.
func TestLingerClose(t *testing.T) {
	written := make(chan struct{})
	fe := Frontend{Handler: HandlerFunc(func(ctx context.Context, c *Conn) error {
		if _, err := c.Reader().ReadString('\n'); err != nil {
			return err
		}
		<-written // the rest of the client's input is in the socket, unread
		c.WriteString("* BYE Too many invalid commands\r\n")
		return errors.New("protocol error")
	})}
	_, addr := startServer(t, fe)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// More than the handler's buffered reader takes in one read.
	if _, err := io.WriteString(c, "junk\r\n"+strings.Repeat("x", 32<<10)+"\r\n"); err != nil {
		t.Fatal(err)
	}
	close(written)

	r := bufio.NewReader(c)
	l, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(l, "* BYE") {
		t.Fatalf("last reply: got %q, %v; want * BYE", l, err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		t.Fatalf("after the last reply: got %v, want EOF (a FIN, not a reset)", err)
	}
}
