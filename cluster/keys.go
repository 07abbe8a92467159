package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Key kinds, the first path element under the prefix.
const (
	kindAssign = "a"
	kindServer = "s"
	kindFrozen = "f"
	kindNode   = "n"
)

// assignment is the value of an assignment key.
type assignment struct {
	Server string `json:"s"`
	Moved  bool   `json:"m,omitempty"`
	Node   string `json:"n,omitempty"`
	// Bucket is the expiry bucket of the key's lease (unix time /
	// Options.Refresh): a node refreshes a key whose bucket is old.
	Bucket int64 `json:"b,omitempty"`
}

// override is the value of a server key: what operators set.
type override struct {
	State  string `json:"state,omitempty"`
	Weight *int   `json:"weight,omitempty"`
}

// NodeInfo is the value of a node's heartbeat key.
type NodeInfo struct {
	Name      string `json:"name"`
	Started   int64  `json:"started"`   // unix seconds
	Heartbeat int64  `json:"heartbeat"` // unix milliseconds of the last write
	// Revision is the etcd revision the node had applied.
	Revision int64 `json:"revision"`
	// Down are the servers the node's checks see down, by backend: a user
	// may leave a server only when every live node sees it down.
	Down map[string][]string `json:"down,omitempty"`
}

// errKey is a key under the prefix that is none of the kinds above.
var errKey = errors.New("not a maildirector cluster key")

// parsedKey is a key split into its parts.
type parsedKey struct {
	kind    string
	backend string // a, s
	name    string // a: user; s: server; f: user; n: node
}

// parseKey splits key (with the prefix and its '/' already cut off).
// Backend and server names never contain '/', user names may.
func parseKey(rest string) (parsedKey, error) {
	kind, rest, ok := strings.Cut(rest, "/")
	if !ok || rest == "" {
		return parsedKey{}, fmt.Errorf("%w: %q", errKey, rest)
	}
	switch kind {
	case kindAssign, kindServer:
		b, n, ok := strings.Cut(rest, "/")
		if !ok || b == "" || n == "" || (kind == kindServer && strings.Contains(n, "/")) {
			return parsedKey{}, fmt.Errorf("%w: %s/%q", errKey, kind, rest)
		}
		return parsedKey{kind: kind, backend: b, name: n}, nil
	case kindFrozen:
		return parsedKey{kind: kind, name: rest}, nil
	case kindNode:
		if strings.Contains(rest, "/") {
			return parsedKey{}, fmt.Errorf("%w: n/%q", errKey, rest)
		}
		return parsedKey{kind: kind, name: rest}, nil
	}
	return parsedKey{}, fmt.Errorf("%w: kind %q", errKey, kind)
}

func (c *Cluster) key(kind string, parts ...string) string {
	return c.prefix + kind + "/" + strings.Join(parts, "/")
}

func decodeAssignment(b []byte) (assignment, error) {
	var a assignment
	if err := json.Unmarshal(b, &a); err != nil {
		return a, fmt.Errorf("assignment: %w", err)
	}
	if a.Server == "" || strings.Contains(a.Server, "/") {
		return a, fmt.Errorf("assignment: bad server %q", a.Server)
	}
	return a, nil
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil { // cannot happen: plain structs
		panic(err)
	}
	return string(b)
}
