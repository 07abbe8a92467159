package proxy

import (
	"sync/atomic"
	"time"
)

// logEvery is how far apart the warnings of one kind are: a condition that
// hits every connection (descriptors exhausted, maxconn reached, a trusted
// balancer that stopped sending PROXY headers) must not flood the log when
// the machine can least afford it.
const logEvery = time.Second

// rateLimit lets one event through per logEvery. The zero value is ready;
// it is safe for concurrent use and takes no lock.
type rateLimit struct {
	last atomic.Int64 // Unix nanoseconds of the last event let through
}

// allow reports whether an event at now may be logged, and if so counts it.
func (r *rateLimit) allow(now time.Time) bool {
	last := r.last.Load()
	return now.UnixNano()-last >= int64(logEvery) && r.last.CompareAndSwap(last, now.UnixNano())
}
