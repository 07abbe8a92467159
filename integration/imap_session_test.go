package integration

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestIMAPSessionThroughProxy: SELECT, APPEND, FETCH, IDLE and LOGOUT work
// through maildirector (over STARTTLS), and a 10 MB message round-trips
// byte for byte.
func TestIMAPSessionThroughProxy(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: imapFrontends()})
	const user = "user042"

	exists := make(chan uint32, 16)
	c, err := imapclient.NewStartTLS(dial(t, e.addrs["imap"]), &imapclient.Options{
		TLSConfig: clientTLS(),
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					exists <- *d.NumMessages
				}
			},
		},
	})
	if err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	defer c.Close()
	if err := c.Login(user, "pass").Wait(); err != nil {
		t.Fatalf("LOGIN: %v", err)
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatalf("SELECT: %v", err)
	}
	if sel.NumMessages != 0 {
		t.Fatalf("SELECT INBOX: got %d messages, want 0", sel.NumMessages)
	}

	msg := bigMessage(t, 10<<20)
	app := c.Append("INBOX", int64(len(msg)), nil)
	if _, err := app.Write(msg); err != nil {
		t.Fatalf("APPEND write: %v", err)
	}
	if err := app.Close(); err != nil {
		t.Fatalf("APPEND close: %v", err)
	}
	if _, err := app.Wait(); err != nil {
		t.Fatalf("APPEND: %v", err)
	}
	if err := c.Noop().Wait(); err != nil {
		t.Fatalf("NOOP: %v", err)
	}

	section := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{section}}).Collect()
	if err != nil {
		t.Fatalf("FETCH: %v", err)
	}
	if len(msgs) != 1 {
		t.Fatalf("FETCH: got %d messages, want 1", len(msgs))
	}
	if got := msgs[0].FindBodySection(section); !bytes.Equal(got, msg) {
		t.Fatalf("FETCH BODY[]: got %d bytes, want the %d appended bytes back unchanged", len(got), len(msg))
	}

	// IDLE: a message delivered by another session shows up as EXISTS.
	drain(exists)
	idle, err := c.Idle()
	if err != nil {
		t.Fatalf("IDLE: %v", err)
	}
	other := greeted(t, e.addrs["imap"])
	other.login(user)
	small := "From: a@example.org\r\nSubject: idle\r\n\r\nhello\r\n"
	other.send(fmt.Sprintf("A APPEND INBOX {%d+}\r\n%s\r\n", len(small), small))
	if _, tagged := other.until("A"); !strings.HasPrefix(tagged, "A OK") {
		t.Fatalf("APPEND from a second session: %q", tagged)
	}
	other.logout()
	select {
	case n := <-exists:
		if n != 2 {
			t.Errorf("EXISTS during IDLE: got %d, want 2", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no EXISTS during IDLE")
	}
	if err := idle.Close(); err != nil {
		t.Fatalf("DONE: %v", err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatalf("IDLE end: %v", err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatalf("LOGOUT: %v", err)
	}
}

func drain(ch chan uint32) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// bigMessage returns an RFC 5322 message of about size bytes with a
// base64 body of random data (lines of 76 characters).
func bigMessage(t testing.TB, size int) []byte {
	t.Helper()
	raw := make([]byte, size*3/4)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	var b bytes.Buffer
	b.WriteString("From: sender@example.org\r\nTo: user042@example.org\r\nSubject: ten megabytes\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	for len(enc) > 76 {
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}
