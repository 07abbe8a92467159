package integration

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// curl runs the curl binary (installed by scripts/deps.sh) from the
// client address the other tests use, and returns its output.
func curl(t *testing.T, args ...string) string {
	t.Helper()
	args = append([]string{"--silent", "--show-error", "--insecure", "--max-time", "20",
		"--interface", clientIP.String()}, args...)
	out, err := exec.Command("curl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestCurlPOP3AndSubmission drives maildirector with an ordinary mail
// client, curl: POP3 RETR over STLS and over implicit TLS of a message
// delivered to the user's server, and a submission over STARTTLS that
// reaches the relay with the right envelope.
func TestCurlPOP3AndSubmission(t *testing.T) {
	fes := append(submissionFrontends(),
		frontendSpec{Name: "pop3", Protocol: "pop3", TLS: "starttls"},
		frontendSpec{Name: "pop3s", Protocol: "pop3", TLS: "implicit"})
	e, sink := submissionEnv(t, setupSpec{Frontends: fes})
	const user = "user091"
	msg := "From: a@example.org\r\nTo: user091@lab.test\r\nSubject: curl\r\n\r\nfetched by curl\r\n"
	if err := e.instanceOf(e.hashServer(user)).Deliver(user, []byte(msg)); err != nil {
		t.Fatal(err)
	}

	for _, url := range []string{"pop3://" + e.addrs["pop3"] + "/1", "pop3s://" + e.addrs["pop3s"] + "/1"} {
		got := curl(t, "--ssl-reqd", "--user", user+":pass", url)
		if !strings.Contains(got, "fetched by curl") || !strings.Contains(got, "Subject: curl") {
			t.Errorf("curl %s (RETR 1): got %q, want the delivered message", url, got)
		}
	}

	body := "From: user091@lab.test\r\nTo: rcpt@example.org\r\nMessage-ID: <curl.user091@lab.test>\r\nSubject: via curl\r\n\r\nsubmitted by curl\r\n"
	cmd := exec.Command("curl", "--silent", "--show-error", "--insecure", "--max-time", "20",
		"--interface", clientIP.String(), "--ssl-reqd", "--user", user+":pass",
		"--mail-from", "user091@lab.test", "--mail-rcpt", "rcpt@example.org",
		"--upload-file", "-", "smtp://"+e.addrs["submission"])
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("curl submission: %v\n%s", err, out)
	}
	m := sinkMessage(t, sink, "curl.user091@lab.test")
	if m.From != "user091@lab.test" || !slices.Equal(m.To, []string{"rcpt@example.org"}) {
		t.Errorf("envelope at the relay: from %q to %q, want user091@lab.test to [rcpt@example.org]", m.From, m.To)
	}
	// Dovecot writes its log through its log process: wait (bounded).
	home := e.hashServer(user)
	eventually(t, "3 logins of "+user+" (2 POP3, 1 submission) on "+home, func() bool {
		logins := e.loginsOf(user)
		return len(logins) == 1 && logins[home] == 3
	})
}
