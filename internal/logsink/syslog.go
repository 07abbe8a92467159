package logsink

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// SyslogOptions configure [DialSyslog].
type SyslogOptions struct {
	// Facility is the RFC 5424 facility code, 0..23 (section 6.2.1, table
	// 1: 3 daemon, 16..23 local0..local7). Zero is kern: set it.
	Facility int
	// Tag is the APP-NAME (section 6.2.5): printable US-ASCII, at most 48
	// characters. Empty is the nil value "-".
	Tag string
}

// maxDatagram bounds one message: the largest UDP payload over IPv4
// (65,535 less the IP and UDP headers). A longer line is cut. RFC 5426
// section 3.2 asks receivers to take at least 2,048 octets only: a line
// longer than the path's MTU is sent fragmented, and one longer than what
// the receiver takes is truncated there.
const maxDatagram = 65507

// Syslog sends each log record as one RFC 5424 message, one datagram
// each, to a local unixgram socket (/dev/log) or a UDP host:port (RFC
// 5426). Records reach it through [Syslog.Handler]. Safe for concurrent
// use.
type Syslog struct {
	network, addr string
	header        string // " HOSTNAME APP-NAME PROCID MSGID SD " after the timestamp
	facility      int

	mu       sync.Mutex // one record at a time: its severity is handed to writeLocked under it
	conn     net.Conn   // nil after a failed redial; the next record dials again
	severity int
	buf      []byte
}

// DialSyslog connects to target: "unix:PATH" (a datagram socket, as
// /dev/log is) or "udp:HOST:PORT".
func DialSyslog(target string, opts SyslogOptions) (*Syslog, error) {
	network, addr, ok := strings.Cut(target, ":")
	switch {
	case !ok || addr == "":
		return nil, fmt.Errorf("syslog %q: want unix:PATH or udp:HOST:PORT", target)
	case network == "unix":
		network = "unixgram"
	case network == "udp":
	default:
		return nil, fmt.Errorf("syslog %q: unknown transport %q, want unix or udp", target, network)
	}
	if opts.Facility < 0 || opts.Facility > 23 {
		return nil, fmt.Errorf("syslog facility %d: want 0..23", opts.Facility)
	}
	host, _ := os.Hostname()
	s := &Syslog{
		network: network, addr: addr, facility: opts.Facility,
		// RFC 5424 section 6: HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA,
		// each printable US-ASCII without spaces, "-" when empty.
		header: " " + field(host, 255) + " " + field(opts.Tag, 48) + " " + strconv.Itoa(os.Getpid()) + " - - ",
	}
	conn, err := s.dial()
	if err != nil {
		return nil, err
	}
	s.conn = conn
	return s, nil
}

func (s *Syslog) dial() (net.Conn, error) {
	conn, err := net.DialTimeout(s.network, s.addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("syslog: %w", err)
	}
	return conn, nil
}

// field is s as an RFC 5424 header field: printable US-ASCII (33..126),
// at most max characters, "-" (the nil value) when empty.
func field(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 33 || r > 126 {
			return '_'
		}
		return r
	}, s)
	if len(s) > max {
		s = s[:max]
	}
	if s == "" {
		return "-"
	}
	return s
}

// Severities (RFC 5424 section 6.2.1, table 2).
const (
	severityError   = 3
	severityWarning = 4
	severityInfo    = 6
	severityDebug   = 7
)

// severity maps a slog level to a syslog severity.
func severity(l slog.Level) int {
	switch {
	case l < slog.LevelInfo:
		return severityDebug
	case l < slog.LevelWarn:
		return severityInfo
	case l < slog.LevelError:
		return severityWarning
	}
	return severityError
}

// byteOrderMark starts a MSG encoded in UTF-8 (RFC 5424 section 6.4).
const byteOrderMark = "\ufeff"

// writeLocked sends p, one rendered log line, as one message:
//
//	<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA MSG
//
// (RFC 5424 section 6), PRI being facility × 8 + severity (section
// 6.2.1), TIMESTAMP RFC 3339 with microseconds (section 6.2.3), MSGID and
// STRUCTURED-DATA the nil value "-", and MSG the line without its final
// newline. A line of US-ASCII goes as it is (MSG-ANY); one with other
// UTF-8 starts with the BOM that section 6.4 requires. A failed send is
// tried once more on a new connection (the syslog daemon restarted).
// s.mu is held.
func (s *Syslog) writeLocked(p []byte) (int, error) {
	n := len(p)
	msg := p
	if len(msg) > 0 && msg[len(msg)-1] == '\n' {
		msg = msg[:len(msg)-1]
	}
	s.buf = s.buf[:0]
	s.buf = append(s.buf, '<')
	s.buf = strconv.AppendInt(s.buf, int64(s.facility*8+s.severity), 10)
	s.buf = append(s.buf, ">1 "...)
	s.buf = time.Now().UTC().AppendFormat(s.buf, "2006-01-02T15:04:05.000000Z07:00")
	s.buf = append(s.buf, s.header...)
	if !ascii(msg) {
		s.buf = append(s.buf, byteOrderMark...)
	}
	s.buf = append(s.buf, msg...)
	if len(s.buf) > maxDatagram {
		cut := maxDatagram
		for cut > 0 && !utf8.RuneStart(s.buf[cut]) { // never cut a character in two
			cut--
		}
		s.buf = s.buf[:cut]
	}
	if err := s.send(s.buf); err != nil {
		return 0, err
	}
	return n, nil
}

func ascii(p []byte) bool {
	for _, c := range p {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// send writes one datagram, redialling once if the connection failed.
func (s *Syslog) send(b []byte) error {
	if s.conn != nil {
		if _, err := s.conn.Write(b); err == nil {
			return nil
		}
		s.conn.Close()
		s.conn = nil
	}
	conn, err := s.dial()
	if err != nil {
		return err
	}
	s.conn = conn
	_, err = conn.Write(b)
	return err
}

// Reopen connects anew (the syslog daemon was restarted, /dev/log made
// again). On error the next write tries again.
func (s *Syslog) Reopen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
	conn, err := s.dial()
	if err != nil {
		return err
	}
	s.conn = conn
	return nil
}

// Close closes the connection.
func (s *Syslog) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// Handler returns the handler that sends records to s: newHandler renders
// them (slog.NewTextHandler or slog.NewJSONHandler over the writer it is
// given, which write each record with one Write), and each goes out with
// its level's severity: Debug 7, Info 6, Warn 4, Error 3. Records are
// rendered one at a time.
func (s *Syslog) Handler(newHandler func(io.Writer) slog.Handler) slog.Handler {
	return &syslogHandler{s: s, h: newHandler(heldWriter{s})}
}

// heldWriter is the writer of the handler inside syslogHandler, which
// holds s.mu while it writes.
type heldWriter struct{ s *Syslog }

func (w heldWriter) Write(p []byte) (int, error) { return w.s.writeLocked(p) }

type syslogHandler struct {
	s *Syslog
	h slog.Handler
}

func (sh *syslogHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return sh.h.Enabled(ctx, l)
}

func (sh *syslogHandler) Handle(ctx context.Context, r slog.Record) error {
	s := sh.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.severity = severity(r.Level)
	return sh.h.Handle(ctx, r)
}

func (sh *syslogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &syslogHandler{s: sh.s, h: sh.h.WithAttrs(as)}
}

func (sh *syslogHandler) WithGroup(name string) slog.Handler {
	return &syslogHandler{s: sh.s, h: sh.h.WithGroup(name)}
}
