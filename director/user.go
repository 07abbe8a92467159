package director

import "strings"

// userNames turns the name a client logged in with, or the address an MTA
// delivers to, into the user name Dovecot will look up: the key of the
// sticky table and of the hash. Routing on any other name would put one
// mailbox on two servers. New builds it from Options; it never changes.
type userNames struct {
	domain     string // Options.DefaultDomain as configured (trimmed); empty for none
	delimiters string // lower-cased Options.RecipientDelimiter; empty for none
	masterSep  string // lower-cased Options.MasterSeparator: "" or one byte
	stripLogin bool   // Options.StripLoginDetail
}

// normalize returns the canonical form of user; recipient says whether it
// is an LMTP recipient address (Request.Recipient) or a login name:
//
//  1. surrounding white space is removed and ASCII letters are lower-cased,
//     like Dovecot's %Lu (str_lcase, which is ASCII-only); other bytes are
//     kept as they are;
//  2. a login name is cut at the first master separator, as Dovecot's auth
//     does (auth_request_set_username: "alice*admin" logs in as alice), unless
//     nothing precedes it (Dovecot rejects that login; the name routes as given);
//  3. the detail is stripped from a recipient, and from a login name with
//     StripLoginDetail: the local part (before the last '@') ends before its
//     first byte that is one of the delimiters, as in Dovecot's
//     smtp_address_detail_parse, which uses strcspn. A delimiter at the start
//     leaves an empty local part ("+x@example.org" → "@example.org"), exactly
//     as Dovecot does;
//  4. if the name has no '@' and a default domain is set, "@" + domain is
//     appended.
//
// The empty name stays empty. normalize is idempotent, and its result has no
// delimiter in the local part when the detail was stripped.
func (n userNames) normalize(user string, recipient bool) string {
	return asciiLower(n.asGiven(user, recipient))
}

// asGiven is normalize without the lower-casing: the same steps, with the
// separators and delimiters matched regardless of case, on the name as the
// client wrote it. It is the name Dovecot's director hashes under a
// director_username_hash without L (BalanceDirector); normalize(u) is
// always asciiLower(asGiven(u)).
func (n userNames) asGiven(user string, recipient bool) string {
	u := strings.TrimSpace(user)
	if !recipient && n.masterSep != "" {
		if i := strings.Index(asciiLower(u), n.masterSep); i > 0 {
			u = strings.TrimSpace(u[:i])
		}
	}
	if n.delimiters != "" && (recipient || n.stripLogin) {
		u = stripDetail(u, n.delimiters)
	}
	if u == "" || n.domain == "" || strings.IndexByte(u, '@') >= 0 {
		return u
	}
	return u + "@" + n.domain
}

// stripDetail removes the detail from addr: from the first byte of the
// local part (before the last '@') that is in delimiters up to the '@', or
// to the end when addr has no '@'. Each byte of delimiters is a delimiter,
// as Dovecot's recipient_delimiter ("+-" means '+' or '-'); delimiters is
// lower-case and matches either case.
func stripDetail(addr, delimiters string) string {
	local, domain := addr, ""
	if at := strings.LastIndexByte(addr, '@'); at >= 0 {
		local, domain = addr[:at], addr[at:]
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if strings.IndexByte(delimiters, c) >= 0 {
			return strings.TrimSpace(local[:i]) + domain
		}
	}
	return addr
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
