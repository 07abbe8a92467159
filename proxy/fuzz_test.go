package proxy

import (
	"bufio"
	"bytes"
	"net"
	"testing"

	"github.com/pires/go-proxyproto"
)

// FuzzProxyHeader feeds arbitrary bytes to the inbound PROXY header path
// (what a trusted upstream may send): it must never panic, and a header it
// accepts yields addresses the engine can use.
func FuzzProxyHeader(f *testing.F) {
	src := &net.TCPAddr{IP: net.ParseIP("203.0.113.9"), Port: 40000}
	dst := &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 143}
	for _, v := range []byte{1, 2} {
		b, _ := proxyproto.HeaderProxyFromAddrs(v, src, dst).Format()
		f.Add(append(b, "a LOGIN x y\r\n"...))
	}
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		if s, d, ok := h.TCPAddrs(); ok {
			_ = addrPort(s)
			_ = addrPort(d)
		}
	})
}
