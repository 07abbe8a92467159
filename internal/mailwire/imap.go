package mailwire

import "strings"

// IMAPQuote returns s as an IMAP quoted string, or ok false when s must be
// sent as a literal. RFC 9051 section 4.3 (and RFC 3501 section 4.3 before
// it): a quoted string holds 7-bit TEXT-CHARs, no NUL, CR or LF, with "\"
// and DQUOTE escaped by "\". IMAP4rev2 also allows UTF-8 in quoted strings,
// but an IMAP4rev1 server need not, so 8-bit octets always take a literal.
func IMAPQuote(s string) (string, bool) {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0 || c == '\r' || c == '\n' || c >= 0x80:
			return "", false
		case c == '"' || c == '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	b.WriteByte('"')
	return b.String(), true
}
