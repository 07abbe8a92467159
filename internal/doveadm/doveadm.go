// Package doveadm reads what a Dovecot 2.3 director tells about itself
// through doveadm, so that maildirector can take over its placements
// (maildirector import-director):
//
//	doveadm director map -f USERS     (or its -f tab form): user, hash, server, expiry
//	doveadm director status           (or its -f tab form): servers, vhost counts, up or down
//	doveadm director dump             doveadm commands that recreate the servers
//
// Parse takes any mix of them, line by line, and never fails on content:
// a line it cannot read becomes a Problem naming the line, so nothing is
// dropped silently.
//
//	out, err := doveadm.Parse(os.Stdin, time.Local)
//	for _, a := range out.Assignments { ... a.User, a.IP, a.Expires ... }
//	for _, p := range out.Problems { fmt.Println(p) }
//
// The formats are those of doveadm 2.3.19 (src/doveadm/doveadm-director.c):
// the table formatter pads columns with spaces and prints times as
// "YYYY-MM-DD HH:MM:SS" in the director's local time zone; the map prints
// "<unknown>" for a hash whose user is not in the user list it was given
// (the director itself knows users by hash only).
package doveadm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// MaxLine bounds one line of input.
const MaxLine = 64 << 10

// UnknownUser is how doveadm director map prints a hash it has no user
// name for.
const UnknownUser = "<unknown>"

// timeLayout is unixdate2str's format (t_strflocaltime "%Y-%m-%d %H:%M:%S").
const timeLayout = "2006-01-02 15:04:05"

// Assignment is one row of doveadm director map: the director keeps the
// user on the server until Expires unless the user is active meanwhile.
type Assignment struct {
	// User is the user name, or "" when the map printed UnknownUser.
	User string
	// Hash is the user's hash (mail_user_hash of director_username_hash).
	Hash uint32
	// IP is the mail server the director assigned the user to.
	IP netip.Addr
	// Expires is the row's "expire time": the user's last activity plus
	// director_user_expire.
	Expires time.Time
	// Line is the line number in the input, from 1.
	Line int
}

// Host is one mail server as doveadm director status or dump shows it.
type Host struct {
	IP netip.Addr
	// Tag is the server's tag ("" for none).
	Tag string
	// VhostCount is the server's vhost count.
	VhostCount int
	// State is "up" or "down" (status), or "" when the line does not say
	// (dump).
	State string
	// Removed says dump listed the server as removed.
	Removed bool
	Line    int
}

// Problem is a line Parse could not read, with the reason.
type Problem struct {
	Line int
	Text string
	Why  string
}

func (p Problem) String() string { return fmt.Sprintf("line %d: %q: %s", p.Line, p.Text, p.Why) }

// Output is what Parse read.
type Output struct {
	Assignments []Assignment
	Hosts       []Host
	Problems    []Problem
}

// Parse reads map, status and dump output from r; times are read in loc
// (the director's time zone; nil means time.Local). It returns an error
// only when r fails or a line is longer than MaxLine.
func Parse(r io.Reader, loc *time.Location) (*Output, error) {
	if loc == nil {
		loc = time.Local
	}
	out := new(Output)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), MaxLine)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), "\r")
		if why := out.parseLine(line, n, loc); why != "" {
			out.Problems = append(out.Problems, Problem{Line: n, Text: line, Why: why})
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return out, fmt.Errorf("line %d: longer than %d bytes", n+1, MaxLine)
		}
		return out, err
	}
	return out, nil
}

// parseLine reads one line into out; it returns why it could not.
func (out *Output) parseLine(line string, n int, loc *time.Location) string {
	trimmed := strings.TrimSpace(line)
	switch {
	case trimmed == "":
		return ""
	case isHeader(trimmed):
		return ""
	case strings.HasPrefix(trimmed, "doveadm director "):
		return out.dumpLine(trimmed, n)
	case strings.ContainsRune(line, '\t'):
		return out.tabLine(strings.Split(line, "\t"), n, loc)
	}
	f := strings.Fields(trimmed)
	if a, ok, why := mapRow(f, n, loc); ok || why != "" {
		if ok {
			out.Assignments = append(out.Assignments, a)
		}
		return why
	}
	if h, ok, why := statusRow(f, n); ok || why != "" {
		if ok {
			out.Hosts = append(out.Hosts, h)
		}
		return why
	}
	return "neither doveadm director map, status nor dump output"
}

// isHeader reports the table formatter's title lines of map and status.
func isHeader(line string) bool {
	f := strings.Fields(line)
	return len(f) >= 4 && ((f[0] == "user" && f[1] == "hash") || (f[0] == "mail" && f[1] == "server" && f[2] == "ip"))
}

// mapRow reads "USER HASH IP YYYY-MM-DD HH:MM:SS" (the user name may hold
// spaces: the columns are read from the right). ok is false with an empty
// why when the fields do not have a map row's shape at all.
func mapRow(f []string, n int, loc *time.Location) (a Assignment, ok bool, why string) {
	if len(f) < 5 || !looksLikeDate(f[len(f)-2]) {
		return a, false, ""
	}
	k := len(f)
	return assignment(strings.Join(f[:k-4], " "), f[k-4], f[k-3], f[k-2]+" "+f[k-1], n, loc)
}

// assignment checks and converts one map row's columns.
func assignment(user, hash, ip, expires string, n int, loc *time.Location) (Assignment, bool, string) {
	a := Assignment{Line: n}
	h, err := strconv.ParseUint(hash, 10, 32)
	if err != nil {
		return a, false, fmt.Sprintf("hash %q: want a 32-bit number", hash)
	}
	a.Hash = uint32(h)
	if a.IP, err = netip.ParseAddr(ip); err != nil {
		return a, false, fmt.Sprintf("mail server ip %q: not an IP address", ip)
	}
	a.IP = a.IP.Unmap()
	if a.Expires, err = time.ParseInLocation(timeLayout, expires, loc); err != nil {
		return a, false, fmt.Sprintf("expire time %q: want YYYY-MM-DD HH:MM:SS", expires)
	}
	if user = strings.TrimSpace(user); user == "" {
		return a, false, "no user column"
	}
	if user != UnknownUser {
		a.User = user
	}
	return a, true, ""
}

func looksLikeDate(s string) bool {
	return len(s) == 10 && s[4] == '-' && s[7] == '-'
}

// statusRow reads "IP [TAG] VHOSTS STATE CHANGED USERS", where CHANGED is
// "-" or a date and a time, from the right since the tag may be empty.
func statusRow(f []string, n int) (h Host, ok bool, why string) {
	if len(f) < 5 {
		return h, false, ""
	}
	ip, err := netip.ParseAddr(f[0])
	if err != nil {
		return h, false, ""
	}
	h = Host{IP: ip.Unmap(), Line: n}
	k := len(f) - 1 // users
	if _, err := strconv.Atoi(f[k]); err != nil {
		return h, false, fmt.Sprintf("users %q: want a number", f[k])
	}
	k--
	if f[k] != "-" {
		k-- // a date and a time
	}
	k--
	if k < 2 {
		return h, false, "too few columns for doveadm director status"
	}
	h.State = f[k]
	if h.State != "up" && h.State != "down" {
		return h, false, fmt.Sprintf("state %q: want up or down", h.State)
	}
	if h.VhostCount, err = strconv.Atoi(f[k-1]); err != nil || h.VhostCount < 0 {
		return h, false, fmt.Sprintf("vhosts %q: want a count", f[k-1])
	}
	h.Tag = strings.Join(f[1:k-1], " ")
	return h, true, ""
}

// tabLine reads the -f tab forms: 4 columns for map, 6 for status.
func (out *Output) tabLine(cols []string, n int, loc *time.Location) string {
	for i := range cols {
		cols[i] = strings.TrimSpace(cols[i])
	}
	switch len(cols) {
	case 4:
		if cols[0] == "user" && cols[1] == "hash" {
			return ""
		}
		a, ok, why := assignment(cols[0], cols[1], cols[2], cols[3], n, loc)
		if ok {
			out.Assignments = append(out.Assignments, a)
		}
		return why
	case 6:
		if cols[0] == "mail server ip" {
			return ""
		}
		ip, err := netip.ParseAddr(cols[0])
		if err != nil {
			return fmt.Sprintf("mail server ip %q: not an IP address", cols[0])
		}
		h := Host{IP: ip.Unmap(), Tag: cols[1], State: cols[3], Line: n}
		if h.VhostCount, err = strconv.Atoi(cols[2]); err != nil || h.VhostCount < 0 {
			return fmt.Sprintf("vhosts %q: want a count", cols[2])
		}
		if h.State != "up" && h.State != "down" {
			return fmt.Sprintf("state %q: want up or down", h.State)
		}
		out.Hosts = append(out.Hosts, h)
		return ""
	}
	return fmt.Sprintf("%d tab-separated columns: want 4 (map -f tab) or 6 (status -f tab)", len(cols))
}

// dumpLine reads "doveadm director add [-a SOCKET] [-t TAG] HOST[@TAG] [COUNT]"
// and "doveadm director remove [-a SOCKET] HOST"; other director commands
// (up, down) are read too, for dumps written by hand.
func (out *Output) dumpLine(line string, n int) string {
	f := strings.Fields(line)[2:]
	if len(f) == 0 {
		return "no director command"
	}
	cmd, args := f[0], f[1:]
	tag := ""
	var rest []string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-a", "-t":
			if i+1 == len(args) {
				return fmt.Sprintf("option %s without its value", args[i])
			}
			if args[i] == "-t" {
				tag = args[i+1]
			}
			i++
		default:
			rest = append(rest, args[i])
		}
	}
	if len(rest) == 0 {
		return "no host"
	}
	host, hostTag, hasTag := strings.Cut(rest[0], "@")
	if hasTag {
		tag = hostTag
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Sprintf("host %q: not an IP address (resolve names before importing)", host)
	}
	h := Host{IP: ip.Unmap(), Tag: tag, VhostCount: -1, Line: n}
	switch cmd {
	case "add":
		if len(rest) > 2 {
			return "add takes HOST [COUNT]"
		}
		h.VhostCount = 100 // doveadm director add without a count: VHOST_MULTIPLIER
		if len(rest) == 2 {
			if h.VhostCount, err = strconv.Atoi(rest[1]); err != nil || h.VhostCount < 0 {
				return fmt.Sprintf("vhost count %q: want a count", rest[1])
			}
		}
	case "remove":
		h.Removed = true
	case "up", "down":
		h.State = cmd
	default:
		return fmt.Sprintf("doveadm director %s: not a dump command", cmd)
	}
	if len(rest) > 2 || (cmd != "add" && len(rest) > 1) {
		return fmt.Sprintf("%s: unexpected %q", cmd, rest[1:])
	}
	out.Hosts = append(out.Hosts, h)
	return ""
}
