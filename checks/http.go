package checks

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// maxHTTPResponse caps what an HTTP check reads: status line, headers and
// as much body as fits. The rest is dropped by the close.
const maxHTTPResponse = 64 << 10

// http sends one request with "Connection: close" (RFC 9112 section 9.6) so
// the server ends the connection after its response, reads the response and
// checks that its status is from want to wantMax.
func (s *session) http(method, path, host string, want, wantMax int) error {
	cmd := method + " " + path
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: maildirector-check\r\nAccept: */*\r\nConnection: close\r\n\r\n", method, path, host)
	if _, err := io.WriteString(s.conn, req); err != nil {
		return s.fail(sendStep(cmd), err)
	}
	r := bufio.NewReader(io.LimitReader(s.conn, maxHTTPResponse))
	resp, err := http.ReadResponse(r, &http.Request{Method: method})
	if err != nil {
		return s.fail(replyStep(cmd), err)
	}
	// Read the body we were sent (up to the cap), so the server's write does
	// not meet a reset; errors here do not change the verdict.
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode < want || resp.StatusCode > wantMax {
		expect := strconv.Itoa(want)
		if wantMax > want {
			expect += "-" + strconv.Itoa(wantMax)
		}
		return s.unexpected(cmd, resp.Proto+" "+resp.Status, expect)
	}
	return nil
}
