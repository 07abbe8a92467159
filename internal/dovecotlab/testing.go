package dovecotlab

import "testing"

// StartT starts a lab for a test: it fails the test when Start fails and
// registers Close with t.Cleanup, so the instances stop even when the test
// fails.
func StartT(t testing.TB, opts Options) *Lab {
	t.Helper()
	l, err := Start(opts)
	if err != nil {
		t.Fatalf("start dovecot lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close dovecot lab: %v", err)
		}
	})
	return l
}
