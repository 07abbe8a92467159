package doveadm

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Captured from doveadm 2.3.19 against a running director (a user list
// given with -f; "<unknown>" is a hash without a name in that list).
const mapTable = `user                      hash       mail server ip expire time        
user1                     617210206  127.0.0.2      2026-12-01 04:53:59
alice@example.com         3244357836 127.0.0.4      2026-12-01 04:54:00
<unknown>                 12345      127.0.0.6      2026-12-01 05:00:00
john smith                42         127.0.0.6      2026-12-01 05:00:00
`

const mapTab = "user\thash\tmail server ip\texpire time\n" +
	"user1\t617210206\t127.0.0.2\t2026-12-01 04:53:59\n"

const statusTable = `mail server ip tag vhosts state state changed       users           
127.0.0.2          50     up    -                   0               
127.0.0.5          100    down  2026-12-01 04:38:55 3               
10.0.0.9      eu   7      up    -                   12
`

const dump = `doveadm director add 127.0.0.2 50
doveadm director add -a /run/dovecot/director-admin 127.0.0.3 0
doveadm director add 127.0.0.4@eu 200
doveadm director remove 127.0.0.7
`

func TestParseMap(t *testing.T) {
	for name, text := range map[string]string{"table": mapTable, "tab": mapTab} {
		out, err := Parse(strings.NewReader(text), time.UTC)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(out.Problems) != 0 {
			t.Fatalf("%s: problems %v", name, out.Problems)
		}
		a := out.Assignments[0]
		want := Assignment{User: "user1", Hash: 617210206, IP: netip.MustParseAddr("127.0.0.2"),
			Expires: time.Date(2026, 12, 1, 4, 53, 59, 0, time.UTC), Line: 2}
		if a != want {
			t.Errorf("%s: got %+v, want %+v", name, a, want)
		}
	}
	out, _ := Parse(strings.NewReader(mapTable), time.UTC)
	if len(out.Assignments) != 4 || out.Assignments[1].User != "alice@example.com" || out.Assignments[2].User != "" || out.Assignments[2].Hash != 12345 {
		t.Errorf("got %+v, want alice and an unknown user with hash 12345", out.Assignments)
	}
	if a := out.Assignments[3]; a.User != "john smith" || a.Hash != 42 {
		t.Errorf("a user name with a space (columns read from the right): got %+v", a)
	}
	berlin := time.FixedZone("CET", 3600)
	out, _ = Parse(strings.NewReader(mapTab), berlin)
	if got := out.Assignments[0].Expires.UTC(); !got.Equal(time.Date(2026, 12, 1, 3, 53, 59, 0, time.UTC)) {
		t.Errorf("expiry read in the director's zone: got %v, want 03:53:59 UTC", got)
	}
}

func TestParseStatusAndDump(t *testing.T) {
	out, err := Parse(strings.NewReader(statusTable+dump), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Problems) != 0 {
		t.Fatalf("problems %v", out.Problems)
	}
	type h struct {
		ip, tag, state string
		vhosts         int
		removed        bool
	}
	var got []h
	for _, x := range out.Hosts {
		got = append(got, h{x.IP.String(), x.Tag, x.State, x.VhostCount, x.Removed})
	}
	want := []h{
		{"127.0.0.2", "", "up", 50, false}, {"127.0.0.5", "", "down", 100, false}, {"10.0.0.9", "eu", "up", 7, false},
		{"127.0.0.2", "", "", 50, false}, {"127.0.0.3", "", "", 0, false}, {"127.0.0.4", "eu", "", 200, false},
		{"127.0.0.7", "", "", -1, true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d hosts %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("host %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestParseNamesEveryBadLine: a line that is not map, status or dump
// output is a Problem with its number, never dropped silently.
func TestParseNamesEveryBadLine(t *testing.T) {
	text := "user1 617210206 127.0.0.2 2026-12-01 04:53:59\n" +
		"Current: 127.0.0.2 (expires 2026-12-01 04:53:59)\n" +
		"user2 99999999999 127.0.0.2 2026-12-01 04:53:59\n" +
		"user3 1 not-an-ip 2026-12-01 04:53:59\n" +
		"user4 1 127.0.0.2 2026-13-01 04:53:59\n" +
		"doveadm director kick user5\n" +
		"127.0.0.2 50 sideways - 0\n"
	out, err := Parse(strings.NewReader(text), time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Assignments) != 1 {
		t.Errorf("got %d assignments, want 1", len(out.Assignments))
	}
	var lines []int
	for _, p := range out.Problems {
		lines = append(lines, p.Line)
	}
	if want := []int{2, 3, 4, 5, 6, 7}; len(lines) != len(want) {
		t.Fatalf("problems on lines %v, want %v: %v", lines, want, out.Problems)
	}
	if !strings.Contains(out.Problems[1].Why, "32-bit") || !strings.Contains(out.Problems[0].String(), "line 2") {
		t.Errorf("problems do not say why or where: %v", out.Problems)
	}
}

func TestParseTooLong(t *testing.T) {
	if _, err := Parse(strings.NewReader(strings.Repeat("x", MaxLine+1)), nil); err == nil {
		t.Error("a line over MaxLine: got no error")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{mapTable, mapTab, statusTable, dump, "doveadm director add -t", "1.2.3.4 a b c d e f\n\t\t\t\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		out, err := Parse(strings.NewReader(text), time.UTC)
		if err != nil {
			return
		}
		lines := strings.Count(text, "\n") + 1
		if n := len(out.Assignments) + len(out.Hosts) + len(out.Problems); n > lines {
			t.Fatalf("%d results from %d lines", n, lines)
		}
		for _, a := range out.Assignments {
			if !a.IP.IsValid() || a.Line < 1 || a.Line > lines || a.User == UnknownUser {
				t.Fatalf("bad assignment %+v", a)
			}
		}
		for _, h := range out.Hosts {
			if !h.IP.IsValid() || (h.VhostCount < 0 && !h.Removed && h.State == "") {
				t.Fatalf("bad host %+v", h)
			}
		}
	})
}
