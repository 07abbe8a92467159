package config

import (
	"os"
	"testing"
)

// FuzzParse checks that Parse never panics and that a nil error always
// comes with a Config (and an error never does).
func FuzzParse(f *testing.F) {
	f.Add([]byte(baseConfig))
	f.Add([]byte(fullConfig))
	if data, err := os.ReadFile("../etc/maildirector.toml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("[frontend.a]\nprotocol = \"tcp\"\nbind = [\"[::]:1\"]\nbackend = \"b\"\n[backend.b]\nbalance = \"source\"\nserver = [{name = \"x\", address = \"[::1]:2\", ports = {tcp = 3}}]\n"))
	f.Add([]byte("[global.timeouts]\nidle = \"1h\"\n[frontend.\"\"]\n"))
	f.Add([]byte("frontend = 1\nbackend = []\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if (c == nil) == (err == nil) {
			t.Fatalf("got Config %v and error %v, want exactly one", c != nil, err)
		}
		if c != nil {
			_ = c.Summary()
			for _, b := range c.Backends {
				for _, s := range b.Servers {
					_ = b.CheckAddress(s)
					_ = s.DialAddress(ProtocolIMAP)
				}
			}
		}
	})
}
