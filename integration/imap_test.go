package integration

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
)

func imapFrontends() []frontendSpec {
	return []frontendSpec{
		{Name: "imap", Protocol: "imap", TLS: "starttls", Plaintext: "allow"},
		{Name: "imaps", Protocol: "imap", TLS: "implicit"},
		{Name: "imaptls", Protocol: "imap", TLS: "starttls", Plaintext: "deny"},
	}
}

// TestIMAPUsersLandOnTheirServer logs 200 users in through maildirector: each
// must land on the server the director's hash names, every time, also after
// maildirector restarts; Dovecot must see the real client address.
func TestIMAPUsersLandOnTheirServer(t *testing.T) {
	e := startEnv(t, setupSpec{Instances: 3, Frontends: imapFrontends()})
	users := make([]string, 200)
	for i := range users {
		users[i] = fmt.Sprintf("user%03d", i)
	}
	loginAll := func() {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for _, u := range users {
			wg.Add(1)
			sem <- struct{}{}
			go func(u string) {
				defer wg.Done()
				defer func() { <-sem }()
				r := greeted(t, e.addrs["imap"])
				r.login(u)
				r.logout()
			}(u)
		}
		wg.Wait()
	}
	loginAll()
	e.restart()
	loginAll()
	// Dovecot writes its log through its log process: wait (bounded) until
	// all 400 login lines are there.
	eventually(t, "400 login lines", func() bool {
		n := 0
		for _, in := range e.lab.Instances {
			logins, _ := in.Logins()
			n += len(logins)
		}
		return n >= 2*len(users)
	})

	perServer := make(map[string]int)
	for _, u := range users {
		want := e.hashServer(u)
		got := e.loginsOf(u)
		if got[want] != 2 || len(got) != 1 {
			t.Errorf("%s: logins per server %v, want 2 on %s only", u, got, want)
		}
		perServer[want]++
	}
	t.Logf("users per server: %v", perServer)

	for i, in := range e.lab.Instances {
		logins, err := in.Logins()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range logins {
			if l.RemoteIP != clientIP.String() {
				t.Errorf("%s logged rip=%s for %s, want the client's %s", serverName(i), l.RemoteIP, l.User, clientIP)
			}
			if l.Secured {
				t.Errorf("%s logged a plaintext client as secured: %+v", serverName(i), l)
			}
		}
	}
}

// TestIMAPTLSStateReachesDovecot: a client on STARTTLS or implicit TLS to
// maildirector is "secured" in Dovecot's log although the backend leg is
// plaintext (PROXY v2 SSL TLV); a plaintext client is not.
func TestIMAPTLSStateReachesDovecot(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: imapFrontends()})
	tests := []struct {
		name    string
		user    string
		connect func() *rawIMAP
		secured bool
	}{
		{"plaintext", "user010", func() *rawIMAP { return greeted(t, e.addrs["imap"]) }, false},
		{"starttls", "user011", func() *rawIMAP { r := greeted(t, e.addrs["imap"]); r.starttls(); return r }, true},
		{"implicit tls", "user012", func() *rawIMAP { return greetedTLS(t, e.addrs["imaps"]) }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.connect()
			clientPort := r.c.LocalAddr().(*net.TCPAddr).Port
			r.login(tt.user)
			r.logout()
			in := e.instanceOf(e.hashServer(tt.user))
			eventually(t, "the login line of "+tt.user, func() bool { return e.loginsOf(tt.user)[in.Name] > 0 })
			logins, err := in.Logins()
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, l := range logins {
				if l.User != tt.user {
					continue
				}
				found = true
				if l.Secured != tt.secured {
					t.Errorf("Dovecot's login line secured=%v, want %v: %+v", l.Secured, tt.secured, l)
				}
				if l.RemoteIP != clientIP.String() || l.RemotePort != clientPort {
					t.Errorf("rip/rport: got %s:%d, want the client's %s:%d", l.RemoteIP, l.RemotePort, clientIP, clientPort)
				}
			}
			if !found {
				t.Fatalf("no login of %s in %s's log", tt.user, in.Name)
			}
		})
	}
}

// TestIMAPPlaintextLoginRefused: on a frontend that refuses plaintext
// logins, a plaintext client sees LOGINDISABLED and a clear NO; after
// STARTTLS it logs in.
func TestIMAPPlaintextLoginRefused(t *testing.T) {
	e := startEnv(t, setupSpec{Frontends: imapFrontends()})
	r := greeted(t, e.addrs["imaptls"])
	untagged, tagged := r.cmd("a", "CAPABILITY")
	caps := strings.Join(untagged, " ")
	if !strings.Contains(caps, "LOGINDISABLED") || !strings.Contains(caps, "STARTTLS") {
		t.Errorf("CAPABILITY before TLS: got %q, want LOGINDISABLED and STARTTLS", caps)
	}
	if !strings.HasPrefix(tagged, "a OK") {
		t.Errorf("CAPABILITY: got %q", tagged)
	}
	if _, tagged := r.cmd("b", "LOGIN user020 pass"); !strings.HasPrefix(tagged, "b NO") {
		t.Errorf("plaintext LOGIN: got %q, want NO", tagged)
	}
	r.starttls()
	untagged, _ = r.cmd("c", "CAPABILITY")
	caps = strings.Join(untagged, " ")
	if strings.Contains(caps, "LOGINDISABLED") || strings.Contains(caps, "STARTTLS") {
		t.Errorf("CAPABILITY after TLS: got %q, want neither LOGINDISABLED nor STARTTLS", caps)
	}
	r.login("user020")
	r.logout()
}
