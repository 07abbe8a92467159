package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWhereRoutes: where names, per frontend with rules, the backend the
// rules choose for a user, the rule and what matched, and the server; the
// context flags decide the rules on how the client connects, which are
// listed as "unless" when not given.
func TestWhereRoutes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "md.toml")
	if err := os.WriteFile(path, []byte(routedConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
		not  []string
	}{
		{"domain", []string{"bob@b.example"}, []string{"frontend imap        backend mail-b       server s", "by route[0] (domain b.example)"}, []string{"unless"}},
		{"default with unless", []string{"ann@a.example"}, []string{
			"by default",
			"unless route[1] (sni imap.b.example) → backend mail-b",
			"unless route[2] (local :10143) → backend mail-b",
			"unless route[3] (client 10.0.0.0/8) → backend mail-b",
		}, nil},
		{"local given", []string{"--frontend", "imap", "--local", "127.0.0.1:10143", "--client", "192.0.2.1", "ann@a.example"},
			[]string{"backend mail-b", "by route[2] (local :10143)", "unless route[1] (sni"}, []string{"route[3]", "backend mail-a       server"}},
		{"all given", []string{"--frontend", "imap", "--sni", "imap.a.example", "--local", "127.0.0.1:143", "--client", "192.0.2.1", "ann@a.example"},
			[]string{"backend mail-a", "by default"}, []string{"unless"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := runMain(append([]string{"where", "-c", path}, tc.args...), &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			out := stdout.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("got\n%s\nwant %q in it", out, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("got\n%s\nwant no %q in it", out, n)
				}
			}
		})
	}
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"where", "-c", path, "--frontend", "nope", "ann"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), `no frontend "nope"`) {
		t.Errorf("unknown frontend: exit %d, %q; want 2 naming it", code, stderr.String())
	}
	if code := runMain([]string{"where", "-c", path, "--local", "x", "ann"}, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--local") {
		t.Errorf("bad --local: exit %d, %q; want 2 naming it", code, stderr.String())
	}
}
