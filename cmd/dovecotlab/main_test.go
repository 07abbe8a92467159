package main

import (
	"testing"

	"github.com/maildirector/maildirector/internal/dovecotlab"
)

func TestFixedPorts(t *testing.T) {
	tests := []struct {
		base, n int
		want    dovecotlab.InstancePorts
	}{
		{10000, 1, dovecotlab.InstancePorts{IMAP: 10143, IMAPDirect: 10144, POP3: 10110, POP3Direct: 10111, LMTP: 10024, LMTPDirect: 10025, Submission: 10587}},
		{10000, 2, dovecotlab.InstancePorts{IMAP: 11143, IMAPDirect: 11144, POP3: 11110, POP3Direct: 11111, LMTP: 11024, LMTPDirect: 11025, Submission: 11587}},
		{10000, 3, dovecotlab.InstancePorts{IMAP: 12143, IMAPDirect: 12144, POP3: 12110, POP3Direct: 12111, LMTP: 12024, LMTPDirect: 12025, Submission: 12587}},
		{20000, 2, dovecotlab.InstancePorts{IMAP: 21143, IMAPDirect: 21144, POP3: 21110, POP3Direct: 21111, LMTP: 21024, LMTPDirect: 21025, Submission: 21587}},
	}
	for _, tt := range tests {
		if got := FixedPorts(tt.base, tt.n); got != tt.want {
			t.Errorf("FixedPorts(%d, %d): got %+v, want %+v", tt.base, tt.n, got, tt.want)
		}
	}
}
