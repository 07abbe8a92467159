package stats

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// clusterSource is a Source whose process is a degraded cluster node.
type clusterSource struct{ *fakeSource }

func (clusterSource) Cluster(withEndpoints bool) *ClusterSnapshot {
	cs := &ClusterSnapshot{Node: "mx1", Degraded: true, Revision: 42, Writes: 7, Nodes: []ClusterNode{{Name: "mx1"}, {Name: "mx2"}}}
	if withEndpoints {
		cs.Endpoints = []ClusterEndpoint{{Endpoint: "127.0.0.1:2379", Err: "context deadline exceeded"}}
	}
	return cs
}

// TestClusterViews: a cluster node's state is in the JSON snapshot, in
// /metrics (degraded gauge, writes counter) and in `show cluster`; a node
// without [cluster] has none of them.
func TestClusterViews(t *testing.T) {
	s, src := newFake(t)
	ctl := s.NewControl(nil)
	if ans, failed := ctl.Do("show cluster"); !failed || !strings.Contains(ans, "no [cluster]") {
		t.Errorf("show cluster alone: got %q (failed %v), want an error saying there is no [cluster]", ans, failed)
	}
	s.SetSource(clusterSource{src})
	srv := httptest.NewServer(s.Handler(HandlerOptions{}))
	defer srv.Close()
	get := func(path string) []byte {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return b.Bytes()
	}
	var snap Snapshot
	if err := json.Unmarshal(get("/stats.json"), &snap); err != nil {
		t.Fatal(err)
	}
	if snap.Cluster == nil || !snap.Cluster.Degraded || snap.Cluster.Revision != 42 || len(snap.Cluster.Endpoints) != 0 {
		t.Errorf("json cluster: got %+v, want degraded at revision 42 without endpoints", snap.Cluster)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(get("/metrics")))
	if err != nil {
		t.Fatal(err)
	}
	if f := fams["maildirector_cluster_degraded"]; f == nil || f.GetMetric()[0].GetGauge().GetValue() != 1 {
		t.Errorf("metrics: maildirector_cluster_degraded %v, want 1", f)
	}
	if f := fams["maildirector_cluster_etcd_writes_total"]; f == nil || f.GetMetric()[0].GetCounter().GetValue() != 7 {
		t.Errorf("metrics: maildirector_cluster_etcd_writes_total %v, want 7", f)
	}
	ans, failed := ctl.Do("show cluster")
	if failed {
		t.Fatalf("show cluster: %s", ans)
	}
	for _, want := range []string{"node:", "mx1", "mx2", "DEGRADED", "127.0.0.1:2379", "unhealthy: context deadline exceeded", "revision applied:  42"} {
		if !strings.Contains(ans, want) {
			t.Errorf("show cluster: no %q in\n%s", want, ans)
		}
	}
	if strings.Contains(ans, "\n\n") {
		t.Errorf("show cluster has an empty line, which ends an answer on the socket:\n%s", ans)
	}
}
