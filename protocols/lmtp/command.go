package lmtp

import (
	"strconv"
	"strings"

	"github.com/maildirector/maildirector/internal/mailwire"
)

// command is one client command line (RFC 5321 section 4.1.1).
type command = mailwire.Command

// maxVerb bounds a verb: RFC 5321 verbs have 4 characters, STARTTLS 8.
const maxVerb = 16

// maxPath bounds a reverse or forward path, brackets included: RFC 5321
// section 4.5.3.1.3 allows 256 octets.
const maxPath = 256

// parseCommand parses one command line; anything but a verb of ASCII
// letters with clean arguments is mailwire.ErrMalformedCommand, which the
// session answers as an unknown command.
func parseCommand(line string) (command, error) {
	return mailwire.ParseCommand(line, maxVerb)
}

// mailParams are the MAIL parameters the frontend knows (RFC 5321 section
// 4.1.1.2 and the extensions it advertises).
type mailParams struct {
	size  int64  // RFC 1870 SIZE=, 0 when not given
	body  string // RFC 6152 BODY=7BIT or 8BITMIME, "" when not given
	utf8  bool   // RFC 6531 SMTPUTF8
	ret   string // RFC 3461 section 4.3 RET=FULL or HDRS
	envid string // RFC 3461 section 4.4 ENVID=xtext
}

// rcptParams are the RCPT parameters the frontend knows.
type rcptParams struct {
	notify string // RFC 3461 section 4.1 NOTIFY=
	orcpt  string // RFC 3461 section 4.2 ORCPT=addr-type;xtext
}

// parsePath parses "FROM:<path> params" (MAIL) or "TO:<path> params"
// (RCPT) after the verb, as RFC 5321 section 4.1.2 writes them; a space
// after the colon is tolerated, as most servers do. It returns the path
// without brackets ("" for the null reverse path "<>") and the parameters.
func parsePath(args, prefix string) (path string, params []string, ok bool) {
	if len(args) < len(prefix) || !strings.EqualFold(args[:len(prefix)], prefix) {
		return "", nil, false
	}
	rest := strings.TrimPrefix(args[len(prefix):], " ")
	if !strings.HasPrefix(rest, "<") {
		return "", nil, false
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 || end+1 > maxPath {
		return "", nil, false
	}
	path, rest = rest[1:end], rest[end+1:]
	for i := 0; i < len(path); i++ {
		if c := path[i]; c <= ' ' || c == '<' || c == 0x7f {
			return "", nil, false
		}
	}
	if rest != "" {
		if rest[0] != ' ' {
			return "", nil, false
		}
		params = strings.Fields(rest)
	}
	return path, params, true
}

// parseMail parses MAIL's arguments; err is the reply to refuse them with.
func parseMail(args string) (from string, p mailParams, err error) {
	from, params, ok := parsePath(args, "FROM:")
	if !ok {
		return "", p, errSyntax
	}
	for _, param := range params {
		key, value, hasValue := strings.Cut(param, "=")
		switch strings.ToUpper(key) {
		case "SIZE":
			n, perr := strconv.ParseInt(value, 10, 64)
			if !hasValue || perr != nil || n < 0 {
				return "", p, errSyntax
			}
			p.size = n
		case "BODY":
			switch v := strings.ToUpper(value); v {
			case "7BIT", "8BITMIME":
				p.body = v
			default:
				return "", p, errParam
			}
		case "SMTPUTF8":
			if hasValue {
				return "", p, errSyntax
			}
			p.utf8 = true
		case "RET":
			switch v := strings.ToUpper(value); v {
			case "FULL", "HDRS":
				p.ret = v
			default:
				return "", p, errSyntax
			}
		case "ENVID":
			if !xtext(value) || len(value) > 100 {
				return "", p, errSyntax
			}
			p.envid = value
		default:
			return "", p, errParam
		}
	}
	return from, p, nil
}

// parseRcpt parses RCPT's arguments; err is the reply to refuse them with.
func parseRcpt(args string) (to string, p rcptParams, err error) {
	to, params, ok := parsePath(args, "TO:")
	if !ok || to == "" {
		return "", p, errSyntax
	}
	for _, param := range params {
		key, value, _ := strings.Cut(param, "=")
		switch strings.ToUpper(key) {
		case "NOTIFY":
			if !validNotify(value) {
				return "", p, errSyntax
			}
			p.notify = strings.ToUpper(value)
		case "ORCPT":
			typ, addr, ok := strings.Cut(value, ";")
			if !ok || typ == "" || !xtext(addr) || len(value) > 500 {
				return "", p, errSyntax
			}
			p.orcpt = value
		default:
			return "", p, errParam
		}
	}
	return to, p, nil
}

// validNotify: RFC 3461 section 4.1, NEVER alone or a list of SUCCESS,
// FAILURE and DELAY.
func validNotify(v string) bool {
	if strings.EqualFold(v, "NEVER") {
		return true
	}
	if v == "" {
		return false
	}
	for _, k := range strings.Split(v, ",") {
		switch strings.ToUpper(k) {
		case "SUCCESS", "FAILURE", "DELAY":
		default:
			return false
		}
	}
	return true
}

// xtext: RFC 3461 section 4, printable ASCII without "=" or space
// ("+" starts a hex escape, which is passed on as it is).
func xtext(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c > '~' || c == '=' {
			return false
		}
	}
	return true
}
