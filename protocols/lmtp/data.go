package lmtp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// dataReader reads the client's message data after DATA's 354 (RFC 5321
// section 4.1.1.4): it removes the dot-stuffing (section 4.5.2) and ends at
// the line "." after CRLF. The end is recognised only as CRLF.CRLF, never
// after a bare LF (the SMTP smuggling defence of [normalizeCRLF]). Past max
// octets it fails with errDataTooLarge, on a line longer than maxLine
// (line end included) with errDataLineTooLong; [dataReader.drain] then
// reads on to the end of the data, so the session stays in step.
type dataReader struct {
	r       *bufio.Reader
	state   int
	max     int64 // 0: no limit
	n       int64 // octets returned so far
	maxLine int   // 0: no limit
	line    int   // octets of the current line so far
}

// States of the end-of-data recogniser, as go-smtp's data reader has them.
const (
	dataBeginLine = iota // at the beginning of a line (after CRLF); initial state
	dataDot              // read "." at the beginning of a line
	dataDotCR            // read ".\r" at the beginning of a line
	dataCR               // read "\r"
	dataText             // in the middle of a line
	dataEOF              // read the ".\r\n" end line
)

func (d *dataReader) Read(b []byte) (int, error) {
	n := 0
	for n < len(b) {
		if d.state == dataEOF {
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		}
		if d.state == dataText {
			// In the middle of a line, every octet up to the next CR or
			// LF is copied as it is: take them as one run, within the
			// limits, and leave the line end and any limit's failure to
			// the octet-by-octet steps below.
			if k := d.textRun(b[n:]); k > 0 {
				n += k
				continue
			}
		}
		c, err := d.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, fmt.Errorf("%w: %w", errClientRead, err)
		}
		d.line++
		if d.maxLine > 0 && d.line > d.maxLine {
			return n, errDataLineTooLong
		}
		if c == '\n' {
			d.line = 0
		}
		switch d.state {
		case dataBeginLine:
			switch c {
			case '.':
				d.state = dataDot
				continue
			case '\r':
				d.state = dataCR
			default:
				d.state = dataText
			}
		case dataDot:
			if c == '\r' {
				d.state = dataDotCR
				continue
			}
			d.state = dataText
		case dataDotCR:
			if c == '\n' {
				d.state = dataEOF
				continue
			}
			d.state = dataText
		case dataCR:
			if c == '\n' {
				d.state = dataBeginLine
			} else if c != '\r' {
				d.state = dataText
			}
		case dataText:
			if c == '\r' {
				d.state = dataCR
			}
		}
		if d.max > 0 && d.n >= d.max {
			return n, errDataTooLarge
		}
		b[n] = c
		n++
		d.n++
	}
	return n, nil
}

// textRun copies into b the buffered octets before the next CR or LF, as
// many as fit in b and the line and message limits, and returns how many.
func (d *dataReader) textRun(b []byte) int {
	buf, _ := d.r.Peek(min(d.r.Buffered(), len(b)))
	if d.maxLine > 0 {
		buf = buf[:max(0, min(len(buf), d.maxLine-d.line))]
	}
	if d.max > 0 {
		buf = buf[:max(0, min(int64(len(buf)), d.max-d.n))]
	}
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		buf = buf[:i]
	}
	if i := bytes.IndexByte(buf, '\r'); i >= 0 {
		buf = buf[:i]
	}
	k := copy(b, buf)
	d.r.Discard(k)
	d.line += k
	d.n += int64(k)
	return k
}

// drain reads the rest of the data, without limits, to its end line. An
// error is the client's (its connection failed).
func (d *dataReader) drain() error {
	d.max, d.maxLine = 0, 0
	_, err := io.Copy(io.Discard, d)
	return err
}

// writeData sends a spooled body (every line end CRLF) as LMTP DATA
// content: dot-stuffed (RFC 5321 section 4.5.2), a CRLF added if the body
// does not end with one, then the end line ".".
func writeData(w *bufio.Writer, body io.Reader) error {
	sw := &stuffWriter{w: w, lineStart: true}
	// A body in memory (bytes.Reader) comes in one Write, with no copy
	// buffer; one on disk in io.Copy's.
	if _, err := io.Copy(sw, body); err != nil {
		return fmt.Errorf("%w: %w", errSpool, err)
	}
	if !sw.lineStart {
		w.WriteString("\r\n")
	}
	w.WriteString(".\r\n")
	return w.Flush()
}

// writeChunk sends a spooled body as one BDAT LAST chunk (RFC 3030
// section 2): the octets as they are, no dot-stuffing, with the CRLF that
// writeData would add to a body not ending in one, so that both ways
// deliver the same message. An LMTP server answers it as DATA's end, one
// reply per accepted recipient (RFC 2033 section 4.2).
func writeChunk(w *bufio.Writer, sp *spool) error {
	size := sp.size
	tail := size > 0 && !sp.lastLF
	if tail {
		size += 2
	}
	fmt.Fprintf(w, "BDAT %d LAST\r\n", size)
	if _, err := io.Copy(w, sp.reader()); err != nil {
		return fmt.Errorf("%w: %w", errSpool, err)
	}
	if tail {
		w.WriteString("\r\n")
	}
	return w.Flush()
}

// stuffWriter dot-stuffs what it is given into w: a "." is doubled at the
// beginning of a line. The lines between two that begin with "." go to w in
// one Write. Errors are w's, kept by w for its Flush.
type stuffWriter struct {
	w         *bufio.Writer
	lineStart bool // the next octet begins a line
}

func (s *stuffWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if s.lineStart && p[0] == '.' {
			s.w.WriteByte('.')
		}
		i := bytes.Index(p, dotLine)
		if i < 0 {
			s.w.Write(p)
			s.lineStart = p[len(p)-1] == '\n'
			break
		}
		s.w.Write(p[:i+1])
		p = p[i+1:]
		s.lineStart = true
	}
	return n, nil
}

// dotLine is a line end followed by a line that begins with ".".
var dotLine = []byte("\n.")
