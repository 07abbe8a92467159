package etcdlab

import (
	"net/http"
	"testing"
	"time"
)

// TestStartStopStart: three members become healthy, all go away on Stop,
// and come back on the same addresses with Start.
func TestStartStopStart(t *testing.T) {
	if testing.Short() {
		t.Skip("short: starts three etcd members")
	}
	lab := StartT(t, Options{})
	if got := len(lab.Endpoints()); got != 3 {
		t.Fatalf("endpoints: got %d, want 3", got)
	}
	lab.Stop()
	client := &http.Client{Timeout: 500 * time.Millisecond}
	if resp, err := client.Get("http://" + lab.Members[0].Client + "/health"); err == nil {
		resp.Body.Close()
		t.Fatalf("member 1 answers after Stop")
	}
	if err := lab.Start(); err != nil {
		t.Fatal(err)
	}
}
