package archtest

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/maildirector/maildirector/"

// forbidden lists, per package (relative to the module), the packages of
// the module it must not import, directly or not. A trailing "/" matches a
// whole subtree.
var forbidden = map[string][]string{
	"config":                  {""},
	"director":                {""},
	"cluster":                 {"proxy", "protocols/", "config", "checks", "stats", "cmd/", "internal/"},
	"checks":                  {"director", "proxy", "protocols/", "config", "cmd/", "internal/dovecotlab", "internal/smtpsink"}, // internal/mailwire only
	"tlsutil":                 {""},
	"route":                   {""},
	"protocols/internal/sasl": {""},
	"internal/mailwire":       {""},
	"internal/logsink":        {""},
	"internal/doveadm":        {""},
	"internal/haproxycfg":     {""},
	"internal/rsasign":        {""},
	"internal/doveconf":       {"proxy", "protocols/", "director", "checks", "stats", "tlsutil", "cmd/", "internal/"},
	"proxy":                   {"protocols/", "director", "checks", "config", "stats"},
	"protocols/imap":          {"director", "checks", "config", "protocols/lmtp", "protocols/pop3", "protocols/submission", "protocols/tcp", "protocols/http"},
	"protocols/lmtp":          {"director", "checks", "config", "protocols/imap", "protocols/pop3", "protocols/submission", "protocols/tcp", "protocols/http"},
	"protocols/pop3":          {"director", "checks", "config", "protocols/imap", "protocols/lmtp", "protocols/submission", "protocols/tcp", "protocols/http"},
	"protocols/submission":    {"director", "checks", "config", "protocols/imap", "protocols/lmtp", "protocols/pop3", "protocols/tcp", "protocols/http"},
	"stats":                   {"protocols/", "config", "cmd/"},
	"protocols/tcp":           {"director", "checks", "config", "protocols/imap", "protocols/lmtp", "protocols/pop3", "protocols/submission", "protocols/http"},
	"protocols/http":          {"director", "checks", "config", "stats", "protocols/imap", "protocols/lmtp", "protocols/pop3", "protocols/submission", "protocols/tcp"},
	"protocols/managesieve":   {"director", "checks", "config", "protocols/imap", "protocols/lmtp", "protocols/pop3", "protocols/submission", "protocols/tcp", "protocols/http"},
}

type pkg struct {
	ImportPath string
	Deps       []string
}

func TestImportRules(t *testing.T) {
	// With the openssl tag: it only adds files (internal/rsasign's cgo
	// signer), whose imports the rules must see too.
	cmd := exec.Command("go", "list", "-deps=false", "-tags", "openssl", "-json", module+"...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(p.ImportPath, module)
		rules, ok := forbidden[rel]
		if !ok {
			continue
		}
		seen++
		for _, dep := range p.Deps {
			if !strings.HasPrefix(dep, module) {
				continue
			}
			d := strings.TrimPrefix(dep, module)
			for _, f := range rules {
				if f == "" || d == f || (strings.HasSuffix(f, "/") && strings.HasPrefix(d, f)) {
					t.Errorf("%s imports %s, which ARCHITECTURE.md forbids", rel, d)
				}
			}
		}
	}
	if seen != len(forbidden) {
		t.Errorf("checked %d packages, want %d: a package was renamed?", seen, len(forbidden))
	}
}

// TestOtherPlatformsFailWithStatedConstraint: maildirector's relay is
// Linux-only (epoll, splice). On another system the build must fail with
// the named constraint, never with a stray undefined identifier.
func TestOtherPlatformsFailWithStatedConstraint(t *testing.T) {
	for _, goos := range []string{"darwin", "freebsd"} {
		cmd := exec.Command("go", "vet", "./...")
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "GOOS="+goos, "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err == nil {
			continue // it builds there: fine too
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if strings.HasPrefix(line, "#") || strings.Contains(line, "maildirector_requires_linux") {
				continue
			}
			t.Errorf("GOOS=%s go vet: %s (want only the stated constraint maildirector_requires_linux)", goos, line)
		}
	}
}
