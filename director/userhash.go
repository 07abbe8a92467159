package director

import (
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// DefaultUsernameHash is Dovecot's default director_username_hash: the
// whole user name, lower-cased.
const DefaultUsernameHash = "%Lu"

// ErrUsernameHash means a director_username_hash that maildirector cannot
// expand as Dovecot would.
var ErrUsernameHash = errors.New("unsupported director_username_hash")

// usernameHash is a parsed director_username_hash: the user's place on
// the ring under BalanceDirector.
//
// Dovecot expands it with var_expand (src/lib/var-expand.c) and the table of
// mail_user_hash (src/lib/mail-user-hash.c): %u (%{user}) is the user name as
// given, %n (%{username}) the part before the first '@' (all of it without
// one), %d (%{domain}) the part after the first '@' (empty without one), %%
// a percent sign; modifiers between '%' and the variable apply in order: L
// lower-cases ASCII letters (t_str_lcase), U upper-cases them, T trims
// trailing white space, R reverses the bytes. Other text is copied. The
// other modifiers and offsets or widths (%1.2u) are refused: no director
// setup is known to use them, and a guess would move users.
type usernameHash []hashPart

// hashPart is literal text, or one variable with its modifiers.
type hashPart struct {
	literal   string
	variable  byte   // 'u', 'n' or 'd'; 0 for literal text
	modifiers string // "L", "U", "T", "R" in order of application
}

// parseUsernameHash parses a director_username_hash; "" means
// DefaultUsernameHash.
func parseUsernameHash(format string) (usernameHash, error) {
	if format == "" {
		format = DefaultUsernameHash
	}
	var out usernameHash
	lit := func(s string) {
		if n := len(out); n > 0 && out[n-1].variable == 0 {
			out[n-1].literal += s
			return
		}
		out = append(out, hashPart{literal: s})
	}
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			lit(format[i : i+1])
			continue
		}
		start := i
		i++
		mods := i
		for i < len(format) && strings.IndexByte("LUTR", format[i]) >= 0 {
			i++
		}
		part := hashPart{modifiers: format[mods:i]}
		if i == len(format) {
			return nil, fmt.Errorf("%w %q: %q at the end names no variable", ErrUsernameHash, format, format[start:])
		}
		switch c := format[i]; {
		case c == '%' && part.modifiers == "":
			lit("%")
			continue
		case c == 'u' || c == 'n' || c == 'd':
			part.variable = c
		case c == '{':
			end := strings.IndexByte(format[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("%w %q: %q has no closing '}'", ErrUsernameHash, format, format[start:])
			}
			switch name := format[i+1 : i+end]; name {
			case "user":
				part.variable = 'u'
			case "username":
				part.variable = 'n'
			case "domain":
				part.variable = 'd'
			default:
				return nil, fmt.Errorf("%w %q: variable %%{%s}: use user, username or domain", ErrUsernameHash, format, name)
			}
			i += end
		default:
			return nil, fmt.Errorf("%w %q: %q: maildirector expands %%u, %%n, %%d (%%{user}, %%{username}, %%{domain}) with the modifiers L, U, T, R", ErrUsernameHash, format, format[start:i+1])
		}
		out = append(out, part)
	}
	return out, nil
}

// expand returns the format expanded for user.
func (f usernameHash) expand(user string) string {
	var b strings.Builder
	for _, p := range f {
		if p.variable == 0 {
			b.WriteString(p.literal)
			continue
		}
		v := user
		switch p.variable {
		case 'n':
			v, _, _ = strings.Cut(user, "@")
		case 'd':
			_, v, _ = strings.Cut(user, "@")
		}
		for _, m := range []byte(p.modifiers) {
			switch m {
			case 'L':
				v = asciiLower(v)
			case 'U':
				v = asciiUpper(v)
			case 'T':
				v = strings.TrimRight(v, " \t\r\n\v\f")
			case 'R':
				r := []byte(v)
				for a, z := 0, len(r)-1; a < z; a, z = a+1, z-1 {
					r[a], r[z] = r[z], r[a]
				}
				v = string(r)
			}
		}
		b.WriteString(v)
	}
	return b.String()
}

// sum is the user's hash: the first four bytes, big-endian, of the MD5 of
// the expansion (mail_user_hash).
func (f usernameHash) sum(user string) uint32 {
	h := md5.Sum([]byte(f.expand(user)))
	return binary.BigEndian.Uint32(h[:4])
}

// asciiUpper upper-cases ASCII letters of s (t_str_ucase).
func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// UserHash is the hash Dovecot's director and doveadm give user under the
// director_username_hash format ("" means DefaultUsernameHash): what
// doveadm director map prints in its hash column. user is taken as given.
func UserHash(format, user string) (uint32, error) {
	f, err := parseUsernameHash(format)
	if err != nil {
		return 0, err
	}
	return f.sum(user), nil
}
