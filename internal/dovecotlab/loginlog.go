package dovecotlab

import (
	"strconv"
	"strings"
)

// Login is one successful login as Dovecot's login process logs it with
// the default login_log_format_elements:
//
//	Nov 21 06:28:43 imap-login: Info: Login: user=<user000>, method=PLAIN, rip=203.0.113.7, lip=198.51.100.1, mpid=7517, secured, session=<bm7geMNgQJzLAHEH>
type Login struct {
	// Service is the login process: imap-login, pop3-login or submission-login.
	Service string
	// User is the logged-in user as Dovecot knows it (after auth_username_format).
	User string
	// Method is the SASL mechanism: PLAIN or LOGIN (IMAP LOGIN and POP3 USER/PASS log PLAIN).
	Method string
	// RemoteIP and LocalIP are rip and lip: the PROXY header's source and
	// destination on haproxy = yes ports, the socket's addresses otherwise.
	RemoteIP, LocalIP string
	// RemotePort is rport (the lab adds it to login_log_format_elements).
	RemotePort int
	// MailPID is the post-login process (mpid), 0 if absent.
	MailPID int
	// Secured is true when the line carries "secured": Dovecot 2.3 prints it
	// for a PROXY v2 header whose SSL TLV has the client bit set, and for a
	// direct connection whose remote and local IPs are equal (loopback).
	Secured bool
	// TLS is true when the line carries "TLS": only for TLS that Dovecot
	// terminated itself, which happens only with Options.TLS.
	TLS bool
	// Session is Dovecot's session id.
	Session string
	// LocalName is local_name: the TLS SNI name, which a PROXY v2
	// AUTHORITY TLV carries; "" when there was none (Dovecot then omits it).
	LocalName string
}

// ParseLogin parses one log line; ok is false for lines that are not a
// successful login.
func ParseLogin(line string) (l Login, ok bool) {
	const marker = ": Info: Login: "
	head, rest, found := strings.Cut(line, marker)
	if !found {
		return Login{}, false
	}
	// head is "Mon DD HH:MM:SS service" or just "service".
	if sp := strings.LastIndexByte(head, ' '); sp >= 0 {
		head = head[sp+1:]
	}
	l.Service = head
	for _, elem := range strings.Split(rest, ", ") {
		key, val, hasVal := strings.Cut(elem, "=")
		if !hasVal {
			switch key {
			case "secured":
				l.Secured = true
			case "TLS":
				l.TLS = true
			}
			continue
		}
		switch key {
		case "user":
			l.User = strings.TrimSuffix(strings.TrimPrefix(val, "<"), ">")
		case "method":
			l.Method = val
		case "rip":
			l.RemoteIP = val
		case "rport":
			l.RemotePort, _ = strconv.Atoi(val)
		case "lip":
			l.LocalIP = val
		case "mpid":
			l.MailPID, _ = strconv.Atoi(val)
		case "local_name":
			l.LocalName = val
		case "session":
			l.Session = strings.TrimSuffix(strings.TrimPrefix(val, "<"), ">")
		}
	}
	if l.User == "" {
		return Login{}, false
	}
	return l, true
}

// Logins returns the successful logins in the instance's log, oldest first.
func (i *Instance) Logins() ([]Login, error) {
	log, err := i.Log()
	if err != nil {
		return nil, err
	}
	var out []Login
	for line := range strings.Lines(log) {
		if l, ok := ParseLogin(strings.TrimRight(line, "\r\n")); ok {
			out = append(out, l)
		}
	}
	return out, nil
}
