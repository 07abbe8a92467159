package dovecotlab

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseLogin(t *testing.T) {
	tests := []struct {
		name   string
		line   string
		want   Login
		wantOK bool
	}{
		{
			name: "proxied with SSL TLV",
			line: "Nov 21 06:28:43 imap-login: Info: Login: user=<user001>, method=PLAIN, rip=203.0.113.8, lip=198.51.100.2, mpid=7517, secured, session=<bm7geMNgQJzLAHEH>",
			want: Login{Service: "imap-login", User: "user001", Method: "PLAIN", RemoteIP: "203.0.113.8", LocalIP: "198.51.100.2",
				MailPID: 7517, Secured: true, Session: "bm7geMNgQJzLAHEH"},
			wantOK: true,
		},
		{
			name: "proxied without TLS, IPv6",
			line: "Nov 21 06:34:22 pop3-login: Info: Login: user=<user002>, method=PLAIN, rip=2001:db8::7, lip=2001:db8::1, mpid=23070, session=<8jgejcNgVgTLAHEJ>",
			want: Login{Service: "pop3-login", User: "user002", Method: "PLAIN", RemoteIP: "2001:db8::7", LocalIP: "2001:db8::1",
				MailPID: 23070, Session: "8jgejcNgVgTLAHEJ"},
			wantOK: true,
		},
		{
			name: "TLS terminated by Dovecot",
			line: "submission-login: Info: Login: user=<bob>, method=LOGIN, rip=127.0.0.1, lip=127.0.0.1, mpid=1, TLS, session=<x>",
			want: Login{Service: "submission-login", User: "bob", Method: "LOGIN", RemoteIP: "127.0.0.1", LocalIP: "127.0.0.1",
				MailPID: 1, TLS: true, Session: "x"},
			wantOK: true,
		},
		{
			name: "SNI as local_name",
			line: "Dec 01 01:49:09 imap-login: Info: Login: user=<user000>, method=PLAIN, rip=203.0.113.9, rport=4000, lip=198.51.100.1, mpid=15685, secured, session=<6Kx9>, local_name=mail.sni.test",
			want: Login{Service: "imap-login", User: "user000", Method: "PLAIN", RemoteIP: "203.0.113.9", RemotePort: 4000, LocalIP: "198.51.100.1",
				MailPID: 15685, Secured: true, Session: "6Kx9", LocalName: "mail.sni.test"},
			wantOK: true,
		},
		{name: "aborted login", line: "Nov 21 06:34:22 imap-login: Info: Disconnected: Aborted login by logging out (auth failed, 1 attempts in 4 secs): user=<mallory>, method=PLAIN, rip=127.0.0.1"},
		{name: "mail process line", line: "Nov 21 06:34:22 imap(user001)<23067><N/gd>: Info: Disconnected: Logged out in=8 out=468"},
		{name: "empty user", line: "imap-login: Info: Login: method=PLAIN"},
		{name: "empty", line: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseLogin(tt.line)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("got %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func FuzzParseLogin(f *testing.F) {
	f.Add("Nov 21 06:28:43 imap-login: Info: Login: user=<user001>, method=PLAIN, rip=203.0.113.8, lip=198.51.100.2, mpid=7517, secured, session=<bm7g>")
	f.Add("imap-login: Info: Login: user=<>, TLS")
	f.Add(": Info: Login: user=<a")
	f.Fuzz(func(t *testing.T, line string) {
		l, ok := ParseLogin(line)
		if ok && l.User == "" {
			t.Errorf("ok with empty user for %q", line)
		}
		if !ok && l != (Login{}) {
			t.Errorf("not ok but got %+v", l)
		}
	})
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name   string
		stat   string
		want   statFields
		wantOK bool
	}{
		{"master", "16747 (dovecot) S 1 16747 5598 0 -1", statFields{'S', 1, 16747}, true},
		{"comm with parens and spaces", "42 (a) (b c)) T 7 16747 1", statFields{'T', 7, 16747}, true},
		{"zombie", "16751 (anvil) Z 16747 16747 0", statFields{'Z', 16747, 16747}, true},
		{"no paren", "42 dovecot S 1 1", statFields{}, false},
		{"short", "42 (x) S 1", statFields{}, false},
		{"bad number", "42 (x) S one 2", statFields{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseStat(tt.stat)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("got %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// FuzzParseStat: a line parseStat accepts has, after the last ")", a state
// that is one ASCII letter (proc(5)) and two decimal fields, and those are
// what it returns.
func FuzzParseStat(f *testing.F) {
	f.Add("16747 (dovecot) S 1 16747 5598 0 -1")
	f.Add("1 ()) Z 0 0")
	f.Add("1 (x) 5 1 1")
	f.Add("1 (x) ! 1 1")
	f.Add("1 (x) \xff 1 1")
	f.Fuzz(func(t *testing.T, s string) {
		st, ok := parseStat(s)
		if !ok {
			return
		}
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 3 || len(f[0]) != 1 || !('a' <= f[0][0] && f[0][0] <= 'z' || 'A' <= f[0][0] && f[0][0] <= 'Z') {
			t.Fatalf("accepted %q: the state after the last ) is not one letter", s)
		}
		ppid, err1 := strconv.Atoi(f[1])
		pgrp, err2 := strconv.Atoi(f[2])
		if want := (statFields{state: f[0][0], ppid: ppid, pgrp: pgrp}); err1 != nil || err2 != nil || st != want {
			t.Errorf("parseStat(%q): got %+v, want %+v", s, st, want)
		}
	})
}

func TestParseListenLine(t *testing.T) {
	const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode"
	tests := []struct {
		name     string
		line     string
		wantPort int
		wantOK   bool
	}{
		{"loopback listener", "   0: 0100007F:277F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1", 10111, true},
		{"any-address listener", "   1: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1", 80, true},
		{"established", "   2: 0100007F:277F 0100007F:A2B4 01 00000000:00000000 00:00000000 00000000     0        0 1", 0, false},
		{"other address", "   3: 0101A8C0:277F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1", 0, false},
		{"header", header, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port, ok := parseListenLine(tt.line)
			if port != tt.wantPort || ok != tt.wantOK {
				t.Errorf("got %d, %v; want %d, %v", port, ok, tt.wantPort, tt.wantOK)
			}
		})
	}
}

func TestParseListenLine6(t *testing.T) {
	tests := []struct {
		name     string
		line     string
		wantPort int
		wantOK   bool
	}{
		{"::1 listener", "   0: 00000000000000000000000001000000:277F 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1", 10111, true},
		{":: listener", "   1: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1", 80, true},
		{"IPv4 row", "   2: 0100007F:277F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1", 0, false},
		{"other address", "   3: B80D0120000000000000000001000000:277F 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			port, ok := parseListenLine6(tt.line)
			if port != tt.wantPort || ok != tt.wantOK {
				t.Errorf("got %d, %v; want %d, %v", port, ok, tt.wantPort, tt.wantOK)
			}
		})
	}
}

func FuzzParseListenLine(f *testing.F) {
	f.Add("   0: 0100007F:277F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1")
	f.Fuzz(func(t *testing.T, line string) {
		port, ok := parseListenLine(line)
		if !ok {
			return
		}
		if f := strings.Fields(line); port < 0 || port > 65535 || len(f) < 4 || f[3] != "0A" {
			t.Errorf("got port %d for %q, which is not a listening socket's line", port, line)
		}
	})
}

func TestRenderConfig(t *testing.T) {
	p := configParams{InstanceName: "lab-x-dovecot1", BaseDir: "/tmp/dclx", TrustedNetworks: DefaultTrustedNetworks,
		RelayHost: "127.0.0.1", RelayPort: 2525, UID: 102, GID: 105, ListenAddress: "127.0.0.1",
		Ports: InstancePorts{IMAP: 10143, IMAPDirect: 10144, POP3: 10110, POP3Direct: 10111, LMTP: 10024, LMTPDirect: 10025, Submission: 10587}}
	b, err := renderConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	for _, want := range []string{
		"port = 10143\n    haproxy = yes", "port = 10144\n  }", "port = 10587\n    haproxy = yes",
		"haproxy_trusted_networks = 127.0.0.0/8 ::1", "disable_plaintext_auth = no", "submission_relay_port = 2525",
		"first_valid_uid = 102", "ssl = no", "listen = 127.0.0.1",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q", want)
		}
	}
	if strings.Contains(conf, "!include") {
		t.Error("config must not include the packaged configuration")
	}
	if strings.Contains(conf, "sieve") {
		t.Error("config without ManageSieve mentions sieve")
	}

	p.SSL, p.CertFile, p.KeyFile, p.ListenAddress = true, "/lab/c.crt", "/lab/c.key", "::1"
	if b, err = renderConfig(p); err != nil {
		t.Fatal(err)
	}
	conf = string(b)
	for _, want := range []string{
		"ssl = yes\nssl_cert = </lab/c.crt\nssl_key = </lab/c.key\n", "listen = ::1\n", "address = ::1\n",
		"port = 10143\n    haproxy = yes\n    ssl = yes\n", "port = 10587\n    haproxy = yes\n    ssl = yes\n",
		"port = 10024\n    haproxy = yes\n  }", "port = 10144\n  }",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("TLS/IPv6 config lacks %q", want)
		}
	}
}

func TestRenderConfigManageSieve(t *testing.T) {
	p := configParams{ListenAddress: "127.0.0.1", ManageSieve: true, Ports: InstancePorts{ManageSieve: 14190}}
	b, err := renderConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	for _, want := range []string{
		"protocols = imap pop3 lmtp submission sieve\n",
		"inet_listener sieve {\n    address = 127.0.0.1\n    port = 14190\n    haproxy = yes\n  }",
		"sieve = file:~/sieve;active=~/.dovecot.sieve",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q", want)
		}
	}
}

func TestSplitRelay(t *testing.T) {
	tests := []struct {
		relay    string
		wantHost string
		wantPort int
		wantErr  bool
	}{
		{"", "127.0.0.1", 1, false},
		{"127.0.0.1:2525", "127.0.0.1", 2525, false},
		{"[::1]:25", "::1", 25, false},
		{"nope", "", 0, true},
		{"127.0.0.1:0", "", 0, true},
		{"127.0.0.1:x", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.relay, func(t *testing.T) {
			host, port, err := splitRelay(tt.relay)
			if host != tt.wantHost || port != tt.wantPort || (err != nil) != tt.wantErr {
				t.Errorf("got %q %d %v; want %q %d err=%v", host, port, err, tt.wantHost, tt.wantPort, tt.wantErr)
			}
		})
	}
}
