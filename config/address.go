package config

import (
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Port returns the server's port for protocol p: Ports[p] if set, else the
// port in Address if it has one, else [StandardPort](p) (0 for tcp).
func (s *Server) Port(p Protocol) int {
	if port := s.Ports[p]; port > 0 {
		return port
	}
	if _, port, err := splitAddress(s.Address); err == nil && port > 0 {
		return port
	}
	return StandardPort(p)
}

// Host returns the host part of Address, without brackets for IPv6.
func (s *Server) Host() string {
	host, _, err := splitAddress(s.Address)
	if err != nil {
		return s.Address
	}
	return host
}

// DialAddress returns "host:port" for protocol p, ready for net.Dial.
func (s *Server) DialAddress(p Protocol) string {
	return net.JoinHostPort(s.Host(), strconv.Itoa(s.Port(p)))
}

// CheckPort returns the port the health check of s connects to:
// Check.Port if set; else for type tcp the server's port for the protocol
// of the first frontend (in name order) using the backend, or its tcp port
// when no frontend uses it; for smtp the submission port; for imap, pop3,
// lmtp and http the server's port for that protocol. 0 means none.
func (b *Backend) CheckPort(s *Server) int {
	if b.Check.Port > 0 {
		return b.Check.Port
	}
	switch b.Check.Type {
	case CheckTypeNone:
		return 0
	case CheckTypeTCP:
		if len(b.Protocols) > 0 {
			return s.Port(b.Protocols[0])
		}
		return s.Port(ProtocolTCP)
	case CheckTypeSMTP:
		return s.Port(ProtocolSubmission)
	default:
		return s.Port(Protocol(b.Check.Type))
	}
}

// CheckAddress returns "host:port" for the health check of s: the host is
// Check.Address, or the server's host; the port is [Backend.CheckPort].
func (b *Backend) CheckAddress(s *Server) string {
	host := b.Check.Address
	if host == "" {
		host = s.Host()
	}
	return net.JoinHostPort(host, strconv.Itoa(b.CheckPort(s)))
}

// CheckSendProxy resolves Check.SendProxy for s: "auto" becomes "local"
// (a PROXY v2 LOCAL header, which Dovecot requires on haproxy = yes
// listeners) when the server's SendProxy is not none, else "none".
func (b *Backend) CheckSendProxy(s *Server) CheckProxy {
	if b.Check.SendProxy != CheckProxyAuto && b.Check.SendProxy != "" {
		return b.Check.SendProxy
	}
	if s.SendProxy != SendProxyNone && s.SendProxy != "" {
		return CheckProxyLocal
	}
	return CheckProxyNone
}

// CheckTLS reports whether the check of s runs over TLS: Check.TLS when
// the file sets it, else the server's own tls.enabled, so that enabling TLS
// to a server moves its checks to TLS as well.
func (b *Backend) CheckTLS(s *Server) bool {
	if b.Check.TLS != nil {
		return *b.Check.TLS
	}
	return s.TLS.Enabled
}

// errBrackets explains how IPv6 addresses are written.
var errBrackets = errors.New(`write IPv6 addresses in brackets, e.g. "[2001:db8::1]" or "[2001:db8::1]:143"`)

// splitAddress splits "host", "host:port", "[v6]" or "[v6]:port". port is
// 0 when absent. The host must be an IP address or a DNS name.
func splitAddress(addr string) (host string, port int, err error) {
	if addr == "" {
		return "", 0, errors.New("empty address")
	}
	var portStr string
	hasPort := false
	if strings.HasPrefix(addr, "[") {
		end := strings.IndexByte(addr, ']')
		if end < 0 {
			return "", 0, errorf("%q: missing ']'", addr)
		}
		host = addr[1:end]
		rest := addr[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return "", 0, errorf("%q: unexpected %q after ']'", addr, rest)
			}
			portStr, hasPort = rest[1:], true
		}
		if a, perr := netip.ParseAddr(host); perr != nil || !a.Is6() {
			return "", 0, errorf("%q: brackets hold an IPv6 address, e.g. \"[2001:db8::1]:143\"", addr)
		}
	} else {
		switch strings.Count(addr, ":") {
		case 0:
			host = addr
		case 1:
			host, portStr, _ = strings.Cut(addr, ":")
			hasPort = true
		default:
			return "", 0, errorf("%q: %w", addr, errBrackets)
		}
		if host == "" {
			return "", 0, errorf("%q: missing host", addr)
		}
		if err := checkHostname(host); err != nil {
			return "", 0, errorf("%q: %w", addr, err)
		}
	}
	if hasPort {
		port, err = parsePort(portStr)
		if err != nil {
			return "", 0, errorf("%q: %w", addr, err)
		}
	}
	return host, port, nil
}

// parsePort parses a decimal port in 1..65535.
func parsePort(s string) (int, error) {
	if s == "" {
		return 0, errors.New("missing port after ':'")
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, errorf("port %q is not a number", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, errorf("port %s out of range 1..65535", s)
	}
	return n, nil
}

// checkHostname accepts an IPv4 address or a DNS name (letters, digits,
// '-', '_' in dot-separated labels).
func checkHostname(h string) error {
	if _, err := netip.ParseAddr(h); err == nil {
		return nil
	}
	if len(h) > 253 {
		return errors.New("host name longer than 253 characters")
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return errorf("%q is not a valid host name", h)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return errorf("%q is not a valid host name or IP address", h)
			}
		}
	}
	return nil
}

// parseBind parses a listen address: an IP address and a port.
func parseBind(s string) (netip.AddrPort, error) {
	host, port, err := splitAddress(s)
	if err != nil {
		if strings.HasPrefix(s, ":") && strings.Count(s, ":") == 1 {
			return netip.AddrPort{}, errorf(`%q has no address: write "0.0.0.0%s" (all IPv4 addresses) and/or "[::]%s" (all IPv6 addresses)`, s, s, s)
		}
		return netip.AddrPort{}, err
	}
	if port == 0 {
		return netip.AddrPort{}, errorf(`%q: missing port; write e.g. "%s:143"`, s, bracket(host))
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, errorf(`%q: bind needs an IP address, not a name; e.g. "0.0.0.0:%d" or "[::]:%d"`, s, port, port)
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

func bracket(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// parsePrefix parses a CIDR, or a bare IP address as a single-address
// prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, errorf("%q is not a CIDR such as \"192.0.2.0/24\" or \"2001:db8::/32\"", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, errorf("%q is not an IP address or CIDR such as \"192.0.2.0/24\"", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
