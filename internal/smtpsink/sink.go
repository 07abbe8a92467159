// Package smtpsink is an SMTP server for tests that accepts every message and
// records its envelope and body. It stands in for the MTA that Dovecot's
// submission service relays to (submission_relay_host), so tests can check
// what a client submitted through maildirector and Dovecot.
//
// It accepts any MAIL FROM and RCPT TO, offers no AUTH and no STARTTLS, and
// keeps every message in memory until Close.
//
// Usage:
//
//	sink, err := smtpsink.Start()
//	if err != nil { ... }
//	defer sink.Close()
//	opts := dovecotlab.Options{SubmissionRelay: sink.Addr()}
//	...
//	for _, m := range sink.Messages() { fmt.Println(m.From, m.To, len(m.Data)) }
package smtpsink

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

const (
	// maxMessageBytes caps one message (RFC 1870 SIZE is advertised with it).
	maxMessageBytes = 32 << 20
	// maxRecipients is generous: RFC 5321 section 4.5.3.1.8 asks servers to
	// accept at least 100 recipients.
	maxRecipients = 1000
	// ioTimeout bounds every read and write so a stuck client cannot keep
	// the sink from closing (RFC 5321 section 4.5.3.2 suggests minutes; tests want less).
	ioTimeout = 30 * time.Second
)

// Message is one accepted message: the envelope as the client gave it
// (addresses without angle brackets) and the raw DATA content after
// dot-unstuffing.
type Message struct {
	From string
	To   []string
	Data []byte
}

// Sink is a running SMTP server. Its methods are safe for concurrent use.
type Sink struct {
	srv  *smtp.Server
	ln   net.Listener
	done chan struct{}

	mu   sync.Mutex
	msgs []Message
}

// Start listens on a free loopback port (127.0.0.1:0) and serves SMTP.
func Start() (*Sink, error) {
	return Listen("127.0.0.1:0")
}

// Listen serves SMTP on addr, for callers that need a fixed port (the demo).
func Listen(addr string) (*Sink, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	s := &Sink{ln: ln, done: make(chan struct{})}
	srv := smtp.NewServer(smtp.BackendFunc(s.newSession))
	srv.Domain = "sink.lab.test"
	srv.MaxMessageBytes = maxMessageBytes
	srv.MaxRecipients = maxRecipients
	srv.ReadTimeout = ioTimeout
	srv.WriteTimeout = ioTimeout
	srv.ErrorLog = log.New(io.Discard, "", 0)
	s.srv = srv
	go s.serve()
	return s, nil
}

// serve runs the accept loop; it exits when Close closes the listener.
func (s *Sink) serve() {
	defer close(s.done)
	_ = s.srv.Serve(s.ln) // returns smtp.ErrServerClosed or a listener error after Close
}

// Addr is the host:port the sink listens on.
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Messages returns a copy of the messages accepted so far, in arrival order.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.msgs))
	for i, m := range s.msgs {
		out[i] = Message{From: m.From, To: append([]string(nil), m.To...), Data: bytes.Clone(m.Data)}
	}
	return out
}

// Close stops the server, drops open connections and waits for the accept loop to end.
func (s *Sink) Close() error {
	err := s.srv.Close()
	// Serve may not have registered the listener with the server yet, in
	// which case srv.Close did not close it.
	_ = s.ln.Close()
	<-s.done
	if errors.Is(err, smtp.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (s *Sink) record(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
}

func (s *Sink) newSession(*smtp.Conn) (smtp.Session, error) {
	return &session{sink: s}, nil
}

// session is one SMTP transaction state (RFC 5321 section 3.3): the envelope
// collected so far.
type session struct {
	sink *Sink
	from string
	to   []string
}

func (s *session) Reset() {
	s.from = ""
	s.to = nil
}

func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	s.to = nil
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("read data: %w", err)
	}
	s.sink.record(Message{From: s.from, To: append([]string(nil), s.to...), Data: data})
	return nil
}
