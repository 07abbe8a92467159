package config

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Route is one [[frontend.NAME.route]] rule: the sessions it matches go to
// Backend instead of the frontend's backend. Every key set must match; a
// key lists values, of which one must match. The first rule that matches
// wins; when none does, the frontend's backend takes the session.
type Route struct {
	// Backend names the [backend.NAME] the matched sessions go to. Required.
	Backend string `toml:"backend"`
	// Domain matches the domain of the login name or LMTP recipient (after
	// its last '@'): "example.org" exactly, "*.example.org" any name below
	// it (not example.org itself). Not for tcp and http frontends.
	Domain []string `toml:"domain"`
	// SNI matches the server name of the client's TLS ClientHello
	// (implicit TLS or STARTTLS), written as Domain.
	SNI []string `toml:"sni"`
	// Local matches the address the client connected to: "IP:port",
	// ":port" (any address) or "IP" (any port).
	Local []string `toml:"local"`
	// Client matches the client's address: a CIDR or an IP address.
	Client []string `toml:"client"`
}

// NamePattern is a Route's domain or SNI value, parsed: Name exactly, or
// with Suffix any name that ends in Name (which begins with a dot).
// Lower case.
type NamePattern struct {
	Name   string
	Suffix bool
}

// ParseNamePattern parses a domain or SNI value: "example.org" or
// "*.example.org".
func ParseNamePattern(s string) (NamePattern, error) {
	name, suffix := s, false
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		name, suffix = rest, true
	}
	switch {
	case name == "":
		return NamePattern{}, errorf("%q: write a domain such as \"example.org\" or \"*.example.org\"", s)
	case strings.HasPrefix(name, "."):
		return NamePattern{}, errorf("%q: write \"*%s\" for the names below %s", s, name, name[1:])
	case strings.Contains(name, "*"):
		return NamePattern{}, errorf("%q: '*' only as the first label, as in \"*.example.org\"", s)
	case strings.Contains(name, "@"):
		return NamePattern{}, errorf("%q: write the domain alone, without the user", s)
	}
	if isAddr(name) || isAddr(strings.TrimSuffix(name, ".")) {
		// RFC 6066 section 3: a client sends no IP address as SNI.
		return NamePattern{}, errorf("%q: an IP address is no domain name; match addresses with local or client", s)
	}
	if err := checkHostname(name); err != nil {
		return NamePattern{}, errorf("%q is not a domain such as \"example.org\" or \"*.example.org\"", s)
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if suffix {
		return NamePattern{Name: "." + name, Suffix: true}, nil
	}
	return NamePattern{Name: name}, nil
}

func isAddr(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// LocalAddr is a Route's local value, parsed: the zero Addr is any
// address, port 0 any port.
type LocalAddr struct {
	Addr netip.Addr
	Port uint16
}

// ParseLocalAddr parses a local value: "IP:port" (IPv6 in brackets),
// ":port" or "IP".
func ParseLocalAddr(s string) (LocalAddr, error) {
	if a, err := netip.ParseAddr(s); err == nil { // before ":port": "::1" is an address
		if a.Zone() != "" {
			return LocalAddr{}, errorf("%q: an address without a zone", s)
		}
		return LocalAddr{Addr: a.Unmap()}, nil
	}
	if port, ok := strings.CutPrefix(s, ":"); ok {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return LocalAddr{}, errorf("%q: port out of range 1..65535", s)
		}
		return LocalAddr{Port: uint16(n)}, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		return LocalAddr{}, errorf(`%q: write "IP:port" ("[IPv6]:port"), ":port" or "IP", e.g. "192.0.2.1:993" or ":993"`, s)
	}
	return LocalAddr{Addr: ap.Addr().Unmap(), Port: ap.Port()}, nil
}

// DomainPatterns returns r.Domain parsed; values that do not parse are
// skipped (Validate reports them).
func (r *Route) DomainPatterns() []NamePattern { return namePatterns(r.Domain) }

// SNIPatterns returns r.SNI parsed, as DomainPatterns.
func (r *Route) SNIPatterns() []NamePattern { return namePatterns(r.SNI) }

func namePatterns(list []string) []NamePattern {
	var out []NamePattern
	for _, s := range list {
		if n, err := ParseNamePattern(s); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// LocalAddrs returns r.Local parsed, as DomainPatterns.
func (r *Route) LocalAddrs() []LocalAddr {
	var out []LocalAddr
	for _, s := range r.Local {
		if l, err := ParseLocalAddr(s); err == nil {
			out = append(out, l)
		}
	}
	return out
}

// ClientPrefixes returns r.Client parsed, as DomainPatterns.
func (r *Route) ClientPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range r.Client {
		if p, err := parsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// Backends lists the backends f sends sessions to: its own first, then
// those of its routes, each once.
func (f *Frontend) Backends() []string {
	out := []string{f.Backend}
	for _, r := range f.Route {
		if r != nil && r.Backend != "" && !slices.Contains(out, r.Backend) {
			out = append(out, r.Backend)
		}
	}
	return out
}

// userProtocols have a user name to route by domain.
var userProtocols = []Protocol{ProtocolIMAP, ProtocolPOP3, ProtocolSubmission, ProtocolLMTP, ProtocolManageSieve}

// validateRoutes checks f's routes (at is the frontend's key path) and
// adds f to usedBy under each backend a route names.
func (c *Config) validateRoutes(p *problems, at string, f *Frontend, usedBy map[string][]*Frontend) {
	binds := f.BindAddrs()
	for i, r := range f.Route {
		rat := at + ".route" + idx(i)
		if r == nil {
			continue
		}
		switch b := c.Backends[r.Backend]; {
		case r.Backend == "":
			p.addf(rat+".backend", "required: the name of a [backend.NAME] table")
		case b == nil:
			p.addf(rat+".backend", "backend %q is not defined; define [backend.%s] or use one of: %s",
				r.Backend, keyPart(r.Backend), strings.Join(c.BackendNames(), ", "))
		case !slices.Contains(usedBy[r.Backend], f):
			usedBy[r.Backend] = append(usedBy[r.Backend], f)
		}
		if len(r.Domain)+len(r.SNI)+len(r.Local)+len(r.Client) == 0 {
			p.addf(rat, "matches every session: give it domain, sni, local or client, or make %q the frontend's backend", r.Backend)
		}
		if len(r.Domain) > 0 && !slices.Contains(userProtocols, f.Protocol) && slices.Contains(knownProtocols, f.Protocol) {
			p.addf(rat+".domain", "protocol %s has no user name to take a domain from; match on sni, local or client", f.Protocol)
		}
		for j, s := range r.Domain {
			if _, err := ParseNamePattern(s); err != nil {
				p.add(rat+".domain"+idx(j), err)
			}
		}
		if len(r.SNI) > 0 && f.TLS.Mode == TLSModeNone {
			p.addf(rat+".sni", "never matches: the frontend has no TLS (tls.mode \"none\"), so clients send no server name")
		}
		for j, s := range r.SNI {
			if _, err := ParseNamePattern(s); err != nil {
				p.add(rat+".sni"+idx(j), err)
			}
		}
		for j, s := range r.Local {
			l, err := ParseLocalAddr(s)
			if err != nil {
				p.add(rat+".local"+idx(j), err)
				continue
			}
			if len(binds) == len(f.Bind) && !slices.ContainsFunc(binds, l.reachedBy) {
				p.addf(rat+".local"+idx(j), "%q is none of the frontend's bind addresses (%s): no client can connect to it here", s, strings.Join(f.Bind, ", "))
			}
		}
		validatePrefixes(p, rat+".client", r.Client)
	}
}

// reachedBy reports whether a client connecting to a listener bound to b
// may have connected to l.
func (l LocalAddr) reachedBy(b netip.AddrPort) bool {
	if l.Port != 0 && l.Port != b.Port() {
		return false
	}
	ba := b.Addr().Unmap()
	return !l.Addr.IsValid() || ba.IsUnspecified() || ba == l.Addr
}
