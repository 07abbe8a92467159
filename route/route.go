// Package route chooses a frontend's backend by rule: Dovecot director's
// tags and HAProxy's "use_backend NAME if ..." for mail sessions.
//
// A [Table] holds a frontend's rules in order and its default backend. A
// rule matches when every key it sets matches (a key with several values
// matches when one does); the first rule that matches names the backend,
// else the default does:
//
//	t := route.Table{Default: "main", Rules: []route.Rule{
//		{Backend: "legacy", Domains: []route.Name{{Name: "legacy.example.org"}}},
//		{Backend: "eu", SNI: []route.Name{{Name: ".eu.example.org", Suffix: true}}},
//	}}
//	d := t.Route(route.Request{User: "ann@legacy.example.org"})
//	// d.Backend == "legacy", d.Rule == 0, d.Matched == []string{"domain legacy.example.org"}
//
// The package only matches: the configuration parses and validates the
// rules (config.Route), cmd translates them.
package route

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Name is a domain name to match: exactly, or with Suffix any name ending
// in Name (which then begins with a dot: ".example.org" matches
// "a.example.org" and "a.b.example.org", not "example.org"). Lower case.
type Name struct {
	Name   string
	Suffix bool
}

// Match reports whether the lower-case name s matches n.
func (n Name) Match(s string) bool {
	if n.Suffix {
		return len(s) > len(n.Name) && strings.HasSuffix(s, n.Name)
	}
	return s == n.Name
}

// String is the configuration's spelling: "example.org" or "*.example.org".
func (n Name) String() string {
	if n.Suffix {
		return "*" + n.Name
	}
	return n.Name
}

// Local is one of maildirector's addresses a client may connect to: an
// address, a port, or both. The zero Addr matches any address, port 0 any
// port.
type Local struct {
	Addr netip.Addr
	Port uint16
}

// Match reports whether the client connected to a.
func (l Local) Match(a netip.AddrPort) bool {
	if l.Port != 0 && a.Port() != l.Port {
		return false
	}
	return !l.Addr.IsValid() || l.Addr.Unmap() == a.Addr().Unmap()
}

// String is the configuration's spelling: "IP:port", ":port" or "IP".
func (l Local) String() string {
	switch {
	case !l.Addr.IsValid():
		return ":" + strconv.Itoa(int(l.Port))
	case l.Port == 0:
		return l.Addr.String()
	}
	return netip.AddrPortFrom(l.Addr, l.Port).String()
}

// Rule sends the sessions it matches to Backend. Every key set must
// match; a key with several values matches when one of them does. A rule
// with no key set matches every session.
type Rule struct {
	Backend string
	// Domains match the domain of the user name (see [Domain]); a name
	// without a domain matches none.
	Domains []Name
	// SNI match the name the client asked for in its TLS ClientHello; a
	// session without TLS or without SNI matches none.
	SNI []Name
	// Local match the address the client connected to.
	Local []Local
	// Client match the client's address.
	Client []netip.Prefix
}

// Request is what a session is routed by.
type Request struct {
	// User is the login name or LMTP recipient as the client sent it;
	// empty for protocols without one.
	User string
	// SNI is the TLS server name, lower case; empty for none.
	SNI string
	// Local is the address the client connected to.
	Local netip.AddrPort
	// Client is the client's address.
	Client netip.AddrPort
}

// Table is one frontend's rules, in order, and its default backend.
type Table struct {
	Rules   []Rule
	Default string
	// MasterSeparator is Dovecot's auth_master_user_separator, if any: a
	// master login "user@domain*master" is routed by "domain" (see
	// [Domain]).
	MasterSeparator string
}

// Decision is a table's answer.
type Decision struct {
	Backend string
	// Rule is the index of the rule that matched; -1 when none did and
	// Backend is the table's default.
	Rule int
	// Matched says what matched, one entry per key of the rule, each as
	// "KEY VALUE" with the value as configured ("domain *.example.org",
	// "local :993"); nil for the default.
	Matched []string
}

// String says why: "route[1] (sni mail.example.org)" or "default".
func (d Decision) String() string {
	if d.Rule < 0 {
		return "default"
	}
	return "route[" + strconv.Itoa(d.Rule) + "] (" + strings.Join(d.Matched, ", ") + ")"
}

// Route returns the backend of the first rule that matches r, else the
// default.
func (t *Table) Route(r Request) Decision {
	domain := Domain(r.User, t.MasterSeparator)
	for i := range t.Rules {
		if matched, ok := t.Rules[i].match(r, domain); ok {
			return Decision{Backend: t.Rules[i].Backend, Rule: i, Matched: matched}
		}
	}
	return Decision{Backend: t.Default, Rule: -1}
}

// Backends lists the backends t may route to, the default first, each
// once.
func (t *Table) Backends() []string {
	out := []string{t.Default}
	for _, r := range t.Rules {
		if !slices.Contains(out, r.Backend) {
			out = append(out, r.Backend)
		}
	}
	return out
}

// match reports whether every key of r matches, and what matched.
func (r *Rule) match(req Request, domain string) ([]string, bool) {
	var matched []string
	if len(r.Domains) > 0 {
		n, ok := firstName(r.Domains, domain)
		if !ok {
			return nil, false
		}
		matched = append(matched, "domain "+n.String())
	}
	if len(r.SNI) > 0 {
		n, ok := firstName(r.SNI, req.SNI)
		if !ok {
			return nil, false
		}
		matched = append(matched, "sni "+n.String())
	}
	if len(r.Local) > 0 {
		i := slices.IndexFunc(r.Local, func(l Local) bool { return req.Local.IsValid() && l.Match(req.Local) })
		if i < 0 {
			return nil, false
		}
		matched = append(matched, "local "+r.Local[i].String())
	}
	if len(r.Client) > 0 {
		a := req.Client.Addr().Unmap()
		i := slices.IndexFunc(r.Client, func(p netip.Prefix) bool { return req.Client.IsValid() && p.Contains(a) })
		if i < 0 {
			return nil, false
		}
		matched = append(matched, "client "+r.Client[i].String())
	}
	return matched, true
}

// firstName returns the first of names that s matches; an empty s
// matches none.
func firstName(names []Name, s string) (Name, bool) {
	if s == "" {
		return Name{}, false
	}
	i := slices.IndexFunc(names, func(n Name) bool { return n.Match(s) })
	if i < 0 {
		return Name{}, false
	}
	return names[i], true
}

// Domain is the domain a user name is routed by: the text after its last
// '@', lower case, with a trailing dot dropped; "" when there is none. A
// master login (Dovecot's auth_master_user_separator, sep) is cut at its
// first sep before: "ann@example.org*admin" is in "example.org". An LMTP
// recipient's detail (ann+box@example.org) is before the '@' and does not
// change its domain.
func Domain(user, sep string) string {
	if sep != "" {
		if i := strings.Index(user, sep); i >= 0 {
			user = user[:i]
		}
	}
	i := strings.LastIndexByte(user, '@')
	if i < 0 {
		return ""
	}
	return strings.TrimSuffix(strings.ToLower(user[i+1:]), ".")
}

// Unknown names the keys of a request that are not known: `where` asked
// about a user without saying how the client connects. A rule on an
// unknown key may or may not match.
type Unknown struct{ SNI, Local, Client bool }

// Explain is Route for a request with unknown keys: the decision is the
// first rule that matches on the known keys alone (else the default), and
// maybe lists the rules before it that match the known keys and would
// match or not on the unknown ones, in order: any of them would take the
// session first.
func (t *Table) Explain(r Request, u Unknown) (d Decision, maybe []int) {
	domain := Domain(r.User, t.MasterSeparator)
	for i := range t.Rules {
		rule := t.Rules[i]
		unknown := u.SNI && len(rule.SNI) > 0 || u.Local && len(rule.Local) > 0 || u.Client && len(rule.Client) > 0
		if u.SNI {
			rule.SNI = nil
		}
		if u.Local {
			rule.Local = nil
		}
		if u.Client {
			rule.Client = nil
		}
		matched, ok := rule.match(r, domain)
		switch {
		case !ok:
		case unknown:
			maybe = append(maybe, i)
		default:
			return Decision{Backend: rule.Backend, Rule: i, Matched: matched}, maybe
		}
	}
	return Decision{Backend: t.Default, Rule: -1}, maybe
}

// String is the rule as configured: "domain a.example,*.a.example sni
// imap.a.example" (keys in the order domain, sni, local, client).
func (r Rule) String() string {
	var parts []string
	key := func(name string, n int, value func(int) string) {
		if n == 0 {
			return
		}
		vs := make([]string, n)
		for i := range vs {
			vs[i] = value(i)
		}
		parts = append(parts, name+" "+strings.Join(vs, ","))
	}
	key("domain", len(r.Domains), func(i int) string { return r.Domains[i].String() })
	key("sni", len(r.SNI), func(i int) string { return r.SNI[i].String() })
	key("local", len(r.Local), func(i int) string { return r.Local[i].String() })
	key("client", len(r.Client), func(i int) string { return r.Client[i].String() })
	return strings.Join(parts, " ")
}
