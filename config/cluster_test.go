package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestClusterDefaults: without [cluster] the node is alone; with
// endpoints every other key has its documented default.
func TestClusterDefaults(t *testing.T) {
	c := mustParse(t, withCert(t, baseConfig))
	if c.Cluster.Enabled() {
		t.Fatalf("no [cluster]: Enabled, want alone")
	}
	c = mustParse(t, withCert(t, baseConfig+"\n[cluster]\nendpoints = [\"127.0.0.1:2379\"]\nnode = \"mx1\"\n"))
	cl := c.Cluster
	if !cl.Enabled() || cl.Prefix != "/maildirector" || cl.Node != "mx1" || cl.DialTimeout.D() != 2*time.Second ||
		cl.RequestTimeout.D() != time.Second || cl.Heartbeat.D() != 2*time.Second || cl.NodeTTL.D() != 10*time.Second || cl.Refresh.D() != time.Minute {
		t.Errorf("defaults: got %+v", cl)
	}
}

// TestClusterInvalid: each bad [cluster] value is one problem at its key.
func TestClusterInvalid(t *testing.T) {
	const on = "[cluster]\nendpoints = [\"127.0.0.1:2379\"]\nnode = \"mx1\"\n"
	tests := []struct {
		name, extra, key, msg string
	}{
		{name: "endpoint without port", extra: "[cluster]\nendpoints = [\"etcd1\"]\n", key: "cluster.endpoints[0]", msg: "host:port"},
		{name: "endpoint scheme", extra: "[cluster]\nendpoints = [\"unix://x:1\"]\n", key: "cluster.endpoints[0]", msg: "https://"},
		{name: "prefix without slash", extra: on + "prefix = \"md\"\n", key: "cluster.prefix", msg: "leading slash"},
		{name: "prefix trailing slash", extra: on + "prefix = \"/md/\"\n", key: "cluster.prefix", msg: "none at the end"},
		{name: "node with slash", extra: "[cluster]\nendpoints = [\"127.0.0.1:2379\"]\nnode = \"a/b\"\n", key: "cluster.node", msg: "without '/'"},
		{name: "request timeout", extra: on + "request_timeout = \"1m\"\n", key: "cluster.request_timeout", msg: "range"},
		{name: "node ttl below twice heartbeat", extra: on + "heartbeat = \"5s\"\nnode_ttl = \"6s\"\n", key: "cluster.node_ttl", msg: "twice cluster.heartbeat"},
		{name: "tls half", extra: on + "[cluster.tls]\ncert = \"CERT\"\n", key: "cluster.tls", msg: "both cert and key"},
		{name: "tls ca missing", extra: on + "[cluster.tls]\nca = \"/nonexistent.pem\"\n", key: "cluster.tls.ca", msg: "read CA bundle"},
		{name: "unknown key", extra: on + "endpoint = [\"x:1\"]\n", key: "cluster.endpoint", msg: "unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(withCert(t, baseConfig+"\n"+tt.extra)))
			if err == nil {
				t.Fatalf("Parse: got no error, want one at %s", tt.key)
			}
			errs := keyErrors(t, err)
			msgs, ok := errs[tt.key]
			if !ok {
				t.Fatalf("got problems\n%v\nwant one at key %s", err, tt.key)
			}
			if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, tt.msg) }) {
				t.Errorf("%s: got %q, want a message containing %q", tt.key, msgs, tt.msg)
			}
			if len(errs) != 1 {
				t.Errorf("got %d problems, want exactly 1:\n%v", len(errs), err)
			}
		})
	}
	// TLS with both files loads.
	mustParse(t, withCert(t, baseConfig+"\n"+on+"[cluster.tls]\ncert = \"CERT\"\nkey = \"KEY\"\nca = \"CERT\"\n"))
}
