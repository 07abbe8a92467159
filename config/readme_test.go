package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestReadmeHTTPTranslationLoads: the README's translation of Dovecot's
// documented HAProxy setup for object storage loads, and says what the
// HAProxy file says.
func TestReadmeHTTPTranslationLoads(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- the HAProxy translation: config/readme_test.go loads the next block -->\n```toml\n")
	block, _, closed := strings.Cut(rest, "```")
	if !ok || !closed {
		t.Fatal("README: no TOML block after the HAProxy translation's marker")
	}
	c := mustParse(t, block)
	f := c.Frontends["scality_in"]
	if f == nil || f.Protocol != ProtocolHTTP || f.MaxConn != 5000 || len(f.Bind) != 2 {
		t.Fatalf("frontend scality_in: got %+v", f)
	}
	if h := f.HTTP; !h.ForwardFor || len(h.ForwardForExcept) != 1 || len(h.Capture) != 3 || h.Capture[2].Len != 70 || h.ServerClose {
		t.Errorf("http table: got %+v", h)
	}
	tm := f.Timeouts
	if tm.Request != Duration(time.Minute) || tm.Queue != Duration(time.Minute) || tm.Client != Duration(time.Minute) ||
		tm.Server != Duration(time.Minute) || tm.KeepAlive != Duration(10*time.Minute) || tm.Connect != Duration(10*time.Second) {
		t.Errorf("timeouts: got %+v", tm)
	}
	b := c.Backends["scality_ring"]
	if b.Balance != BalanceRoundRobin || b.Retries != 3 || len(b.Servers) != 6 || b.Check.Type != CheckTypeHTTP ||
		b.Check.Inter != Duration(30*time.Second) || b.Check.Timeout != Duration(10*time.Second) || b.Check.ExpectStatus != (StatusRange{200, 399}) {
		t.Errorf("backend: got balance %s retries %d servers %d check %+v", b.Balance, b.Retries, len(b.Servers), b.Check)
	}
	if c.Global.MaxConn != 60000 || c.Global.SyslogFacility != "local2" || c.Control.Socket == "" {
		t.Errorf("global: got %+v, control %+v", c.Global, c.Control)
	}
}
