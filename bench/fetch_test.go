package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
)

// fetch reads the literal whole, and the tagged OK after it; a tagged NO,
// or an OK without a literal, is an error.
func TestFetchParsesTheLiteral(t *testing.T) {
	for _, tt := range []struct {
		name, reply string
		want        int64
		wantErr     bool
	}{
		// The literal's own lines look like a reply: only reading it as a
		// literal gets past them.
		{"literal", "* 1 FETCH (BODY[] {12}\r\nf1 NO fake\r\n)\r\nf1 OK FETCH done\r\n", 12, false},
		{"flags first", "* 1 FETCH (FLAGS (\\Seen))\r\n* 1 FETCH (BODY[] {3}\r\nabc)\r\nf1 OK done\r\n", 3, false},
		{"no", "f1 NO no such message\r\n", 0, true},
		{"ok without literal", "* 1 FETCH (FLAGS ())\r\nf1 OK done\r\n", 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, s := net.Pipe()
			defer c.Close()
			go func() {
				defer s.Close()
				line, _ := bufio.NewReader(s).ReadString('\n')
				if line != "f1 FETCH 1 BODY.PEEK[]\r\n" {
					return
				}
				io.WriteString(s, tt.reply)
			}()
			fs := &fetchSession{c: c, r: bufio.NewReader(c)}
			got, err := fs.fetch()
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// The message is at least the size asked for, in lines of 78 octets.
func TestFetchMessage(t *testing.T) {
	msg := fetchMessage(1)
	if len(msg) < 1<<20 || len(msg) > 1<<20+200 {
		t.Errorf("got %d octets, want about 1 MiB", len(msg))
	}
	for i, l := range bytes.Split(msg, []byte("\r\n")) {
		if len(l) > 76 {
			t.Fatalf("line %d: %d octets, want at most 76 before CRLF", i, len(l))
		}
	}
	if !strings.HasPrefix(string(msg), "From: ") {
		t.Error("no header first")
	}
}

// Ratios are per pair of measured paths; a path without bytes has none.
func TestFetchRatios(t *testing.T) {
	r := fetchRatios([]FetchRun{
		{Path: pathDirect, Bytes: 1, MiBps: 200},
		{Path: pathHAProxy, Bytes: 1, MiBps: 150, ProxyCPU: 1, CPUPerGiB: 0.4},
		{Path: pathMDProto, Bytes: 1, MiBps: 150, ProxyCPU: 1, CPUPerGiB: 0.2},
		{Path: pathMDTCP},
	})
	if got := r[pathMDProto+"/"+pathHAProxy]; got["MiB/s"] != 1 || got["proxy CPU s/GiB"] != 0.5 {
		t.Errorf("md-proto/haproxy: got %v, want MiB/s 1, CPU 0.5", got)
	}
	if got := r[pathHAProxy+"/"+pathDirect]; got["MiB/s"] != 0.75 {
		t.Errorf("haproxy/direct: got %v, want MiB/s 0.75", got)
	}
	if got, ok := r[pathMDTCP+"/"+pathDirect]; ok && len(got) > 0 {
		t.Errorf("md-tcp/direct: got %v, want nothing for a path that moved nothing", got)
	}
}

// medianRun picks the run of median key (the upper one of an even count)
// and returns every key in run order.
func TestMedianRun(t *testing.T) {
	for _, tt := range []struct {
		keys []float64
		want float64
	}{{[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 3}, {[]float64{5}, 5}} {
		runs := make([]FetchRun, len(tt.keys))
		for i, k := range tt.keys {
			runs[i] = FetchRun{Path: "p", MiBps: k, Fetches: i}
		}
		got := medianFetch(runs)
		if got.MiBps != tt.want || !slices.Equal(got.AllMiBps, tt.keys) {
			t.Errorf("%v: got %v with %v, want %v with the keys in run order", tt.keys, got.MiBps, got.AllMiBps, tt.want)
		}
	}
}
