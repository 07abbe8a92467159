package config

import (
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownKey is wrapped by the KeyError of a key the schema does not
// know (often a typo).
var ErrUnknownKey = errors.New("unknown key")

// KeyError is one problem with one key of the file. Validate and Parse
// return several of them joined with errors.Join.
type KeyError struct {
	// Key is the key path: tables joined with dots, array entries indexed
	// from 0, e.g. "backend.dovecot.server[2].address".
	Key string
	// Err says what is wrong and, where obvious, what to write instead.
	Err error
}

func (e *KeyError) Error() string { return e.Key + ": " + e.Err.Error() }

func (e *KeyError) Unwrap() error { return e.Err }

// SyntaxError is a file that is not valid TOML or whose value has the wrong
// type (e.g. a string where a number belongs, or a bad duration). It stops
// decoding, so it is reported alone.
type SyntaxError struct {
	// Key is the last key read before the error (dotted, without array
	// indexes); may be empty.
	Key string
	// Line and Column locate the error, counted from 1; Column may be 0
	// when unknown.
	Line, Column int
	// Msg describes the error.
	Msg string
	// err is the decoder's error, for errors.As.
	err error
}

func (e *SyntaxError) Error() string {
	pos := fmt.Sprintf("line %d", e.Line)
	if e.Column > 0 {
		pos += fmt.Sprintf(", column %d", e.Column)
	}
	if e.Key != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Key, e.Msg, pos)
	}
	return pos + ": " + e.Msg
}

func (e *SyntaxError) Unwrap() error { return e.err }

// problems collects KeyErrors in the order they are found.
type problems struct{ errs []error }

func (p *problems) add(key string, err error) {
	p.errs = append(p.errs, &KeyError{Key: key, Err: err})
}

func (p *problems) addf(key, format string, args ...any) {
	p.add(key, errorf(format, args...))
}

func (p *problems) join() error { return errors.Join(p.errs...) }

// errorf is fmt.Errorf; the name says "a new message", not "a wrap".
func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// Problems returns the individual errors of an error returned by Parse,
// Load or Validate (one per problem), or err itself if it is not a joined
// error.
func Problems(err error) []error {
	if err == nil {
		return nil
	}
	var j interface{ Unwrap() []error }
	if errors.As(err, &j) {
		return j.Unwrap()
	}
	return []error{err}
}

// keyPart quotes a TOML key part when it is not a bare key.
func keyPart(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Sprintf("%q", s)
		}
	}
	return s
}

// path joins key parts; parts beginning with "[" are array indexes.
func path(parts ...string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 && !strings.HasPrefix(p, "[") {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}
