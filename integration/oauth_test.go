package integration

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

// introspector is a small OAuth 2.0 token introspection endpoint (RFC
// 7662 section 2): POST token=... answers {"active": true, "username":
// ...} for the tokens it knows, {"active": false} for the others.
func introspector(t *testing.T, tokens map[string]string) (*httptest.Server, *atomic.Int64) {
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if user, ok := tokens[r.PostForm.Get("token")]; ok {
			json.NewEncoder(w).Encode(map[string]any{"active": true, "username": user})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"active": false})
	}))
	t.Cleanup(srv.Close)
	return srv, &calls
}

// TestOAuthBearerAndXOAUTH2 logs in through maildirector with OAUTHBEARER
// (RFC 7628) and XOAUTH2 against real Dovecot whose oauth2 passdb asks a
// token introspection server the test runs: each user lands on the server
// the director places them on, Dovecot logs the mechanism, and a token the
// introspection does not know is refused.
func TestOAuthBearerAndXOAUTH2(t *testing.T) {
	ins, calls := introspector(t, map[string]string{"tok-user031": "user031", "tok-user032": "user032"})
	e := startEnv(t, setupSpec{
		Frontends: []frontendSpec{{Name: "imap", Protocol: "imap", Plaintext: "allow"}},
		Check:     "imap",
		Lab:       dovecotlab.Options{OAuth2URL: ins.URL},
	})
	b64 := base64.StdEncoding.EncodeToString
	eventually(t, "the frontend to offer OAUTHBEARER (learned from the servers' CAPABILITY)", func() bool {
		r := greetedFrom(t, clientIP, e.addrs["imap"])
		defer r.c.Close()
		caps, _ := r.cmd("c", "CAPABILITY")
		return strings.Contains(strings.Join(caps, " "), "AUTH=OAUTHBEARER")
	})

	for _, tt := range []struct {
		user, mech, resp string
	}{
		// RFC 7628 section 3.1: gs2 header with the authzid, then auth=Bearer.
		{"user031", "OAUTHBEARER", b64([]byte("n,a=user031,\x01auth=Bearer tok-user031\x01\x01"))},
		{"user032", "XOAUTH2", b64([]byte("user=user032\x01auth=Bearer tok-user032\x01\x01"))},
	} {
		r := greetedFrom(t, clientIP, e.addrs["imap"])
		if _, tagged := r.cmd("a", "AUTHENTICATE "+tt.mech+" "+tt.resp); !strings.HasPrefix(tagged, "a OK") {
			t.Fatalf("%s as %s: %q, want OK", tt.mech, tt.user, tagged)
		}
		r.selectInbox()
		server, login := e.landedOnce(t, tt.user)
		if want := e.hashServer(tt.user); server != want {
			t.Errorf("%s landed on %s, want %s (where the director places the user)", tt.user, server, want)
		}
		if login.Method != tt.mech {
			t.Errorf("%s: Dovecot logged method %q, want %s", tt.user, login.Method, tt.mech)
		}
		r.logout()
	}
	if calls.Load() < 2 {
		t.Errorf("the introspection endpoint was asked %d times, want at least 2", calls.Load())
	}

	r := greetedFrom(t, clientIP, e.addrs["imap"])
	bad := b64([]byte("n,a=user033,\x01auth=Bearer forged\x01\x01"))
	if _, tagged := r.cmd("b", "AUTHENTICATE OAUTHBEARER "+bad); !strings.HasPrefix(tagged, "b NO") {
		t.Errorf("an unknown token: %q, want NO", tagged)
	}
}
