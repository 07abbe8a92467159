package smtpsink

import (
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestSink(t *testing.T) {
	sink, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })

	tests := []struct {
		name string
		from string
		to   []string
		body string
	}{
		{"one recipient", "a@lab.test", []string{"b@example.test"}, "Subject: one\r\n\r\nhi\r\n"},
		{"two recipients", "c@lab.test", []string{"d@example.test", "e@example.test"}, "Subject: two\r\n\r\n.dot\r\n"},
		{"null sender", "", []string{"f@example.test"}, "Subject: bounce\r\n\r\nx\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := smtp.Dial(sink.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.SendMail(tt.from, tt.to, strings.NewReader(tt.body)); err != nil {
				t.Fatalf("send: %v", err)
			}
			if err := c.Quit(); err != nil {
				t.Errorf("QUIT: %v", err)
			}
			msgs := sink.Messages()
			if len(msgs) == 0 {
				t.Fatal("got no message, want one")
			}
			got := msgs[len(msgs)-1]
			if got.From != tt.from || strings.Join(got.To, ",") != strings.Join(tt.to, ",") || string(got.Data) != tt.body {
				t.Errorf("got %q → %q %q, want %q → %q %q", got.From, got.To, got.Data, tt.from, tt.to, tt.body)
			}
		})
	}
	if got := len(sink.Messages()); got != len(tests) {
		t.Errorf("got %d messages, want %d", got, len(tests))
	}
	// Messages returns copies.
	if len(sink.Messages()) == 0 {
		t.Fatal("no messages")
	}
	sink.Messages()[0].Data[0] = 'X'
	if sink.Messages()[0].Data[0] == 'X' {
		t.Error("Messages shares its buffers with the sink")
	}
}

func TestCloseTwice(t *testing.T) {
	sink, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Errorf("first Close: got %v, want nil", err)
	}
	if err := sink.Close(); err != nil {
		t.Errorf("second Close: got %v, want nil", err)
	}
}

func TestListenTaken(t *testing.T) {
	sink, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	if s2, err := Listen(sink.Addr()); err == nil {
		s2.Close()
		t.Error("got nil, want an error for a taken address")
	}
}
