package sasl

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// mustDecode decodes standard base64 or fails the test.
func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("decode %q: %v", s, err)
	}
	return b
}

// parserCase is one row of a parser table: want is compared only when
// wantErr is false.
type parserCase struct {
	name    string
	msg     string
	want    Credentials
	wantErr bool
}

// runParserCases runs a parser table.
func runParserCases(t *testing.T, parse func([]byte) (Credentials, error), tests []parserCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parse([]byte(tt.msg))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("got (%v, %v), want an error wrapping ErrMalformed", got, err)
				}
				if got != (Credentials{}) {
					t.Errorf("got credentials %#v with an error, want zero Credentials", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %v", err, tt.want)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", plainFields(got), plainFields(tt.want))
			}
		})
	}
}

// plainFields renders every field of c, secrets included, for test failure
// messages only (String deliberately hides them).
func plainFields(c Credentials) string {
	return fmt.Sprintf("{Mechanism:%q Authzid:%q User:%q Password:%q Token:%q}", c.Mechanism, c.Authzid, c.User, c.Password, c.Token)
}

func TestParsePlain(t *testing.T) {
	f255 := strings.Repeat("a", 255)
	f256 := strings.Repeat("a", 256)
	plain := func(authzid, user, pass string) Credentials {
		return Credentials{Mechanism: MechPlain, Authzid: authzid, User: user, Password: pass}
	}
	runParserCases(t, ParsePlain, []parserCase{
		{"RFC 4616 example without authzid", "\x00tim\x00tanstaaftanstaaf", plain("", "tim", "tanstaaftanstaaf"), false},
		{"RFC 4616 example with authzid", "Ursel\x00Kurt\x00xipj3plmq", plain("Ursel", "Kurt", "xipj3plmq"), false},
		{"authzid equals authcid", "bob\x00bob\x00pw", plain("bob", "bob", "pw"), false},
		{"UTF-8 names and password", "\x00jürgen@例え.jp\x00pässwörd", plain("", "jürgen@例え.jp", "pässwörd"), false},
		{"8-bit password accepted", "\x00bob\x00p\xe4ss", plain("", "bob", "p\xe4ss"), false},
		{"password with spaces", "\x00bob\x00 a b ", plain("", "bob", " a b "), false},
		{"255-octet fields", f255 + "\x00" + f255 + "\x00" + f255, plain(f255, f255, f255), false},
		{"256-octet authzid", f256 + "\x00bob\x00pw", Credentials{}, true},
		{"256-octet authcid", "\x00" + f256 + "\x00pw", Credentials{}, true},
		{"256-octet password", "\x00bob\x00" + f256, Credentials{}, true},
		{"empty message", "", Credentials{}, true},
		{"no NUL", "bobpw", Credentials{}, true},
		{"one NUL", "bob\x00pw", Credentials{}, true},
		{"empty authcid", "\x00\x00pw", Credentials{}, true},
		{"empty password", "\x00bob\x00", Credentials{}, true},
		{"only NULs", "\x00\x00", Credentials{}, true},
		{"NUL inside password", "\x00bob\x00p\x00w", Credentials{}, true},
		{"trailing NUL", "\x00bob\x00pw\x00", Credentials{}, true},
		{"trailing garbage after extra NUL", "\x00bob\x00pw\x00garbage", Credentials{}, true},
		{"invalid UTF-8 authcid", "\x00b\xffob\x00pw", Credentials{}, true},
		{"invalid UTF-8 authzid", "\xc3\x00bob\x00pw", Credentials{}, true},
	})
}

func TestParseLogin(t *testing.T) {
	tests := []struct {
		name     string
		user, pw string
		wantErr  bool
	}{
		{"plain", "bob", "secret", false},
		{"UTF-8 user", "jürgen", "pässwörd", false},
		{"empty user", "", "secret", true},
		{"empty password", "bob", "", true},
		{"NUL in user", "b\x00b", "secret", true},
		{"NUL in password", "bob", "s\x00", true},
		{"256-octet user", strings.Repeat("u", 256), "secret", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLogin([]byte(tt.user), []byte(tt.pw))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("got (%v, %v), want ErrMalformed", got, err)
				}
				return
			}
			want := Credentials{Mechanism: MechLogin, User: tt.user, Password: tt.pw}
			if err != nil || got != want {
				t.Errorf("got (%s, %v), want (%s, nil)", plainFields(got), err, plainFields(want))
			}
		})
	}
}

func TestLoginPrompts(t *testing.T) {
	if got := string(mustDecode(t, LoginUserPrompt)); got != "Username:" {
		t.Errorf("LoginUserPrompt decodes to %q, want %q", got, "Username:")
	}
	if got := string(mustDecode(t, LoginPasswordPrompt)); got != "Password:" {
		t.Errorf("LoginPasswordPrompt decodes to %q, want %q", got, "Password:")
	}
}

func TestEncodePlainRoundTrip(t *testing.T) {
	tests := []struct {
		name                    string
		authzid, user, password string
	}{
		{"no authzid", "", "bob", "secret"},
		{"with authzid", "admin", "bob", "secret"},
		{"UTF-8", "", "jürgen@例え.jp", "pässwörd"},
		{"255-octet fields", strings.Repeat("z", 255), strings.Repeat("u", 255), strings.Repeat("p", 255)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc := EncodePlain(tt.authzid, tt.user, tt.password)
			msg, err := DecodeResponse(enc)
			if err != nil {
				t.Fatalf("DecodeResponse(EncodePlain(...)): %v", err)
			}
			got, err := ParsePlain(msg)
			if err != nil {
				t.Fatalf("ParsePlain: %v", err)
			}
			want := Credentials{Mechanism: MechPlain, Authzid: tt.authzid, User: tt.user, Password: tt.password}
			if got != want {
				t.Errorf("got %s, want %s", plainFields(got), plainFields(want))
			}
		})
	}
	// RFC 4616 section 4 example, byte for byte.
	if got, want := EncodePlain("", "tim", "tanstaaftanstaaf"), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"; got != want {
		t.Errorf("EncodePlain(RFC 4616 example): got %q, want %q", got, want)
	}
}

func TestParseXOAUTH2(t *testing.T) {
	x := func(user, token string) Credentials {
		return Credentials{Mechanism: MechXOAUTH2, User: user, Token: token}
	}
	runParserCases(t, ParseXOAUTH2, []parserCase{
		{"Google example", "user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01",
			x("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"), false},
		{"pairs in other order", "auth=Bearer tok\x01user=bob\x01\x01", x("bob", "tok"), false},
		{"scheme case-insensitive", "user=bob\x01auth=bearer tok\x01\x01", x("bob", "tok"), false},
		{"several spaces after scheme", "user=bob\x01auth=Bearer   tok==\x01\x01", x("bob", "tok=="), false},
		{"UTF-8 user", "user=jürgen@例え.jp\x01auth=Bearer a-b.c_d~e+f/g=\x01\x01", x("jürgen@例え.jp", "a-b.c_d~e+f/g="), false},
		{"user with =", "user=a=b\x01auth=Bearer tok\x01\x01", x("a=b", "tok"), false},
		{"unknown pair ignored", "user=bob\x01host=imap.example.com\x01auth=Bearer tok\x01\x01", x("bob", "tok"), false},
		{"missing final ^A^A", "user=bob\x01auth=Bearer tok", Credentials{}, true},
		{"missing one final ^A", "user=bob\x01auth=Bearer tok\x01", Credentials{}, true},
		{"trailing garbage", "user=bob\x01auth=Bearer tok\x01\x01garbage", Credentials{}, true},
		{"three final ^A", "user=bob\x01auth=Bearer tok\x01\x01\x01", Credentials{}, true},
		{"missing user", "auth=Bearer tok\x01\x01", Credentials{}, true},
		{"missing auth", "user=bob\x01\x01", Credentials{}, true},
		{"empty user", "user=\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"256-octet user", "user=" + strings.Repeat("u", 256) + "\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"empty token", "user=bob\x01auth=Bearer \x01\x01", Credentials{}, true},
		{"only padding token", "user=bob\x01auth=Bearer ==\x01\x01", Credentials{}, true},
		{"token with space", "user=bob\x01auth=Bearer to ken\x01\x01", Credentials{}, true},
		{"token with padding inside", "user=bob\x01auth=Bearer to=ken\x01\x01", Credentials{}, true},
		{"not Bearer", "user=bob\x01auth=Basic Ym9iOnB3\x01\x01", Credentials{}, true},
		{"no scheme separator", "user=bob\x01auth=Bearertok\x01\x01", Credentials{}, true},
		{"repeated user", "user=bob\x01user=eve\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"pair without =", "user=bob\x01junk\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"empty key", "=x\x01user=bob\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"empty message", "", Credentials{}, true},
		{"only ^A^A", "\x01\x01", Credentials{}, true},
	})
}

func TestParseOAuthBearer(t *testing.T) {
	ob := func(user, token string) Credentials {
		return Credentials{Mechanism: MechOAuthBearer, User: user, Token: token}
	}
	runParserCases(t, ParseOAuthBearer, []parserCase{
		{"RFC 7628 section 4.1 example", "n,a=user@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01",
			ob("user@example.com", "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="), false},
		{"only auth pair", "n,a=bob,\x01auth=Bearer tok\x01\x01", ob("bob", "tok"), false},
		{"no authzid", "n,,\x01auth=Bearer tok\x01\x01", ob("", "tok"), false},
		{"y flag", "y,a=bob,\x01auth=Bearer tok\x01\x01", ob("bob", "tok"), false},
		{"escaped comma and equals", "n,a=a=2Cb=3Dc,\x01auth=Bearer tok\x01\x01", ob("a,b=c", "tok"), false},
		{"lower-case escapes", "n,a=a=2cb=3dc,\x01auth=Bearer tok\x01\x01", ob("a,b=c", "tok"), false},
		{"escape yields literal =2C", "n,a==3D2C,\x01auth=Bearer tok\x01\x01", ob("=2C", "tok"), false},
		{"UTF-8 authzid", "n,a=jürgen@例え.jp,\x01auth=Bearer tok\x01\x01", ob("jürgen@例え.jp", "tok"), false},
		{"value with space and tab", "n,a=bob,\x01mfa=a b\tc\x01auth=Bearer tok\x01\x01", ob("bob", "tok"), false},
		{"error acknowledgement", "\x01", Credentials{}, true},
		{"no kvsep at all", "n,a=bob,", Credentials{}, true},
		{"header without pairs", "n,a=bob,\x01\x01", Credentials{}, true},
		{"header only kvsep", "n,a=bob,\x01", Credentials{}, true},
		{"missing auth", "n,a=bob,\x01host=h\x01\x01", Credentials{}, true},
		{"missing final ^A^A", "n,a=bob,\x01auth=Bearer tok", Credentials{}, true},
		{"missing one final ^A", "n,a=bob,\x01auth=Bearer tok\x01", Credentials{}, true},
		{"trailing garbage", "n,a=bob,\x01auth=Bearer tok\x01\x01x", Credentials{}, true},
		{"channel binding", "p=tls-unique,a=bob,\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"unknown cb flag", "x,a=bob,\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"non-standard flag", "F,n,a=bob,\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"header without final comma", "n,a=bob\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"header with one comma", "n,\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"authzid without a=", "n,bob,\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"empty saslname", "n,a=,\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"raw = in saslname", "n,a=a=b,\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"truncated escape", "n,a=ab=2,\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"invalid UTF-8 authzid", "n,a=b\xffb,\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"NUL in authzid", "n,a=b\x00b,\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"256-octet authzid", "n,a=" + strings.Repeat("u", 256) + ",\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"control character in value", "n,a=bob,\x01host=a\x02b\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"8-bit value", "n,a=bob,\x01host=\xc3\xa9\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"repeated auth", "n,a=bob,\x01auth=Bearer a\x01auth=Bearer b\x01\x01", Credentials{}, true},
		{"key with digit", "n,a=bob,\x01k1=v\x01auth=Bearer tok\x01\x01", Credentials{}, true},
		{"bad token", "n,a=bob,\x01auth=Bearer t*k\x01\x01", Credentials{}, true},
		{"empty message", "", Credentials{}, true},
	})
}

func TestEncodeOAuthRoundTrip(t *testing.T) {
	tests := []struct {
		name        string
		user, token string
	}{
		{"plain user", "bob@example.com", "ya29.abc-DEF_ghi~"},
		{"user needing escapes", "a,b=c", "tok=="},
		{"UTF-8 user", "jürgen@例え.jp", "tok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := ParseXOAUTH2(mustDecode(t, EncodeXOAUTH2(tt.user, tt.token)))
			if want := (Credentials{Mechanism: MechXOAUTH2, User: tt.user, Token: tt.token}); err != nil || x != want {
				t.Errorf("XOAUTH2: got (%s, %v), want (%s, nil)", plainFields(x), err, plainFields(want))
			}
			ob, err := ParseOAuthBearer(mustDecode(t, EncodeOAuthBearer(tt.user, tt.token)))
			if want := (Credentials{Mechanism: MechOAuthBearer, User: tt.user, Token: tt.token}); err != nil || ob != want {
				t.Errorf("OAUTHBEARER: got (%s, %v), want (%s, nil)", plainFields(ob), err, plainFields(want))
			}
		})
	}
	if got, want := string(mustDecode(t, EncodeOAuthBearer("", "tok"))), "n,,\x01auth=Bearer tok\x01\x01"; got != want {
		t.Errorf("EncodeOAuthBearer without user: got %q, want %q", got, want)
	}
}

func TestDecodeResponse(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    []byte
		wantErr error
	}{
		{"PLAIN response", "AHRpbQB0YW5zdGFhZnRhbnN0YWFm", []byte("\x00tim\x00tanstaaftanstaaf"), nil},
		{"one padding", "Ym9icw==", []byte("bobs"), nil},
		{"CRLF stripped", "Ym9i\r\n", []byte("bob"), nil},
		{"LF stripped", "Ym9i\n", []byte("bob"), nil},
		{"equals sign is empty", "=", []byte{}, nil},
		{"equals sign with CRLF", "=\r\n", []byte{}, nil},
		{"empty line is empty", "", []byte{}, nil},
		{"star cancels", "*", nil, ErrCanceled},
		{"star with CRLF cancels", "*\r\n", nil, ErrCanceled},
		{"star with more", "**", nil, ErrMalformed},
		{"missing padding", "Ym9icw", nil, ErrMalformed},
		{"non-canonical trailing bits", "Ym9=", nil, ErrMalformed},
		{"URL alphabet", "-_-_", nil, ErrMalformed},
		{"embedded LF", "Ym9i\nYm9i", nil, ErrMalformed},
		{"embedded CR", "Ym\r9i", nil, ErrMalformed},
		{"space", "Ym9i ", nil, ErrMalformed},
		{"leading space", " Ym9i", nil, ErrMalformed},
		{"padding in the middle", "Yg==Ym9i", nil, ErrMalformed},
		{"two equals", "==", nil, ErrMalformed},
		{"8-bit", "Ym9\xffi", nil, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeResponse(tt.line)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("DecodeResponse(%q): got (%q, %v), want error %v", tt.line, got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeResponse(%q): got error %v, want %q", tt.line, err, tt.want)
			}
			if !bytes.Equal(got, tt.want) || got == nil {
				t.Errorf("DecodeResponse(%q): got %#v, want %#v", tt.line, got, tt.want)
			}
		})
	}
}

// TestCredentialsNeverLeak prints Credentials every way a log line might and
// checks that no secret shows up.
func TestCredentialsNeverLeak(t *testing.T) {
	const secret = "hunter2-s3cr3t"
	creds := []Credentials{
		{Mechanism: MechPlain, Authzid: "admin", User: "bob", Password: secret},
		{Mechanism: MechLogin, User: "bob", Password: secret},
		{Mechanism: MechXOAUTH2, User: "bob", Token: secret},
		{Mechanism: MechOAuthBearer, User: "bob", Token: secret},
	}
	for _, c := range creds {
		t.Run(c.Mechanism, func(t *testing.T) {
			var logged bytes.Buffer
			for _, h := range []slog.Handler{slog.NewTextHandler(&logged, nil), slog.NewJSONHandler(&logged, nil)} {
				slog.New(h).Info("login", "creds", c, "ptr", &c)
			}
			outputs := map[string]string{
				"String":   c.String(),
				"%v":       fmt.Sprintf("%v", c),
				"%+v":      fmt.Sprintf("%+v", c),
				"%#v":      fmt.Sprintf("%#v", c),
				"%s":       fmt.Sprintf("%s", c),
				"%q":       fmt.Sprintf("%q", c),
				"%v ptr":   fmt.Sprintf("%v", &c),
				"%#v ptr":  fmt.Sprintf("%#v", &c),
				"%v slice": fmt.Sprintf("%v", []Credentials{c}),
				"slog":     logged.String(),
			}
			for how, out := range outputs {
				if strings.Contains(out, secret) {
					t.Errorf("%s: got %q, want no secret in it", how, out)
				}
				if !strings.Contains(out, "bob") {
					t.Errorf("%s: got %q, want the user name in it", how, out)
				}
			}
		})
	}
	if got, want := creds[0].String(), `mechanism=PLAIN user="bob" authzid="admin"`; got != want {
		t.Errorf("String: got %q, want %q", got, want)
	}
	if got, want := creds[2].String(), `mechanism=XOAUTH2 user="bob"`; got != want {
		t.Errorf("String: got %q, want %q", got, want)
	}
}

// TestErrorsNeverQuoteInput checks that parse errors name the broken rule
// without echoing message content, which may hold a password.
func TestErrorsNeverQuoteInput(t *testing.T) {
	const secret = "hunter2"
	inputs := []struct {
		name string
		err  error
	}{
		{"plain", func() error { _, err := ParsePlain([]byte("\x00bob\x00" + secret + "\x00")); return err }()},
		{"plain long", func() error { _, err := ParsePlain([]byte("\x00bob\x00" + strings.Repeat(secret, 40))); return err }()},
		{"xoauth2", func() error {
			_, err := ParseXOAUTH2([]byte("user=bob\x01auth=Bearer " + secret + "!\x01\x01"))
			return err
		}()},
		{"oauthbearer", func() error {
			_, err := ParseOAuthBearer([]byte("n,a=bob,\x01auth=Bearer " + secret + "!\x01\x01"))
			return err
		}()},
		{"decode", func() error {
			_, err := DecodeResponse(base64.StdEncoding.EncodeToString([]byte(secret)) + "!")
			return err
		}()},
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) {
			if in.err == nil {
				t.Fatal("got nil error, want one")
			}
			if msg := in.err.Error(); strings.Contains(msg, secret) || strings.Contains(msg, base64.StdEncoding.EncodeToString([]byte(secret))) {
				t.Errorf("got error %q, want no input in it", msg)
			}
		})
	}
}

func TestRoutingUser(t *testing.T) {
	tests := []struct {
		name string
		c    Credentials
		want string
	}{
		{"plain user", Credentials{User: "alice"}, "alice"},
		{"master user acting as alice", Credentials{Authzid: "alice", User: "master"}, "alice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.RoutingUser(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
