package http

import (
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/maildirector/maildirector/proxy"
)

// BenchmarkSmallGET: 4 KiB GETs through the frontend over keep-alive
// connections, 16 at once (the bench's HTTP test, in one process).
func BenchmarkSmallGET(b *testing.B) {
	body := make([]byte, 4096)
	addr := startBackendB(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "4096") // as nginx: no chunking
		w.Write(body)
	}))
	f := serveB(b, addr)
	b.SetParallelism(8)
	var once sync.Once
	b.RunParallel(func(pb *testing.PB) {
		c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
		buf := make([]byte, 8192)
		for pb.Next() {
			req, _ := http.NewRequest("GET", "http://"+f+"/x", nil)
			req.Header.Set("X-Dovecot-Reason", "Mailbox INBOX: Reading mail")
			resp, err := c.Do(req)
			if err != nil {
				once.Do(func() { b.Error(err) })
				return
			}
			io.CopyBuffer(io.Discard, resp.Body, buf)
			resp.Body.Close()
		}
	})
}

func startBackendB(b *testing.B, h http.Handler) string { return startBackend(b, h) }

// fixedPicker always picks its one target, with a lease that does nothing.
type fixedPicker struct{ t proxy.Target }

func (p *fixedPicker) Pick(context.Context, proxy.PickRequest) (proxy.Lease, error) {
	return nopLease{p.t}, nil
}

type nopLease struct{ t proxy.Target }

func (l nopLease) Target() proxy.Target { return l.t }
func (nopLease) User() string           { return "" }
func (nopLease) Established()           {}
func (nopLease) Answered()              {}
func (nopLease) Failed(error)           {}
func (nopLease) Release()               {}

type nopRecorder struct{}

func (nopRecorder) Request(string, string, string, int, int64, int64, time.Duration, bool) {}

func serveB(b *testing.B, addr string) string {
	fe := New(Options{Picker: &fixedPicker{proxy.Target{Server: "s1", Address: addr}}, Stats: nopRecorder{}})
	srv := proxy.New(proxy.Options{})
	if err := srv.Configure([]proxy.Frontend{{Name: "web", Protocol: "http", Addrs: []string{"127.0.0.1:0"}, Handler: fe}}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { srv.Close() })
	return srv.ListenerAddr("web").String()
}
