package rsasign

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
)

// Keys that are fast in Go are never wrapped, in any build.
func TestWrapLeavesOtherKeys(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if got := Wrap(ec); got != any(ec) {
		t.Errorf("Wrap(ECDSA key) = %T, want the key itself", got)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := Wrap(ed).(ed25519.PrivateKey); !ok || !got.Equal(ed) {
		t.Errorf("Wrap(Ed25519 key) = %T, want the key itself", Wrap(ed))
	}
}
