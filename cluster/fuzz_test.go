package cluster

import (
	"strings"
	"testing"
)

// FuzzParseKey: any key under the prefix is parsed or refused, never a
// panic, and a parsed key is built again into the same string.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"a/imap/alice@example.org", "s/imap/mail1", "f/bob", "n/mx1", "a/imap/", "x/y", "a//u", "s/imap/a/b", "n/a/b", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := parseKey(s)
		if err != nil {
			return
		}
		parts := []string{k.kind}
		if k.backend != "" {
			parts = append(parts, k.backend)
		}
		parts = append(parts, k.name)
		if got := strings.Join(parts, "/"); got != s {
			t.Fatalf("parseKey(%q) = %+v, which builds %q", s, k, got)
		}
		if k.name == "" || (k.kind != kindFrozen && k.kind != kindNode && k.backend == "") {
			t.Fatalf("parseKey(%q) = %+v: empty part", s, k)
		}
	})
}

// FuzzDecodeAssignment: any value is decoded or refused; a decoded one
// names a server without '/'.
func FuzzDecodeAssignment(f *testing.F) {
	for _, s := range []string{`{"s":"mail1","m":true,"n":"mx1","b":29000000}`, `{"s":""}`, `{"s":"a/b"}`, `null`, `{`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := decodeAssignment(b)
		if err == nil && (a.Server == "" || strings.Contains(a.Server, "/")) {
			t.Fatalf("decodeAssignment(%q) = %+v, nil", b, a)
		}
	})
}
