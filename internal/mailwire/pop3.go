package mailwire

// POP3 status indicators are matched without regard to case. RFC 1939
// section 3 says servers MUST send "+OK" and "-ERR" in upper case, and
// Dovecot does, so a conforming server never sees the difference; a server
// that sends "+ok" still means success, and reading it as garbage would only
// turn its answer into a server failure. Being liberal in what we accept
// (RFC 1122 section 1.2.2) costs nothing here: the indicator must still be a
// whole word, and no other POP3 line (the SASL continuation "+ " of RFC 5034
// section 4 included) can be mistaken for one.

// POP3OK reports whether line, with or without its line end, is a positive
// status response: "+OK", then a space and text, or nothing.
func POP3OK(line string) bool { return pop3Status(line, "+OK") }

// POP3Err reports whether line, with or without its line end, is a negative
// status response: "-ERR", then a space and text, or nothing. The text may
// start with an extended response code such as "[SYS/TEMP]" (RFC 2449
// section 8, RFC 3206).
func POP3Err(line string) bool { return pop3Status(line, "-ERR") }

// pop3Status reports whether line starts with indicator (upper-case ASCII),
// ASCII letters compared without case, followed by a space or the end.
func pop3Status(line, indicator string) bool {
	line = TrimEOL(line)
	if len(line) < len(indicator) || (len(line) > len(indicator) && line[len(indicator)] != ' ') {
		return false
	}
	for i := 0; i < len(indicator); i++ {
		c := line[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c != indicator[i] {
			return false
		}
	}
	return true
}
