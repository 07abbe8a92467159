package sasl

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// Each fuzz target checks that its parser never panics, that every error
// wraps ErrMalformed (or ErrCanceled), and that what parses survives a
// round trip through the matching encoder.

func FuzzParsePlain(f *testing.F) {
	for _, s := range []string{
		"\x00tim\x00tanstaaftanstaaf",
		"Ursel\x00Kurt\x00xipj3plmq",
		"\x00jürgen\x00pässwörd",
		"\x00\x00",
		"a\x00b\x00c\x00d",
		strings.Repeat("a", 256) + "\x00b\x00c",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		c, err := ParsePlain(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got error %v, want one wrapping ErrMalformed", err)
			}
			return
		}
		again, err := ParsePlain(mustDecode(t, EncodePlain(c.Authzid, c.User, c.Password)))
		if err != nil || again != c {
			t.Fatalf("round trip: got (%s, %v), want (%s, nil)", plainFields(again), err, plainFields(c))
		}
	})
}

func FuzzParseXOAUTH2(f *testing.F) {
	for _, s := range []string{
		"user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01",
		"auth=bearer tok==\x01user=a=b\x01\x01",
		"user=bob\x01auth=Bearer tok\x01",
		"\x01\x01",
		"user=bob\x01user=bob\x01auth=Bearer t\x01\x01",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		c, err := ParseXOAUTH2(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got error %v, want one wrapping ErrMalformed", err)
			}
			return
		}
		if c.User == "" || c.Token == "" {
			t.Fatalf("got %s, want user and token set", plainFields(c))
		}
		again, err := ParseXOAUTH2(mustDecode(t, EncodeXOAUTH2(c.User, c.Token)))
		if err != nil || again != c {
			t.Fatalf("round trip: got (%s, %v), want (%s, nil)", plainFields(again), err, plainFields(c))
		}
	})
}

func FuzzParseOAuthBearer(f *testing.F) {
	for _, s := range []string{
		"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01",
		"n,,\x01auth=Bearer tok\x01\x01",
		"y,a=a=2Cb=3dc,\x01auth=Bearer tok\x01\x01",
		"p=tls-unique,a=bob,\x01auth=Bearer tok\x01\x01",
		"\x01",
		"n,a=ab=2,\x01auth=Bearer tok\x01\x01",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		c, err := ParseOAuthBearer(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("got error %v, want one wrapping ErrMalformed", err)
			}
			return
		}
		if c.Token == "" {
			t.Fatalf("got %s, want a token", plainFields(c))
		}
		again, err := ParseOAuthBearer(mustDecode(t, EncodeOAuthBearer(c.User, c.Token)))
		if err != nil || again != c {
			t.Fatalf("round trip: got (%s, %v), want (%s, nil)", plainFields(again), err, plainFields(c))
		}
	})
}

func FuzzDecodeResponse(f *testing.F) {
	for _, s := range []string{"AHRpbQB0YW5zdGFhZnRhbnN0YWFm", "=", "*", "", "Ym9i\r\n", "Ym9=", "Ym9i\nYm9i", "-_-_"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		b, err := DecodeResponse(line)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrCanceled) {
				t.Fatalf("got error %v, want ErrMalformed or ErrCanceled", err)
			}
			if b != nil {
				t.Fatalf("got %q with an error, want nil", b)
			}
			return
		}
		if b == nil {
			t.Fatal("got nil slice without error, want non-nil")
		}
		// Canonical base64 only: re-encoding gives the line back (without
		// its line ending; empty responses may be "" or "=").
		trimmed := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if len(b) == 0 {
			if trimmed != "" && trimmed != "=" {
				t.Fatalf("got empty response from %q, want it only from \"\" or \"=\"", line)
			}
			return
		}
		if enc := base64.StdEncoding.EncodeToString(b); enc != trimmed {
			t.Fatalf("re-encoded: got %q, want %q", enc, trimmed)
		}
	})
}
