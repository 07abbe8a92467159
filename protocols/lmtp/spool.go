package lmtp

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sync/atomic"
)

// budget bounds the octets held by all the spools of a frontend, in
// memory and on disk together (Options.SpoolBudget).
type budget struct {
	max  int64 // 0: no limit
	used atomic.Int64
}

// take reserves n octets; false when that would pass the budget.
func (b *budget) take(n int64) bool {
	if b.max <= 0 {
		b.used.Add(n)
		return true
	}
	for {
		cur := b.used.Load()
		if cur+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(cur, cur+n) {
			return true
		}
	}
}

// full reports whether n more octets would pass the budget.
func (b *budget) full(n int64) bool { return b.max > 0 && b.used.Load()+n > b.max }

func (b *budget) give(n int64) { b.used.Add(-n) }

// normalizeCRLF appends src to dst with every line ending made CRLF: a
// bare LF becomes CRLF, a bare CR becomes CRLF, CRLF stays. cr says that the
// previous chunk ended in a CR that has been written but whose line ending
// is not settled yet; the returned cr says the same of this chunk. bare
// reports whether a bare CR or LF was seen (a pending CR is not counted
// until the next byte or [normalizeEnd] settles it).
//
// This is the SMTP smuggling defence (CVE-2023-51764 and friends): the frontend
// ends DATA only at CRLF.CRLF ([dataReader]), but Dovecot 2.3's LMTP server also ends it at
// LF.LF, so a bare line ending must never reach a server.
func normalizeCRLF(dst, src []byte, cr bool) (out []byte, crOut, bare bool) {
	for len(src) > 0 {
		if cr {
			cr = false
			dst = append(dst, '\n')
			if src[0] == '\n' {
				src = src[1:]
				continue
			}
			bare = true
		}
		i := crlfRun(src)
		dst = append(dst, src[:i]...)
		if i == len(src) {
			return dst, false, bare
		}
		if src[i] == '\n' {
			dst = append(dst, '\r', '\n')
			bare = true
		} else {
			dst = append(dst, '\r')
			cr = true
		}
		src = src[i+1:]
	}
	return dst, cr, bare
}

// crlfRun returns the length of the longest prefix of p whose CRs and LFs
// all pair up as CRLF: the index of the first CR or LF that does not (a CR
// at the very end counts as unpaired), or len(p). It goes a line at a time
// with bytes.IndexByte, as a message is mostly well-formed lines.
func crlfRun(p []byte) int {
	i := 0
	for {
		line := p[i:]
		lf := bytes.IndexByte(line, '\n')
		if lf >= 0 {
			line = line[:lf]
		}
		cr := bytes.IndexByte(line, '\r')
		switch {
		case lf >= 0 && cr >= 0 && cr == lf-1:
			i += lf + 1 // a CRLF line
		case cr >= 0:
			return i + cr // a CR not followed by LF (or at the end)
		case lf >= 0:
			return i + lf // a bare LF
		default:
			return len(p)
		}
	}
}

// normalizeEnd settles a CR left pending at the end of the data.
func normalizeEnd(dst []byte, cr bool) (out []byte, bare bool) {
	if cr {
		return append(dst, '\n'), true
	}
	return dst, false
}

// spool holds one message body: in memory up to limit bytes, then in a
// temporary file in dir. The file is unlinked as soon as it is created, so
// nothing is left on disk even if the process dies; Close releases it.
// Readers from [spool.reader] are independent and may run in parallel.
type spool struct {
	dir    string
	limit  int64
	mem    []byte
	file   *os.File
	name   string // set only while the file could not be unlinked yet
	size   int64
	lastLF bool   // the body ends with a line end (its last octet is LF)
	onDisk func() // called once when the body moves to disk
	budget *budget
	taken  int64 // octets reserved in budget
}

func (s *spool) Write(p []byte) (int, error) {
	if s.budget != nil {
		if !s.budget.take(int64(len(p))) {
			return 0, errSpoolBudget
		}
		s.taken += int64(len(p))
	}
	if len(p) > 0 {
		s.lastLF = p[len(p)-1] == '\n'
	}
	if s.file == nil && s.size+int64(len(p)) <= s.limit {
		s.mem = append(s.mem, p...)
		s.size += int64(len(p))
		return len(p), nil
	}
	if s.file == nil {
		f, err := os.CreateTemp(s.dir, "maildirector-lmtp-*")
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errSpool, err)
		}
		s.file = f
		if err := os.Remove(f.Name()); err != nil {
			s.name = f.Name() // not unlinkable while open (Windows): remove at Close
		}
		if s.onDisk != nil {
			s.onDisk()
		}
		if _, err := f.Write(s.mem); err != nil {
			return 0, fmt.Errorf("%w: %w", errSpool, err)
		}
		s.mem = nil
	}
	n, err := s.file.Write(p)
	s.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("%w: %w", errSpool, err)
	}
	return n, nil
}

// reader returns a new reader of the whole body.
func (s *spool) reader() io.Reader {
	if s.file != nil {
		return io.NewSectionReader(s.file, 0, s.size)
	}
	return bytes.NewReader(s.mem)
}

// Close drops the body; the temporary file, if any, is gone afterwards.
func (s *spool) Close() error {
	s.mem = nil
	if s.budget != nil {
		s.budget.give(s.taken)
		s.taken = 0
	}
	if s.file == nil {
		return nil
	}
	err := s.file.Close()
	if s.name != "" {
		os.Remove(s.name)
	}
	s.file, s.name = nil, ""
	return err
}

// spoolBody copies the message data r into sp with line endings made
// CRLF. With reject set it stops at the first bare CR or LF and returns
// [ErrBareNewline]; the caller drains the rest of r. Errors from r (the
// client's, or its limits) come back as they are.
func spoolBody(sp *spool, r io.Reader, reject bool) error {
	return copyBody(&bodyWriter{sp: sp, reject: reject}, r)
}
