package checks_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/maildirector/maildirector/checks"
)

// servePOP3 is a one-connection POP3 server for the example.
func servePOP3(ln net.Listener) {
	conn, err := ln.Accept()
	if err != nil {
		return
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	fmt.Fprint(conn, "+OK ready\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch line {
		case "CAPA\r\n":
			fmt.Fprint(conn, "+OK\r\nTOP\r\nUIDL\r\n.\r\n")
		case "QUIT\r\n":
			fmt.Fprint(conn, "+OK bye\r\n")
			return
		}
	}
}

func ExampleChecker_CheckNow() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	go servePOP3(ln)

	c, err := checks.New(checks.Options{
		Server:  "mail1",
		Type:    checks.TypePOP3,
		Address: ln.Addr().String(),
		Timeout: 10 * time.Second,
		Logger:  slog.New(slog.DiscardHandler),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	res := c.CheckNow(context.Background())
	fmt.Println(res.OK, res.Capabilities)
	// Output: true [TOP UIDL]
}

func ExampleChecker_ForceDown() {
	c, err := checks.New(checks.Options{
		Server:   "mail1",
		Type:     checks.TypeIMAP,
		Address:  "192.0.2.11:143",
		Logger:   slog.New(slog.DiscardHandler),
		OnChange: func(t checks.Transition) { fmt.Println(t.Server, "up:", t.Up, "reason:", t.Reason) },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	c.ForceDown("3 logins in a row could not reach the server")
	st := c.Status()
	fmt.Println("forced:", st.Forced, "health:", st.Health)
	// Output:
	// mail1 up: false reason: 3 logins in a row could not reach the server
	// forced: true health: 0
}
