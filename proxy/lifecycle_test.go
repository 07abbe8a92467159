package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

// timeoutErr is a net.Error that timed out, as a deadline's read error is.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestEndReason(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	tests := []struct {
		name    string
		err     error
		ended   string
		want    string
		wantErr bool // the line carries err
	}{
		{name: "handler returned nil (LOGOUT, QUIT)", want: EndDone},
		{name: "client EOF before login", err: fmt.Errorf("read command: %w", io.EOF), want: EndClientClosed},
		{name: "client cut mid-data", err: fmt.Errorf("read message data: %w", io.ErrUnexpectedEOF), want: EndClientClosed, wantErr: true},
		{name: "client reset before login", err: reset, want: EndClientClosed, wantErr: true},
		{name: "pre-login deadline", err: fmt.Errorf("read command: %w", timeoutErr{}), want: EndTimeout, wantErr: true},
		{name: "relay: client closed first", err: &peerClosed{}, want: EndClientClosed},
		{name: "relay: server closed first", err: &peerClosed{server: true}, want: EndServerClosed},
		{name: "relay: client reset", err: onLeg(0, reset), want: EndClientClosed, wantErr: true},
		{name: "relay: server broken pipe", err: onLeg(1, syscall.EPIPE), want: EndServerClosed, wantErr: true},
		{name: "relay: a peer took nothing", err: onLeg(0, timeoutErr{}), want: EndIdleTimeout, wantErr: true},
		{name: "relay: other leg error", err: onLeg(1, errors.New("tls: bad record MAC")), want: EndError, wantErr: true},
		{name: "relay: local error", err: errors.New("epoll_ctl: no space"), want: EndError, wantErr: true},
		{name: "server failed after login", err: ServerFailure(fmt.Errorf("relay: write to server: %w", syscall.EPIPE)), want: EndServerClosed, wantErr: true},
		{name: "server timed out", err: ServerFailure(timeoutErr{}), want: EndError, wantErr: true},
		{name: "no server", err: fmt.Errorf("connect: %w: %w", ErrUnavailable, ServerFailure(io.EOF)), want: EndError, wantErr: true},
		{name: "closed socket", err: net.ErrClosed, want: EndError, wantErr: true},
		{name: "idle timeout", ended: EndIdleTimeout, want: EndIdleTimeout},
		{name: "kicked while reading", err: timeoutErr{}, ended: EndKicked, want: EndKicked},
		{name: "server down", ended: EndServerDown, want: EndServerDown},
		{name: "shutdown", err: context.Canceled, ended: EndShutdown, want: EndShutdown},
		{name: "unknown kick reason stays bounded", ended: "because", want: EndKicked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := endReason(tt.err, tt.ended)
			if got != tt.want {
				t.Errorf("endReason(%v, %q): got %q, want %q", tt.err, tt.ended, got, tt.want)
			}
			if text := errText(tt.err, tt.ended, got); (text != "") != tt.wantErr {
				t.Errorf("errText(%v, %q): got %q, want an err attribute: %v", tt.err, got, text, tt.wantErr)
			}
		})
	}
}
