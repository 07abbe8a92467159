package main

import (
	"errors"
	"io"
	"log"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// The fake LMTP server: go-smtp's server in LMTP mode that accepts every
// recipient and reads each message into io.Discard. Against it, the LMTP
// rows show what a path costs by itself; its own cost is the same on every
// path and sits in this process.

const (
	// sinkMaxRecipients is RFC 5321 section 4.5.3.1.8's minimum of 100, and more.
	sinkMaxRecipients = 1000
	// sinkMaxMessage caps one message, far above what the bench sends.
	sinkMaxMessage = 64 << 20
)

// lmtpSink is the running fake server.
type lmtpSink struct {
	srv  *smtp.Server
	ln   net.Listener
	done chan struct{} // closed when serve returns

	messages   atomic.Int64
	recipients atomic.Int64
}

// startLMTPSink listens on addr (host:port, port 0 for any) and serves until Close.
func startLMTPSink(addr string) (*lmtpSink, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &lmtpSink{ln: ln, done: make(chan struct{})}
	s.srv = smtp.NewServer(smtp.BackendFunc(s.newSession))
	s.srv.LMTP = true
	s.srv.Domain = "sink.bench.test"
	s.srv.MaxRecipients = sinkMaxRecipients
	s.srv.MaxMessageBytes = sinkMaxMessage
	s.srv.ReadTimeout = clientTimeout
	s.srv.WriteTimeout = clientTimeout
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	go s.serve()
	return s, nil
}

// serve accepts until Close.
func (s *lmtpSink) serve() {
	defer close(s.done)
	s.srv.Serve(s.ln)
}

// Addr is where the sink listens.
func (s *lmtpSink) Addr() string { return s.ln.Addr().String() }

// Delivered returns the messages and recipients accepted so far.
func (s *lmtpSink) Delivered() (messages, recipients int64) {
	return s.messages.Load(), s.recipients.Load()
}

// Close stops listening and closes every session.
func (s *lmtpSink) Close() error {
	err := s.srv.Close()
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
	}
	if errors.Is(err, smtp.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *lmtpSink) newSession(*smtp.Conn) (smtp.Session, error) {
	return &sinkSession{sink: s}, nil
}

// sinkSession is one transaction at a time of one connection.
type sinkSession struct {
	sink  *lmtpSink
	rcpts int64
}

func (ss *sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (ss *sinkSession) Rcpt(string, *smtp.RcptOptions) error { ss.rcpts++; return nil }
func (ss *sinkSession) Reset()                               { ss.rcpts = 0 }
func (ss *sinkSession) Logout() error                        { return nil }

// Data reads the message; go-smtp answers every recipient with its result
// (RFC 2033 section 4.2).
func (ss *sinkSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	ss.sink.messages.Add(1)
	ss.sink.recipients.Add(ss.rcpts)
	return nil
}
