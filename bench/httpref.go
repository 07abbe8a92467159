package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
)

// Reference paths of the HTTP suite: what the Go libraries the HTTP path
// is built on (net/http's server, httputil.ReverseProxy and http.Transport)
// cost with none of maildirector's code, in a process of their own (the
// bench binary again, run with refServeArg), measured like the proxies:
//
//	go-revproxy  net/http server + httputil.ReverseProxy (Rewrite, SetURL)
//	             + a keep-alive http.Transport to nginx: the least proxy
//	             those libraries make
//	go-server    net/http server answering the 4 KiB object from memory:
//	             no proxying at all, only the server half
//
// They bound md-http from below on this machine: if go-server alone costs
// about HAProxy's CPU per request, no proxy on net/http reaches HAProxy's
// request rate where the CPUs are the limit.

const (
	pathGoRevProxy = "go-revproxy"
	pathGoServer   = "go-server"
	// refServeArg, as os.Args[1], makes the bench binary a reference
	// server: refServeArg MODE LISTEN [UPSTREAM].
	refServeArg = "-serve-http-reference"
)

// startHTTPReference starts the bench binary as the reference server of
// path on listen, in front of upstream (go-revproxy).
func startHTTPReference(dir, path, listen, upstream string) (*proxyProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return startProc(path, listen, dir+"/http-"+path+".log", self, refServeArg, path, listen, upstream)
}

// serveHTTPReference is the reference server's main: it serves until
// killed. args are MODE LISTEN [UPSTREAM].
func serveHTTPReference(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("%s MODE LISTEN [UPSTREAM]", refServeArg)
	}
	var h http.Handler
	switch args[0] {
	case pathGoServer:
		body := make([]byte, 4<<10)
		size := strconv.Itoa(len(body))
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", size)
			w.Write(body)
		})
	case pathGoRevProxy:
		if len(args) < 3 {
			return fmt.Errorf("%s: no upstream", pathGoRevProxy)
		}
		u, err := url.Parse("http://" + args[2])
		if err != nil {
			return err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 256
		h = &httputil.ReverseProxy{
			Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(u); r.SetXForwarded() },
			Transport: tr,
		}
	default:
		return fmt.Errorf("unknown reference %q", args[0])
	}
	ln, err := net.Listen("tcp", args[1])
	if err != nil {
		return err
	}
	return http.Serve(ln, h)
}
