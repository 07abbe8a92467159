package director

import "strings"

// NormalizeUser returns the canonical form of a login name, the key of the
// sticky table and of the hash:
//
//  1. leading and trailing white space is removed;
//  2. ASCII letters are lower-cased, like Dovecot's %Lu (str_lcase, which is
//     ASCII-only); other bytes are kept as they are;
//  3. if the name has no '@' and defaultDomain is not empty,
//     "@" + lower-cased defaultDomain is appended.
//
// The empty name stays empty. NormalizeUser is idempotent.
func NormalizeUser(user, defaultDomain string) string {
	u := asciiLower(strings.TrimSpace(user))
	if u == "" || defaultDomain == "" || strings.IndexByte(u, '@') >= 0 {
		return u
	}
	return u + "@" + asciiLower(strings.TrimSpace(defaultDomain))
}

// asciiLower lower-cases ASCII letters of s, allocating only when s has an
// upper-case ASCII letter.
func asciiLower(s string) string {
	i := 0
	for i < len(s) && (s[i] < 'A' || s[i] > 'Z') {
		i++
	}
	if i == len(s) {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if c := b[i]; 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
