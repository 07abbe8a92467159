package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestCheckDovecotFlag: check --dovecot reports a mismatch with both keys
// and exits 1, is clean (exit 0) for a matching doveconf output, and
// refuses what is not doveconf output.
func TestCheckDovecotFlag(t *testing.T) {
	path := writeFile(t, "maildirector.toml", validConfig)
	good := writeFile(t, "good.txt", "# 2.3.19.1 (9b53102964): /etc/dovecot/dovecot.conf\ndisable_plaintext_auth = no\nhaproxy_trusted_networks = 127.0.0.0/8\nmail_nfs_storage = yes\nprotocols = imap\n"+
		"service imap-login {\n  inet_listener imap {\n    haproxy = yes\n    port = 10143\n  }\n  inet_listener imap2 {\n    haproxy = yes\n    port = 11143\n  }\n}\n")
	bad := writeFile(t, "bad.txt", strings.Replace(readFile(t, good), "127.0.0.0/8", "10.0.0.0/8", 1))
	garbage := writeFile(t, "garbage.txt", "}\n")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"clean", []string{"--dovecot", good}, 0, "OK: no mismatch with Dovecot 2.3.19.1"},
		{"mismatch", []string{"--dovecot", bad, "--source", "127.0.0.1"}, 1, `send_proxy = "v2-ssl" (maildirector connects from 127.0.0.1) <-> dovecot: haproxy_trusted_networks = 10.0.0.0/8 (line 3)`},
		{"source given", []string{"--dovecot", good, "--source", "10.9.9.9"}, 1, "(maildirector connects from 10.9.9.9)"},
		{"not doveconf output", []string{"--dovecot", garbage}, 1, "not doveconf output"},
		{"bad source", []string{"--dovecot", good, "--source", "x"}, 2, "--source"},
		{"stray argument", []string{"extra"}, 2, "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runMain(append([]string{"check", "-c", path}, tt.args...), &stdout, &stderr)
			if out := stdout.String() + stderr.String(); code != tt.code || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d, want %d with %q:\n%s", code, tt.code, tt.want, out)
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
