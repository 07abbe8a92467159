package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"

	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maildirector/maildirector/internal/etcdlab"
)

// The cluster suite: the login rate (connect, LOGIN, LOGOUT) of a user
// population through one maildirector alone, through three nodes without
// [cluster] and through three nodes sharing placement in a real
// three-member etcd (internal/etcdlab), in front of three fake IMAP
// servers; and the etcd writes each login cost, read from the nodes'
// `show cluster` counters. Each run logs every user in once first (each is
// a new placement: one claim written to etcd), then measures warm logins,
// which read the local cache only. The goal: etcd costs under 10 %
// of the login throughput.

const (
	clusterAlone  = "1 node"
	clusterPlain  = "3 nodes, no etcd"
	clusterShared = "3 nodes + etcd"
)

// ClusterRun is one configuration's figures.
type ClusterRun struct {
	Path  string     `json:"path"`
	Nodes int        `json:"nodes"`
	Cold  RateResult `json:"cold"` // every user's first login
	Warm  RateResult `json:"warm"` // later logins, median of the repetitions
	// Writes are the etcd keys the nodes wrote during the cold and the
	// warm runs; per login below.
	ColdWrites         uint64  `json:"cold_etcd_writes"`
	WarmWrites         uint64  `json:"warm_etcd_writes"`
	ColdWritesPerLogin float64 `json:"cold_writes_per_login"`
	WarmWritesPerLogin float64 `json:"warm_writes_per_login"`
	// CPU per login (µs, utime+stime): of the nodes, of the etcd members,
	// and of the whole machine (every process: clients and fake servers
	// too), during the cold and the warm runs.
	ColdNodeCPU    float64 `json:"cold_node_cpu_us_per_login"`
	WarmNodeCPU    float64 `json:"warm_node_cpu_us_per_login"`
	ColdEtcdCPU    float64 `json:"cold_etcd_cpu_us_per_login,omitempty"`
	WarmEtcdCPU    float64 `json:"warm_etcd_cpu_us_per_login,omitempty"`
	ColdMachineCPU float64 `json:"cold_machine_cpu_us_per_login"`
	WarmMachineCPU float64 `json:"warm_machine_cpu_us_per_login"`
	Error          string  `json:"error,omitempty"`
}

// EtcdFloor is what etcd alone costs per key written the cheapest way a
// new placement can be: many claims (compare-and-swap puts on a lease) to
// a transaction, several transactions in flight, no maildirector.
type EtcdFloor struct {
	Keys     int     `json:"keys"`
	PerTxn   int     `json:"keys_per_txn"`
	InFlight int     `json:"txns_in_flight"`
	PerSec   float64 `json:"keys_per_s"`
	CPU      float64 `json:"members_cpu_us_per_key"` // the three members' utime+stime
	Error    string  `json:"error,omitempty"`
}

// ClusterReport is the cluster suite.
type ClusterReport struct {
	Users   int          `json:"users"`
	Logins  int          `json:"logins"`
	Workers int          `json:"workers"`
	Runs    []ClusterRun `json:"runs"`
	Ratios  Ratios       `json:"ratios"` // warm logins/s: etcd/plain, etcd/alone
	Floor   *EtcdFloor   `json:"etcd_floor,omitempty"`
	Notes   []string     `json:"notes"`
}

// runCluster measures the three configurations.
func runCluster(o options, dir string, progress io.Writer) *ClusterReport {
	rep := &ClusterReport{Users: o.clusterUsers, Logins: o.logins, Workers: o.clusterClients}
	var servers []string
	for range 3 {
		be, err := startBackend("127.0.0.1:0")
		if err != nil {
			rep.Notes = append(rep.Notes, "fake server: "+err.Error())
			return rep
		}
		defer be.Close()
		servers = append(servers, be.Addr())
	}
	fmt.Fprintf(progress, "bench: cluster: starting etcd (3 members)\n")
	lab, err := etcdlab.Start(etcdlab.Options{Dir: filepath.Join(dir, "etcd")})
	if err != nil {
		rep.Notes = append(rep.Notes, "etcd: "+err.Error())
		return rep
	}
	defer lab.Close()
	for _, cfg := range []struct {
		path  string
		nodes int
		etcd  []string
	}{{clusterAlone, 1, nil}, {clusterPlain, 3, nil}, {clusterShared, 3, lab.Endpoints()}} {
		fmt.Fprintf(progress, "bench: cluster: %s ...\n", cfg.path)
		var etcdPIDs []int
		if cfg.etcd != nil {
			etcdPIDs = lab.PIDs()
		}
		rep.Runs = append(rep.Runs, clusterRun(o, dir, cfg.path, cfg.nodes, cfg.etcd, etcdPIDs, servers))
	}
	fmt.Fprintf(progress, "bench: cluster: etcd alone, %d keys in transactions of %d ...\n", floorKeys, batchKeys)
	f := measureEtcdFloor(lab.Endpoints(), lab.PIDs(), floorKeys)
	rep.Floor = &f
	runs := make(map[string]ClusterRun)
	for _, r := range rep.Runs {
		runs[r.Path] = r
	}
	rep.Ratios = Ratios{}
	if s, p := runs[clusterShared].Warm.PerSecond, runs[clusterPlain].Warm.PerSecond; s > 0 && p > 0 {
		rep.Ratios["warm etcd/no etcd (3 nodes)"] = s / p
	}
	if s, a := runs[clusterShared].Warm.PerSecond, runs[clusterAlone].Warm.PerSecond; s > 0 && a > 0 {
		rep.Ratios["warm 3 nodes+etcd/1 node"] = s / a
	}
	if s, p := runs[clusterShared].Cold.PerSecond, runs[clusterPlain].Cold.PerSecond; s > 0 && p > 0 {
		rep.Ratios["cold etcd/no etcd (3 nodes)"] = s / p
	}
	if s, a := runs[clusterShared].Cold.PerSecond, runs[clusterAlone].Cold.PerSecond; s > 0 && a > 0 {
		rep.Ratios["cold 3 nodes+etcd/1 node"] = s / a
	}
	// The least etcd can add to a new placement, against what a whole
	// login costs the machine without etcd: where the CPUs are the limit,
	// a cold login's rate can be at most about 1/(1+this) of the rate
	// without etcd.
	if m := runs[clusterPlain].ColdMachineCPU; m > 0 && rep.Floor != nil && rep.Floor.CPU > 0 {
		rep.Ratios["etcd floor CPU per key/machine CPU per login without etcd"] = rep.Floor.CPU / m
	}
	rep.Notes = []string{
		"every process (nodes, etcd members, fake servers, clients) shares this machine's CPUs: compare ratios, not absolutes",
		"cold: each user's first login, a new placement (one compare-and-swap in etcd); warm: later logins, answered from the node's cache",
		"-cluster-clients clients keep every node busy, so that a rate is the configuration's throughput where the CPUs are the limit, not one login's latency times the clients",
		"CPU columns: µs of utime+stime per login of the nodes, of the etcd members, and of the whole machine (every process); etcd floor: the three members' CPU per key when a client with nothing else to do writes claims 100 to a transaction, 4 transactions in flight",
		"etcd writes are assignment keys (claims, refreshes, moves); heartbeats (one small put per node per heartbeat) are apart",
		"refresh is the default 1m: a warm run shorter than that writes no refresh; in steady state each user in use costs one write per refresh period, batched 100 to a transaction",
	}
	return rep
}

// clusterRun starts nodes maildirectors (with [cluster] when etcd is set)
// and measures the cold and warm login rates through them.
func clusterRun(o options, dir, path string, nodes int, etcd []string, etcdPIDs []int, servers []string) (run ClusterRun) {
	run.Path, run.Nodes = path, nodes
	var addrs, socks []string
	var nodePIDs []int
	prefix := fmt.Sprintf("/bench-%d", time.Now().UnixNano())
	for i := range nodes {
		listen, err := freeAddr()
		if err != nil {
			run.Error = err.Error()
			return run
		}
		name := fmt.Sprintf("cluster-%d-%d-node%d", len(etcd), nodes, i+1)
		sock := filepath.Join(dir, name+".sock")
		cfg := clusterNodeConfig(listen, sock, name, prefix, o.logLevel, etcd, servers)
		p, err := startMaildirector(o.maildirector, dir, name, listen, cfg, false)
		if err != nil {
			run.Error = err.Error()
			return run
		}
		defer p.stop()
		addrs, socks = append(addrs, listen), append(socks, sock)
		nodePIDs = append(nodePIDs, p.pid())
	}
	users := make([]string, o.clusterUsers)
	for i := range users {
		users[i] = fmt.Sprintf("bench%06d", i)
	}
	writes := func() uint64 {
		var n uint64
		for _, s := range socks {
			if len(etcd) > 0 {
				n += nodeWrites(s)
			}
		}
		return n
	}
	w0 := writes()
	c0 := readCPUs(nodePIDs, etcdPIDs)
	run.Cold = measureUserRate(addrs, users, o.clusterClients, len(users), o.rateLimit, 0)
	c1 := readCPUs(nodePIDs, etcdPIDs)
	w1 := writes()
	run.ColdWrites = w1 - w0
	warmDone := 0
	run.Warm = medianRate(o.repeat, func() RateResult {
		r := measureUserRate(addrs, users, o.clusterClients, o.logins, o.rateLimit, 1)
		warmDone += r.Done
		return r
	})
	c2 := readCPUs(nodePIDs, etcdPIDs)
	run.WarmWrites = writes() - w1
	run.ColdNodeCPU, run.ColdEtcdCPU, run.ColdMachineCPU = c1.perLogin(c0, run.Cold.Done)
	run.WarmNodeCPU, run.WarmEtcdCPU, run.WarmMachineCPU = c2.perLogin(c1, warmDone)
	if run.Cold.Done > 0 {
		run.ColdWritesPerLogin = float64(run.ColdWrites) / float64(run.Cold.Done)
	}
	if done := o.repeat * o.logins; done > 0 {
		run.WarmWritesPerLogin = float64(run.WarmWrites) / float64(done)
	}
	return run
}

// clusterNodeConfig is one node in front of the fake servers, with a
// control socket, and with [cluster] when etcd is set.
func clusterNodeConfig(listen, sock, name, prefix, logLevel string, etcd, servers []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\nlog_level = %q\nmaxconn = 0\nshutdown_grace = \"1s\"\n[global.limits]\nmax_per_client = 0\nmax_rate = 0\n\n", logLevel)
	fmt.Fprintf(&b, "[frontend.bench]\nprotocol = \"imap\"\nbind = [%q]\nbackend = \"fake\"\nplaintext_login = \"allow\"\n\n", listen)
	fmt.Fprintf(&b, "[control]\nsocket = %q\n\n", sock)
	if len(etcd) > 0 {
		q := make([]string, len(etcd))
		for i, e := range etcd {
			q[i] = strconv.Quote(e)
		}
		fmt.Fprintf(&b, "[cluster]\nendpoints = [%s]\nprefix = %q\nnode = %q\n\n", strings.Join(q, ", "), prefix, name)
	}
	b.WriteString("[backend.fake]\nbalance = \"user\"\n[backend.fake.check]\ntype = \"none\"\n\n")
	for i, s := range servers {
		host, port, _ := net.SplitHostPort(s)
		fmt.Fprintf(&b, "[[backend.fake.server]]\nname = \"fake%d\"\naddress = %q\nports = { imap = %s }\nsend_proxy = \"none\"\n\n", i+1, host, port)
	}
	return b.String()
}

// nodeWrites reads a node's etcd write counter from its control socket;
// 0 if it cannot.
func nodeWrites(sock string) uint64 {
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return 0
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "--json show cluster\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0
	}
	var st struct {
		Writes uint64 `json:"etcd_writes"`
	}
	json.Unmarshal([]byte(line), &st)
	return st.Writes
}

// measureUserRate runs count logins (connect, LOGIN, LOGOUT) over workers
// clients, worker i through node i mod len(addrs). With seq 0 the users
// go in order (each once for count = len(users)); otherwise they are
// spread by a fixed stride, as returning users.
func measureUserRate(addrs, users []string, workers, count int, limit time.Duration, seq int) RateResult {
	res := RateResult{Workers: workers}
	var next, failed atomic.Int64
	var firstErr atomic.Value
	lat := make([]time.Duration, count)
	start := time.Now()
	deadline := start.Add(limit)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr := addrs[w%len(addrs)]
			for time.Now().Before(deadline) {
				i := int(next.Add(1) - 1)
				if i >= count {
					return
				}
				u := users[i%len(users)]
				if seq != 0 {
					u = users[(i*7919)%len(users)]
				}
				t0 := time.Now()
				cl, err := dialLogin(addr, u)
				if err == nil {
					err = cl.logout()
				}
				lat[i] = time.Since(t0)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	done := min(int(next.Load()), count)
	res.Done = done - int(failed.Load())
	res.Failed = int(failed.Load())
	if res.Seconds > 0 {
		res.PerSecond = float64(res.Done) / res.Seconds
	}
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	return res
}

// printCluster is the cluster suite's table.
func printCluster(w io.Writer, rep *ClusterReport) {
	fmt.Fprintf(w, "cluster: %d users, %d warm logins per run, %d clients\n", rep.Users, rep.Logins, rep.Workers)
	fmt.Fprintf(w, "%-18s %12s %12s %14s %14s %22s %22s %22s\n", "path", "cold login/s", "warm login/s", "cold wr/login", "warm wr/login",
		"node µs/login c/w", "etcd µs/login c/w", "machine µs/login c/w")
	for _, r := range rep.Runs {
		if r.Error != "" {
			fmt.Fprintf(w, "%-18s error: %s\n", r.Path, r.Error)
			continue
		}
		fmt.Fprintf(w, "%-18s %12.0f %12.0f %14.3f %14.3f %22s %22s %22s\n", r.Path, r.Cold.PerSecond, r.Warm.PerSecond, r.ColdWritesPerLogin, r.WarmWritesPerLogin,
			fmt.Sprintf("%.0f / %.0f", r.ColdNodeCPU, r.WarmNodeCPU), fmt.Sprintf("%.0f / %.0f", r.ColdEtcdCPU, r.WarmEtcdCPU), fmt.Sprintf("%.0f / %.0f", r.ColdMachineCPU, r.WarmMachineCPU))
		if r.Cold.Failed+r.Warm.Failed > 0 {
			fmt.Fprintf(w, "%-18s failed logins: %d cold, %d warm; first: %s%s\n", "", r.Cold.Failed, r.Warm.Failed, r.Cold.FirstError, r.Warm.FirstError)
		}
	}
	if f := rep.Floor; f != nil {
		if f.Error != "" {
			fmt.Fprintf(w, "etcd floor: error: %s\n", f.Error)
		} else {
			fmt.Fprintf(w, "etcd floor: %d keys, %d to a transaction, %d in flight: %.0f keys/s, members' CPU %.0f µs per key\n", f.Keys, f.PerTxn, f.InFlight, f.PerSec, f.CPU)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(rep.Ratios)) {
		fmt.Fprintf(w, "ratio %s: %.2f\n", k, rep.Ratios[k])
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}
