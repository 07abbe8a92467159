package lmtp

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// normalizeCRLF appends src to dst with every line ending made CRLF: a
// bare LF becomes CRLF, a bare CR becomes CRLF, CRLF stays. cr says that the
// previous chunk ended in a CR that has been written but whose line ending
// is not settled yet; the returned cr says the same of this chunk. bare
// reports whether a bare CR or LF was seen (a pending CR is not counted
// until the next byte or [normalizeEnd] settles it).
//
// This is the SMTP smuggling defence (CVE-2023-51764 and friends): go-smtp
// ends DATA only at CRLF.CRLF, but Dovecot 2.3's LMTP server also ends it at
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
		i := bytes.IndexAny(src, "\r\n")
		if i < 0 {
			return append(dst, src...), false, bare
		}
		dst = append(dst, src[:i]...)
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
	onDisk func() // called once when the body moves to disk
}

func (s *spool) Write(p []byte) (int, error) {
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
// [ErrBareNewline]; the caller leaves the rest of r to go-smtp, which
// drains it. Read errors wrap errClientRead, except go-smtp's own
// replies (552 too large, line too long), which come back as they are.
func spoolBody(sp *spool, r io.Reader, reject bool) error {
	buf := make([]byte, 32*1024)
	var out []byte
	cr := false
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			var bare bool
			out, cr, bare = normalizeCRLF(out[:0], buf[:n], cr)
			if bare && reject {
				return ErrBareNewline
			}
			if _, err := sp.Write(out); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return readError(rerr)
		}
	}
	out, bare := normalizeEnd(out[:0], cr)
	if bare && reject {
		return ErrBareNewline
	}
	_, err := sp.Write(out)
	return err
}
