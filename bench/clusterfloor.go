package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	// floorKeys are the keys the etcd floor writes.
	floorKeys = 20000
	// batchKeys are its keys to a transaction (the nodes' claims batch up
	// to 100 too: etcd's --max-txn-ops is 128).
	batchKeys = 100
	// floorInFlight are its transactions in flight.
	floorInFlight = 4
)

// cpuSample is the CPU time of the nodes, of the etcd members and of the
// whole machine at one moment.
type cpuSample struct {
	nodes, etcd time.Duration
	machine     machineCPU
}

// readCPUs samples the nodes' and the members' utime+stime and the
// machine's ticks; a process that cannot be read counts nothing.
func readCPUs(nodes, etcd []int) cpuSample {
	var s cpuSample
	s.nodes, s.etcd = procsCPU(nodes), procsCPU(etcd)
	s.machine, _ = readMachineCPU()
	return s
}

// procsCPU sums utime+stime over pids.
func procsCPU(pids []int) time.Duration {
	var sum time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		if d, err := parseStatCPU(b); err == nil {
			sum += d
		}
	}
	return sum
}

// perLogin is the CPU spent since before, in µs per login for done logins:
// the nodes', the members' and the whole machine's (busy ticks of all
// CPUs). Zeros when nothing was done.
func (s cpuSample) perLogin(before cpuSample, done int) (nodes, etcd, machine float64) {
	if done <= 0 {
		return 0, 0, 0
	}
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(done) }
	busy := (s.machine.total - before.machine.total) - (s.machine.idle - before.machine.idle)
	return us(s.nodes - before.nodes), us(s.etcd - before.etcd), us(time.Duration(busy) * clockTick)
}

// measureEtcdFloor writes keys new keys the way claims are written (each
// guarded by "does not exist yet", on a lease), batchKeys to a
// transaction, floorInFlight transactions at once, and measures the
// members' CPU per key: what etcd costs a new placement at best on this
// machine, whatever the proxy does.
func measureEtcdFloor(endpoints []string, pids []int, keys int) EtcdFloor {
	f := EtcdFloor{Keys: keys, PerTxn: batchKeys, InFlight: floorInFlight}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		f.Error = err.Error()
		return f
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lease, err := cli.Grant(ctx, 600)
	if err != nil {
		f.Error = err.Error()
		return f
	}
	defer cli.Revoke(context.Background(), lease.ID)
	prefix := fmt.Sprintf("/bench-floor-%d/a/imap/", time.Now().UnixNano())
	value := `{"s":"fake2","n":"cluster-3-3-node1","b":29412345}` // an assignment's size
	var next atomic.Int64
	var firstErr atomic.Value
	c0, t0 := procsCPU(pids), time.Now()
	var wg sync.WaitGroup
	for range floorInFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				first := int(next.Add(batchKeys)) - batchKeys
				if first >= keys {
					return
				}
				var cmps []clientv3.Cmp
				var ops []clientv3.Op
				for i := first; i < min(first+batchKeys, keys); i++ {
					k := fmt.Sprintf("%sfloor%07d", prefix, i)
					cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
					ops = append(ops, clientv3.OpPut(k, value, clientv3.WithLease(lease.ID)))
				}
				if _, err := cli.Txn(ctx).If(cmps...).Then(ops...).Commit(); err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed, cpu := time.Since(t0), procsCPU(pids)-c0
	if e, ok := firstErr.Load().(string); ok {
		f.Error = e
		return f
	}
	f.PerSec = float64(keys) / elapsed.Seconds()
	f.CPU = float64(cpu.Microseconds()) / float64(keys)
	cli.Delete(context.Background(), prefix, clientv3.WithPrefix())
	return f
}
