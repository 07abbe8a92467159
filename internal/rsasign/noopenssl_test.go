//go:build !(openssl && cgo && linux)

package rsasign

import (
	"crypto/rand"
	"crypto/rsa"
	"testing"
)

// Without the openssl build, RSA keys stay Go's and Engine says so.
func TestWithoutOpenSSL(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if got := Wrap(k); got != any(k) {
		t.Errorf("Wrap(RSA key) = %T, want the key itself", got)
	}
	if got := Engine(); got != "go" {
		t.Errorf("Engine() = %q, want go", got)
	}
}
