package submission

import (
	"bufio"
	"strings"
	"testing"
)

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"EHLO client.example\r\n", "MAIL FROM:<a@b>\r\n", "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n", "STARTTLS\n", "\x16\x03\x01", "", " x", "QUIT"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, err := parseCommand(line)
		if err != nil {
			return
		}
		if cmd.Verb == "" || strings.ToUpper(cmd.Verb) != cmd.Verb || len(cmd.Verb) > maxVerb || strings.Contains(cmd.Verb, " ") {
			t.Fatalf("bad verb %q", cmd.Verb)
		}
		if strings.ContainsAny(cmd.Verb+cmd.Args, "\r\n\x00") {
			t.Fatalf("CR, LF or NUL in %+v", cmd)
		}
		again := cmd.Verb
		if cmd.Args != "" {
			again += " " + cmd.Args
		}
		if cmd2, err := parseCommand(again + "\r\n"); err != nil || cmd2 != cmd {
			t.Fatalf("reparse of %q: got %+v, %v; want %+v", again, cmd2, err, cmd)
		}
	})
}

func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"220 hi\r\n", "250-a\r\n250 b\r\n", "250\r\n", "hello", "550-x\r\n551 y\r\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		r, err := readReply(bufio.NewReader(strings.NewReader(in)))
		if err != nil {
			return
		}
		if r.Code < 200 || r.Code > 599 || len(r.Lines) == 0 || len(r.Lines) > maxReplyLines {
			t.Fatalf("bad reply %+v", r)
		}
		again, err := readReply(bufio.NewReader(strings.NewReader(r.Raw())))
		if err != nil || again.Code != r.Code || len(again.Lines) != len(r.Lines) {
			t.Fatalf("reparse of %q: got %+v, %v", r.Raw(), again, err)
		}
	})
}
