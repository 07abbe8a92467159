//go:build !(openssl && cgo && linux)

package rsasign

import "crypto"

func wrap(crypto.PrivateKey) crypto.Signer { return nil }

func engine() string { return "go" }
