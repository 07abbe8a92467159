package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// workers keeps the goroutines that served connections. A goroutine whose
// session went to the relay (or ended) waits for the next accepted
// connection instead of exiting, so that a new connection costs neither a
// goroutine's creation nor the growth of its stack from 2 KiB to what a
// login's calls need, copied at every doubling (4% of the CPU of a login
// through the tcp frontend, in its profile). Workers left idle for a whole
// reapEvery with no new connection exit, so an idle process keeps none.
type workers struct {
	jobs  chan job      // unbuffered: a send succeeds only to a waiting worker
	reap  chan struct{} // one receive ends one idle worker
	every time.Duration // reapEvery when the Server was made
	quit  chan struct{} // closed when the Server is done: every worker ends

	idle     atomic.Int32 // workers waiting for a job
	spawned  atomic.Int64 // workers started, for the tests
	used     atomic.Bool  // a connection came since the reaper last looked
	start    sync.Once    // starts the reaper
	quitOnce sync.Once
}

type job struct {
	ctx context.Context
	c   *Conn
}

// maxIdleWorkers bounds the workers kept waiting; a burst beyond it
// leaves its extra goroutines to exit.
const maxIdleWorkers = 64

// reapEvery is how long a process without new connections keeps its idle
// workers.
var reapEvery = 2 * time.Second

func newWorkers() *workers {
	return &workers{jobs: make(chan job), reap: make(chan struct{}), quit: make(chan struct{}), every: reapEvery}
}

// serve runs s.serveConn(ctx, c) on an idle worker, or on a new one.
func (w *workers) serve(s *Server, ctx context.Context, c *Conn) {
	w.used.Store(true)
	select {
	case w.jobs <- job{ctx, c}:
		return
	default:
	}
	w.start.Do(func() { go w.reaper() })
	w.spawned.Add(1)
	go w.run(s, ctx, c)
}

// run serves connections until the worker is reaped, surplus, or the
// Server is done.
func (w *workers) run(s *Server, ctx context.Context, c *Conn) {
	for {
		s.serveConn(ctx, c)
		if w.idle.Add(1) > maxIdleWorkers {
			w.idle.Add(-1)
			return
		}
		select {
		case j := <-w.jobs:
			w.idle.Add(-1)
			ctx, c = j.ctx, j.c
		case <-w.reap:
			w.idle.Add(-1)
			return
		case <-w.quit:
			w.idle.Add(-1)
			return
		}
	}
}

// reaper ends the idle workers after a reapEvery without new connections.
func (w *workers) reaper() {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-w.quit:
			return
		case <-t.C:
		}
		if w.used.Swap(false) {
			continue
		}
		for w.idle.Load() > 0 {
			select {
			case w.reap <- struct{}{}:
				continue
			default:
			}
			break // the rest are between a job and waiting: next time
		}
	}
}

// close ends every worker once it is idle.
func (w *workers) close() { w.quitOnce.Do(func() { close(w.quit) }) }
