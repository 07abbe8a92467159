package stats

import "time"

// ClusterSnapshot is the node's view of its [cluster] (package cluster):
// on the dashboard, in JSON, in /metrics and `ctl show cluster`.
type ClusterSnapshot struct {
	Node string `json:"node"`
	// Degraded says etcd is unreachable: the node places users from its
	// local tables and hashing alone.
	Degraded bool      `json:"degraded"`
	Since    time.Time `json:"since"`
	LastErr  string    `json:"last_error,omitempty"`
	// Revision is the etcd revision this node applied.
	Revision    int64  `json:"revision"`
	Assignments int    `json:"assignments"`
	Writes      uint64 `json:"etcd_writes"`
	Claims      uint64 `json:"claims"`
	// Nodes are the live nodes' heartbeats, this one included.
	Nodes []ClusterNode `json:"nodes"`
	// Endpoints is the etcd members' health, asked for by
	// `ctl show cluster` only (not on every snapshot).
	Endpoints []ClusterEndpoint `json:"endpoints,omitempty"`
}

// ClusterNode is one node's heartbeat.
type ClusterNode struct {
	Name      string              `json:"name"`
	Heartbeat time.Time           `json:"heartbeat"`
	Started   time.Time           `json:"started"`
	Revision  int64               `json:"revision"`
	Down      map[string][]string `json:"down,omitempty"`
}

// ClusterEndpoint is one etcd member's answer.
type ClusterEndpoint struct {
	Endpoint string `json:"endpoint"`
	Healthy  bool   `json:"healthy"`
	Leader   bool   `json:"leader"`
	Version  string `json:"version,omitempty"`
	Revision int64  `json:"revision,omitempty"`
	Err      string `json:"error,omitempty"`
}

// ClusterSource is implemented by a Source whose process is part of a
// cluster. Cluster returns nil when it is not.
type ClusterSource interface {
	Cluster(withEndpoints bool) *ClusterSnapshot
}

// source returns what Snapshot shows; nil before SetSource.
func (s *Stats) source() Source {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.src
}
