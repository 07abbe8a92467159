package config

import (
	"strings"
	"testing"
	"time"
)

func TestDurationText(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		text    string
		wantErr string
	}{
		{in: "5s", want: 5 * time.Second, text: "5s"},
		{in: "15m", want: 15 * time.Minute, text: "15m"},
		{in: "1h", want: time.Hour, text: "1h"},
		{in: "1h30m", want: 90 * time.Minute, text: "1h30m"},
		{in: "90s", want: 90 * time.Second, text: "1m30s"},
		{in: "500ms", want: 500 * time.Millisecond, text: "500ms"},
		{in: "0", want: 0, text: "0s"},
		{in: "5", wantErr: "add a unit"},
		{in: "5 minutes", wantErr: "invalid duration"},
		{in: "", wantErr: "invalid duration"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Duration
			err := d.UnmarshalText([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || d.D() != tt.want {
				t.Fatalf("got %v, %v, want %v", d.D(), err, tt.want)
			}
			text, _ := d.MarshalText()
			if string(text) != tt.text {
				t.Errorf("MarshalText: got %q, want %q", text, tt.text)
			}
			var back Duration
			if err := back.UnmarshalText(text); err != nil || back != d {
				t.Errorf("round trip: got %v, %v, want %v", back, err, d)
			}
		})
	}
}

func TestSizeText(t *testing.T) {
	tests := []struct {
		in      string
		want    Size
		text    string
		wantErr string
	}{
		{in: "0", want: 0, text: "0"},
		{in: "1000", want: 1000, text: "1000"},
		{in: "4096", want: 4096, text: "4KiB"},
		{in: "512KiB", want: 512 * KiB, text: "512KiB"},
		{in: "1536KiB", want: 1536 * KiB, text: "1536KiB"},
		{in: "10MiB", want: 10 * MiB, text: "10MiB"},
		{in: "10 MiB", want: 10 * MiB, text: "10MiB"},
		{in: "2GiB", want: 2 * GiB, text: "2GiB"},
		{in: "1024MiB", want: GiB, text: "1GiB"},
		{in: "1GB", wantErr: "binary units"},
		{in: "10M", wantErr: "binary units"},
		{in: "-1", wantErr: "whole number"},
		{in: "1.5MiB", wantErr: "whole number"},
		{in: "MiB", wantErr: "whole number"},
		{in: "99999999999GiB", wantErr: "too large"},
		{in: "99999999999999999999", wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var s Size
			err := s.UnmarshalText([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v, want an error containing %q", s, err, tt.wantErr)
				}
				return
			}
			if err != nil || s != tt.want {
				t.Fatalf("got %d, %v, want %d", s, err, tt.want)
			}
			text, _ := s.MarshalText()
			if string(text) != tt.text {
				t.Errorf("MarshalText: got %q, want %q", text, tt.text)
			}
		})
	}
}

func TestSizeFromTOMLInteger(t *testing.T) {
	c := mustParse(t, `
[frontend.lmtp]
protocol = "lmtp"
bind = ["127.0.0.1:1024"]
backend = "d"
[frontend.lmtp.lmtp]
max_message_size = 1048576
spool_memory = 0
[backend.d]
[[backend.d.server]]
name = "s"
address = "10.0.0.1"
`)
	if l := c.Frontends["lmtp"].LMTP; l.MaxMessageSize != MiB || l.SpoolMemory != 0 {
		t.Errorf("got %d, %d, want %d, 0", l.MaxMessageSize, l.SpoolMemory, MiB)
	}
}
