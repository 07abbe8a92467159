package integration

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClusterOneServerPerUser: 200 users log in through three nodes at
// random while a server is stopped and started twice; every user's
// sessions, across the nodes, are on one server at every moment (from
// Dovecot's login lines), and LMTP through any node delivers to the server
// every node names for the user.
func TestClusterOneServerPerUser(t *testing.T) {
	ce := startCluster(t, 3, 200)
	users := labUsers(200)
	stop := make(chan struct{})
	done := make(chan *loadResult)
	go func() { done <- ce.runLoad(users, 12, 3000, 300*time.Millisecond, stop) }()
	for range 2 {
		time.Sleep(2 * time.Second)
		ce.stopServer(1)
		time.Sleep(3 * time.Second)
		if err := ce.lab.Instances[1].Start(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * time.Second)
	close(stop)
	res := <-done
	t.Logf("%d sessions, %d failed logins (a stopped server's users wait for every node to see it down)", len(res.sessions), len(res.failed))
	if len(res.sessions) < 200 {
		t.Fatalf("only %d sessions logged in; failures: %v", len(res.sessions), head(res.failed, 5))
	}
	ce.placeSessions(res)
	ce.checkOneServer(res)
	t.Logf("etcd writes per login: %.3f (new placements, moves and expiry refreshes; heartbeats apart)", ce.writesPerLogin(len(res.sessions)+len(res.failed)))

	// The nodes agree on every user, and LMTP through any node delivers
	// there.
	var agreed map[string]string
	pollUntil(t, 5*time.Second, "the nodes' assignments agree", func() bool {
		agreed = nil
		for _, n := range ce.nodes {
			as, err := ce.assignments(n)
			if err != nil {
				return false
			}
			if agreed == nil {
				agreed = as
				continue
			}
			for u, s := range as {
				if o, ok := agreed[u]; ok && o != s {
					return false
				}
			}
		}
		return true
	})
	for i, u := range users[:20] {
		n := ce.nodes[i%3]
		server, _, _, err := n.where(u)
		if err != nil {
			t.Fatal(err)
		}
		before := ce.messageCounts(u)
		m := lmtpDial(t, n.lmtp)
		replies, err := m.send("sender@example.org", []string{lmtpAddr(u)}, lmtpMessage(fmt.Sprintf("cluster-%d", i), 100))
		m.close()
		if err != nil || len(replies) != 1 || replies[0].Code != 250 {
			t.Fatalf("LMTP to %s via %s: %v %v", u, n.name, replies, err)
		}
		after := ce.messageCounts(u)
		for s := range after {
			if got, want := after[s]-before[s], map[bool]int{true: 1, false: 0}[s == server]; got != want {
				t.Errorf("LMTP to %s via %s: %d new messages on %s, want %d (every node places %s on %s)", u, n.name, got, s, want, u, server)
			}
		}
	}
}

// messageCounts is user's INBOX size on every server.
func (ce *clusterEnv) messageCounts(user string) map[string]int {
	ce.t.Helper()
	out := make(map[string]int)
	for i, in := range ce.lab.Instances {
		n, err := in.MessageCount(user)
		if err != nil {
			ce.t.Fatal(err)
		}
		out[serverName(i)] = n
	}
	return out
}

func head(s []string, n int) []string { return s[:min(n, len(s))] }

// TestClusterOperatorChanges: move, freeze and release on node 1 take
// effect on nodes 2 and 3 within 1 s; set server state maint on node 2 is
// seen by nodes 1 and 3; a node killed with SIGKILL rejoins with its
// users' assignments intact; ctl show cluster lists every node.
func TestClusterOperatorChanges(t *testing.T) {
	ce := startCluster(t, 3, 20)
	n1, n2, n3 := ce.nodes[0], ce.nodes[1], ce.nodes[2]

	var st clusterStatus
	if err := n1.ctlJSON(&st, "show cluster"); err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 3 || len(st.Endpoints) != 3 {
		t.Fatalf("show cluster: %d nodes, %d endpoints; want 3 and 3: %+v", len(st.Nodes), len(st.Endpoints), st)
	}
	for _, ep := range st.Endpoints {
		if !ep.Healthy {
			t.Errorf("show cluster: etcd %s unhealthy", ep.Endpoint)
		}
	}
	text := n1.mustCtl(t, "show cluster")
	for _, want := range []string{"node1", "node2", "node3", "synchronised", "LAST HEARTBEAT"} {
		if !strings.Contains(text, want) {
			t.Errorf("show cluster: no %q in\n%s", want, text)
		}
	}

	// move on node 1
	user := "user003"
	hashed, _, _, err := n1.where(user)
	if err != nil {
		t.Fatal(err)
	}
	target := "dovecot1"
	if hashed == target {
		target = "dovecot2"
	}
	n1.mustCtl(t, "move "+user+" dovecot/"+target)
	for _, n := range []*clusterNode{n2, n3} {
		pollUntil(t, time.Second, "move on node1 seen by "+n.name, func() bool {
			s, moved, _, err := n.where(user)
			return err == nil && s == target && moved
		})
	}
	// and a login through node 3 lands there
	if _, err := imapSession(n3, user, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got := ce.loginServers(user); len(got) != 1 || got[0] != target {
		t.Errorf("logins of %s after the move: on %v, want only %s", user, got, target)
	}

	// freeze and release on node 1
	frozen := "user004"
	n1.mustCtl(t, "freeze "+frozen)
	for _, n := range []*clusterNode{n2, n3} {
		pollUntil(t, time.Second, "freeze on node1 seen by "+n.name, func() bool {
			_, _, f, err := n.where(frozen)
			return err == nil && f
		})
	}
	n1.mustCtl(t, "release "+frozen)
	for _, n := range []*clusterNode{n2, n3} {
		pollUntil(t, time.Second, "release on node1 seen by "+n.name, func() bool {
			_, _, f, err := n.where(frozen)
			return err == nil && !f
		})
	}

	// set server state maint on node 2
	n2.mustCtl(t, "set server dovecot/dovecot3 state maint")
	for _, n := range []*clusterNode{n1, n3} {
		pollUntil(t, time.Second, "maint on node2 seen by "+n.name, func() bool {
			var rows []struct {
				Server string `json:"server"`
				Admin  string `json:"admin"`
			}
			if n.ctlJSON(&rows, "show servers") != nil {
				return false
			}
			for _, r := range rows {
				if r.Server == "dovecot3" {
					return r.Admin == "maint"
				}
			}
			return false
		})
	}

	// Users logged in through node 2, some of them where the hash would
	// not put them (dovecot3 in maintenance, moves): after node 2 is
	// killed and restarted, they are where they were.
	for _, u := range labUsers(20) {
		if _, err := imapSession(n2, u, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	n2.mustCtl(t, "set server dovecot/dovecot3 state ready")
	n2.mustCtl(t, "move user010 dovecot/dovecot3")
	before, err := ce.assignments(n2)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) < 20 {
		t.Fatalf("node2 has %d assignments, want at least 20", len(before))
	}
	n2.p.cmd.Process.Signal(syscall.SIGKILL)
	<-n2.p.done
	ce.startNode(n2)
	after, err := ce.assignments(n2)
	if err != nil {
		t.Fatal(err)
	}
	for u, s := range before {
		if after[u] != s {
			t.Errorf("after SIGKILL and restart node2 has %s on %q, want %s", u, after[u], s)
		}
	}
	pollUntil(t, 5*time.Second, "node1 sees the restarted node2", func() bool {
		var st clusterStatus
		if n1.ctlJSON(&st, "show cluster") != nil {
			return false
		}
		for _, n := range st.Nodes {
			if n.Name == "node2" && time.Since(n.Heartbeat) < 2*time.Second {
				return true
			}
		}
		return false
	})
}

// loginServers lists the servers that logged a login of user (from
// clientIP), in server order.
func (ce *clusterEnv) loginServers(user string) []string {
	ce.t.Helper()
	var out []string
	for i, in := range ce.lab.Instances {
		logins, err := in.Logins()
		if err != nil {
			ce.t.Fatal(err)
		}
		for _, l := range logins {
			if l.User == user && l.RemoteIP == clientIP.String() {
				out = append(out, serverName(i))
				break
			}
		}
	}
	return out
}

// TestClusterEtcdDown: etcd stopped entirely for 30 s while users log in
// through all three nodes: no login fails; after etcd returns the nodes
// are synchronised and agree on every user within 5 s, and no user was on
// two servers at once.
func TestClusterEtcdDown(t *testing.T) {
	ce := startCluster(t, 2, 100)
	users := labUsers(100)
	stop := make(chan struct{})
	done := make(chan *loadResult)
	go func() { done <- ce.runLoad(users, 6, 20000, 200*time.Millisecond, stop) }()
	time.Sleep(2 * time.Second)
	ce.etcd.Stop()
	for _, n := range ce.nodes {
		pollUntil(t, 10*time.Second, n.name+" degraded", func() bool {
			var st clusterStatus
			return n.ctlJSON(&st, "show cluster") == nil && st.Degraded
		})
	}
	// The snapshot (dashboard, JSON, metrics) shows it too.
	var snap struct {
		Cluster *struct {
			Degraded bool `json:"degraded"`
		} `json:"cluster"`
	}
	if err := ce.nodes[0].ctlJSON(&snap, "show stat"); err != nil {
		t.Fatal(err)
	}
	if snap.Cluster == nil || !snap.Cluster.Degraded {
		t.Errorf("show stat --json: cluster %+v, want degraded", snap.Cluster)
	}
	time.Sleep(30 * time.Second)
	if err := ce.etcd.Start(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	for _, n := range ce.nodes {
		ce.waitSynced(n, 5*time.Second-time.Since(back))
	}
	pollUntil(t, 5*time.Second-time.Since(back), "the nodes agree on every user", func() bool {
		var first map[string]string
		for _, n := range ce.nodes {
			as, err := ce.assignments(n)
			if err != nil {
				return false
			}
			if first == nil {
				first = as
				continue
			}
			for u, s := range as {
				if o, ok := first[u]; ok && o != s {
					return false
				}
			}
		}
		return true
	})
	time.Sleep(time.Second)
	close(stop)
	res := <-done
	t.Logf("%d sessions, %d failed logins; etcd writes per login %.3f", len(res.sessions), len(res.failed), ce.writesPerLogin(len(res.sessions)))
	if len(res.failed) > 0 {
		t.Errorf("%d logins failed with etcd down; want none: %v", len(res.failed), head(res.failed, 10))
	}
	ce.placeSessions(res)
	ce.checkOneServer(res)
}

// writesPerLogin is the etcd keys the nodes wrote, per login attempt.
func (ce *clusterEnv) writesPerLogin(logins int) float64 {
	ce.t.Helper()
	var writes uint64
	for _, n := range ce.nodes {
		var st clusterStatus
		if err := n.ctlJSON(&st, "show cluster"); err != nil {
			ce.t.Fatal(err)
		}
		writes += st.Writes
	}
	return float64(writes) / float64(max(logins, 1))
}
