package stats

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/maildirector/maildirector/internal/mailwire"
)

// The control socket speaks a line protocol close to HAProxy's runtime
// API: one command per line, its answer, then an empty line; the
// connection stays open for the next command until the client closes it.
// `echo "show servers" | socat stdio unix:/run/maildirector/ctl.sock`
// works, and so does `maildirector ctl`. A failed command answers one line
// "error: ..." (with --json: {"error": "..."}). Anything a client sends
// gets an answer; nothing it sends stops the process.

// Controller carries out the commands; cmd implements it. A server is
// named "BACKEND/SERVER", or "SERVER" when only one backend has it.
type Controller interface {
	Info() Info
	Sessions(filter string) []Session
	Users(server string) ([]User, error)
	SetState(server, state string) error
	SetWeight(server string, weight int) error
	ShutdownSessions(server string) (int, error)
	Where(user string) ([]Where, error)
	Move(user, server string) (Moved, error)
	Kick(user string) (int, error)
	Flush(server string, maxParallel int) (Flushed, error)
	Freeze(user string) (Frozen, error)
	Release(user, server string) (Released, error)
	Frozen() []string
	Reload() error
}

// Handover is implemented by a Controller whose process can give its
// listening sockets to a new one (an upgrade: `maildirector run
// --upgrade-from SOCKET`). Its two verbs are internal: answered on the
// control socket only (they need a unix socket; over HTTP they are unknown
// commands) and left out of help. In the order the new process sends
// them, on one connection:
//
//	_listeners   "listeners N", then one line per listening socket ("KIND
//	             ADDRESS", each written with its descriptor attached as
//	             SCM_RIGHTS), then the empty line
//	_handover    the new process serves now: this one answers OK, then
//	             stops accepting, drains its sessions and exits
type Handover interface {
	SendListeners(conn *net.UnixConn) error
	HandOver() error
}

// Upgrader is implemented by a Controller whose process can start its
// successor ("upgrade"): the binary installed at its path now, which takes
// the listening sockets over (see [Handover]) while this process drains.
type Upgrader interface {
	Upgrade() (Upgraded, error)
}

// Upgraded is "upgrade": the new process serves, the old one drains.
type Upgraded struct {
	PID    int `json:"pid"`
	OldPID int `json:"old_pid"`
}

// Info is "show info".
type Info struct {
	Version      string  `json:"version"`
	PID          int     `json:"pid"`
	Uptime       float64 `json:"uptime_seconds"`
	Config       string  `json:"config"`
	ConfigSHA256 string  `json:"config_sha256"`
	StateFile    string  `json:"state_file,omitempty"`
	Sessions     int     `json:"sessions"`
	MaxConn      int     `json:"maxconn"`
	Frontends    int     `json:"frontends"`
	Backends     int     `json:"backends"`
	Frozen       int     `json:"frozen_users"`
}

// Session is one live session ("show sessions").
type Session struct {
	ID uint64 `json:"id"`
	// SessionID is the session id of maildirector's log lines, which a
	// frontend with forward = "id" hands Dovecot as its session id.
	SessionID string    `json:"session"`
	Since     time.Time `json:"since"`
	Frontend  string    `json:"frontend"`
	Protocol  string    `json:"protocol"`
	Backend   string    `json:"backend"`
	Remote    string    `json:"remote"`
	User      string    `json:"user"`
	Server    string    `json:"server"`
	TLS       bool      `json:"tls"`
	Age       float64   `json:"age_seconds"`
	BytesIn   int64     `json:"bytes_in"`
	BytesOut  int64     `json:"bytes_out"`
}

// User is one sticky assignment ("show users SERVER").
type User struct {
	Backend  string    `json:"backend"`
	Server   string    `json:"server"`
	User     string    `json:"user"`
	Sessions int       `json:"sessions"`
	Since    time.Time `json:"since"`
	Active   time.Time `json:"last_active"`
	Expires  time.Time `json:"expires,omitzero"`
	Moved    bool      `json:"moved"`
}

// Where is "where USER" for one backend.
type Where struct {
	Backend  string    `json:"backend"`
	User     string    `json:"user"`
	Server   string    `json:"server"`
	Reason   string    `json:"reason"`
	Hashed   string    `json:"hashed"`
	Since    time.Time `json:"since,omitzero"`
	Moved    bool      `json:"moved"`
	Frozen   bool      `json:"frozen"`
	Sessions []Session `json:"sessions"`
	// Routes are the frontends with routing rules that send the user to
	// this backend; omitted when none does.
	Routes []WhereRoute `json:"routes,omitempty"`
}

// WhereRoute is why a frontend's routing rules send a user to a backend.
type WhereRoute struct {
	Frontend string `json:"frontend"`
	// Rule is the index of the rule that matched, -1 for the frontend's
	// default backend; Why says so ("route[0] (domain example.org)",
	// "default").
	Rule int    `json:"rule"`
	Why  string `json:"why"`
	// Unless lists the rules before it that match on how a client
	// connects (sni, local, client), which "where USER" does not know:
	// a session they match goes to their backend instead.
	Unless []string `json:"unless,omitempty"`
}

// Moved is "move USER SERVER".
type Moved struct {
	User   string `json:"user"`
	Server string `json:"server"`
	Kicked int    `json:"kicked"`
}

// Flushed is "flush SERVER".
type Flushed struct {
	Server string `json:"server"`
	Users  int    `json:"users"`
	Kicked int    `json:"kicked"`
}

// Frozen is "freeze USER".
type Frozen struct {
	User   string `json:"user"`
	Kicked int    `json:"kicked"`
	// Live is the user's sessions and deliveries still under way when the
	// command answered (it waits a while for them to end).
	Live int `json:"live"`
}

// Released is "release USER [SERVER]".
type Released struct {
	User   string `json:"user"`
	Server string `json:"server,omitempty"`
}

// maxCommandLine caps a command line, its line end included.
const maxCommandLine = 4096

// controlIdle closes a control connection that sends nothing for this long.
const controlIdle = 5 * time.Minute

// errUsage is a command that does not parse.
type errUsage string

func (e errUsage) Error() string { return string(e) }

const usage = `commands:
  help
  show info | show stat | show servers | show frozen | show cluster
  show sessions [USER|SERVER]
  show session ID
  show users SERVER
  set server SERVER state ready|drain|maint
  set server SERVER weight N
  shutdown sessions server SERVER
  where USER
  move USER SERVER
  kick USER
  flush SERVER [--max-parallel N]
  freeze USER
  release USER [SERVER]
  reload
  upgrade
SERVER is BACKEND/SERVER, or SERVER when one backend has it. Add --json for JSON.`

// command is one parsed command line.
type command struct {
	words       []string // the verb and its arguments, flags removed
	json        bool
	maxParallel int
}

// parseCommand splits a command line into words and flags.
func parseCommand(line string) (command, error) {
	var c command
	f := strings.Fields(line)
	// --json first: an error about another flag is answered in JSON too
	// (`maildirector ctl --json` puts it at the end of the line).
	isJSON := func(w string) bool { return w == "--json" || w == "-j" }
	c.json = slices.ContainsFunc(f, isJSON)
	for i := 0; i < len(f); i++ {
		switch f[i] {
		case "--json", "-j": // read above
		case "--max-parallel":
			if i+1 >= len(f) || isJSON(f[i+1]) {
				return c, errUsage("--max-parallel needs a number")
			}
			n, err := strconv.Atoi(f[i+1])
			if err != nil || n < 1 || n > 10000 {
				return c, errUsage("--max-parallel wants a number from 1 to 10000")
			}
			c.maxParallel = n
			i++
		default:
			if strings.HasPrefix(f[i], "--") {
				return c, errUsage(fmt.Sprintf("unknown flag %q", f[i]))
			}
			c.words = append(c.words, f[i])
		}
	}
	return c, nil
}

// Control runs the control protocol for one Controller.
type Control struct {
	st  *Stats
	ctl Controller
}

// NewControl returns the control protocol of st acting through ctl.
func (s *Stats) NewControl(ctl Controller) *Control { return &Control{st: s, ctl: ctl} }

// Do runs one command line and returns its answer, without the final
// empty line, and whether it failed.
func (c *Control) Do(line string) (answer string, failed bool) {
	cmd, err := parseCommand(line)
	var out any
	if err == nil {
		out, err = c.run(cmd)
	}
	if err != nil {
		if cmd.json {
			b, _ := json.Marshal(map[string]string{"error": err.Error()})
			return string(b), true
		}
		return "error: " + errorLines(err.Error()), true
	}
	if cmd.json {
		if s, ok := out.(csvText); ok {
			out = string(s)
		}
		b, err := json.Marshal(out)
		if err != nil {
			return "error: " + err.Error(), true
		}
		return string(b), false
	}
	return strings.TrimRight(human(out), "\n"), false
}

// errorLines keeps an error's lines (a reload lists every problem on its
// own) but drops empty ones, which end an answer, and indents the others.
func errorLines(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n  ")
}

// csvText is "show stat"'s answer: printed as it is.
type csvText string

// text is an answer that is already words.
type text string

func (c *Control) run(cmd command) (any, error) {
	w := cmd.words
	arg := func(i int, what string) (string, error) {
		if i >= len(w) {
			return "", errUsage(fmt.Sprintf("%s: missing %s; try help", strings.Join(w, " "), what))
		}
		return w[i], nil
	}
	argc := func(n int) error {
		if len(w) > n {
			return errUsage(fmt.Sprintf("%s: too many arguments; try help", strings.Join(w[:n], " ")))
		}
		return nil
	}
	if len(w) == 0 {
		return nil, errUsage("empty command; try help")
	}
	switch w[0] {
	case "help":
		return text(usage), nil
	case "show":
		what, err := arg(1, "what to show (info, stat, servers, sessions, session, users, frozen, cluster)")
		if err != nil {
			return nil, err
		}
		switch what {
		case "info":
			return c.ctl.Info(), argc(2)
		case "stat":
			snap, err := c.st.Snapshot()
			if err != nil {
				return nil, err
			}
			if cmd.json {
				return snap, argc(2)
			}
			var b bytes.Buffer
			WriteCSV(&b, snap)
			return csvText(b.String()), argc(2)
		case "servers":
			snap, err := c.st.Snapshot()
			if err != nil {
				return nil, err
			}
			return serverRows(snap), argc(2)
		case "sessions":
			filter := ""
			if len(w) > 2 {
				filter = w[2]
			}
			return c.ctl.Sessions(filter), argc(3)
		case "session":
			id, err := arg(2, "ID (a session id as in the log, or the conn number)")
			if err != nil {
				return nil, err
			}
			if err := argc(3); err != nil {
				return nil, err
			}
			return c.session(id)
		case "users":
			server, err := arg(2, "SERVER")
			if err != nil {
				return nil, err
			}
			if err := argc(3); err != nil {
				return nil, err
			}
			return c.ctl.Users(server)
		case "frozen":
			return c.ctl.Frozen(), argc(2)
		case "cluster":
			cs, ok := c.st.source().(ClusterSource)
			var snap *ClusterSnapshot
			if ok {
				snap = cs.Cluster(true)
			}
			if snap == nil {
				return nil, errors.New("show cluster: this node has no [cluster]")
			}
			return *snap, argc(2)
		}
		return nil, errUsage(fmt.Sprintf("show %s: unknown; try help", what))
	case "set":
		if len(w) < 5 || w[1] != "server" {
			return nil, errUsage("usage: set server SERVER state ready|drain|maint, or set server SERVER weight N")
		}
		if err := argc(5); err != nil {
			return nil, err
		}
		switch w[3] {
		case "state":
			if err := c.ctl.SetState(w[2], w[4]); err != nil {
				return nil, err
			}
			return text(fmt.Sprintf("%s: state %s", w[2], w[4])), nil
		case "weight":
			n, err := strconv.Atoi(w[4])
			if err != nil {
				return nil, errUsage(fmt.Sprintf("weight %q: want a number", w[4]))
			}
			if err := c.ctl.SetWeight(w[2], n); err != nil {
				return nil, err
			}
			return text(fmt.Sprintf("%s: weight %d", w[2], n)), nil
		}
		return nil, errUsage(fmt.Sprintf("set server: unknown field %q; want state or weight", w[3]))
	case "shutdown":
		if len(w) != 4 || w[1] != "sessions" || w[2] != "server" {
			return nil, errUsage("usage: shutdown sessions server SERVER")
		}
		n, err := c.ctl.ShutdownSessions(w[3])
		if err != nil {
			return nil, err
		}
		return text(fmt.Sprintf("%s: %d sessions closed", w[3], n)), nil
	case "where":
		user, err := arg(1, "USER")
		if err != nil {
			return nil, err
		}
		if err := argc(2); err != nil {
			return nil, err
		}
		return c.ctl.Where(user)
	case "move":
		user, err := arg(1, "USER")
		if err != nil {
			return nil, err
		}
		server, err := arg(2, "SERVER")
		if err != nil {
			return nil, err
		}
		if err := argc(3); err != nil {
			return nil, err
		}
		return c.ctl.Move(user, server)
	case "kick":
		user, err := arg(1, "USER")
		if err != nil {
			return nil, err
		}
		if err := argc(2); err != nil {
			return nil, err
		}
		n, err := c.ctl.Kick(user)
		if err != nil {
			return nil, err
		}
		return text(fmt.Sprintf("%s: %d sessions kicked", user, n)), nil
	case "flush":
		server, err := arg(1, "SERVER")
		if err != nil {
			return nil, err
		}
		if err := argc(2); err != nil {
			return nil, err
		}
		return c.ctl.Flush(server, cmd.maxParallel)
	case "freeze":
		user, err := arg(1, "USER")
		if err != nil {
			return nil, err
		}
		if err := argc(2); err != nil {
			return nil, err
		}
		return c.ctl.Freeze(user)
	case "release":
		user, err := arg(1, "USER")
		if err != nil {
			return nil, err
		}
		server := ""
		if len(w) > 2 {
			server = w[2]
		}
		if err := argc(3); err != nil {
			return nil, err
		}
		return c.ctl.Release(user, server)
	case "reload":
		if err := argc(1); err != nil {
			return nil, err
		}
		if err := c.ctl.Reload(); err != nil {
			return nil, err
		}
		return text("OK"), nil
	case "upgrade":
		if err := argc(1); err != nil {
			return nil, err
		}
		u, ok := c.ctl.(Upgrader)
		if !ok {
			return nil, errors.New("upgrade: not available here")
		}
		return u.Upgrade()
	}
	return nil, errUsage(fmt.Sprintf("unknown command %q; try help", w[0]))
}

// session is "show session ID": the live session whose session id (the
// "session" of the log lines, Dovecot's session id under forward = "id")
// or conn number is id.
func (c *Control) session(id string) (Session, error) {
	n, numErr := strconv.ParseUint(id, 10, 64)
	for _, s := range c.ctl.Sessions("") {
		if s.SessionID == id || (numErr == nil && s.ID == n) {
			return s, nil
		}
	}
	return Session{}, fmt.Errorf("show session %s: no live session has that id", id)
}

// Serve answers the commands of every connection ln accepts until ln is
// closed.
func (c *Control) Serve(ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.ServeConn(conn)
		}()
	}
}

// ServeConn answers one connection's commands until it closes, sends a
// line that is too long, or stays silent for controlIdle.
func (c *Control) ServeConn(conn net.Conn) {
	defer conn.Close()
	in := &countingReader{r: conn}
	br := bufio.NewReaderSize(in, maxCommandLine)
	var used int64 // the bytes of the lines read
	for {
		conn.SetReadDeadline(time.Now().Add(controlIdle))
		line, err := mailwire.ReadLine(br, maxCommandLine)
		if errors.Is(err, mailwire.ErrLineTooLong) {
			fmt.Fprintf(conn, "error: command line longer than %d bytes\n\n", maxCommandLine)
			return
		}
		if errors.Is(err, io.EOF) && in.n > used {
			// The client ended its input in the middle of a line (and may
			// still read): a command cut short is not run, and it is told.
			conn.SetWriteDeadline(time.Now().Add(time.Minute))
			io.WriteString(conn, "error: command line cut off by the end of input; end it with a newline\n\n")
			return
		}
		if err != nil {
			return
		}
		used += int64(len(line))
		if verb := strings.TrimSpace(line); strings.HasPrefix(verb, "_") {
			if err := c.internal(conn, verb); err != nil {
				return
			}
			continue
		}
		answer, _ := c.Do(line)
		conn.SetWriteDeadline(time.Now().Add(time.Minute))
		if _, err := io.WriteString(conn, answer+"\n\n"); err != nil {
			return
		}
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// internal answers an internal verb (see [Handover]); an error means the
// connection is unusable.
func (c *Control) internal(conn net.Conn, verb string) error {
	uc, isUnix := conn.(*net.UnixConn)
	h, can := c.ctl.(Handover)
	conn.SetWriteDeadline(time.Now().Add(time.Minute))
	var err error
	switch {
	case verb != "_listeners" && verb != "_handover":
		err = errUsage(fmt.Sprintf("unknown command %q; try help", verb))
	case !isUnix || !can:
		err = errors.New(verb + ": only on the control socket of a running maildirector")
	case verb == "_listeners":
		return h.SendListeners(uc)
	default:
		err = h.HandOver()
	}
	answer := "OK"
	if err != nil {
		answer = "error: " + errorLines(err.Error())
	}
	_, werr := io.WriteString(conn, answer+"\n\n")
	return werr
}

// serverRow is one line of "show servers".
type serverRow struct {
	Backend  string `json:"backend"`
	Server   string `json:"server"`
	Status   string `json:"status"`
	Admin    string `json:"admin"`
	Weight   int    `json:"weight"`
	Sessions int    `json:"sessions"`
	Assigned int    `json:"assigned"`
	Since    string `json:"since"`
	Check    string `json:"check"`
	Reason   string `json:"reason"`
}

func serverRows(snap Snapshot) []serverRow {
	var rows []serverRow
	for _, b := range snap.Backends {
		for _, s := range b.Servers {
			r := serverRow{Backend: b.Name, Server: s.Name, Status: s.Status, Admin: s.Admin, Weight: s.Weight,
				Sessions: s.Cur, Assigned: s.Assigned, Since: s.Since.UTC().Format(time.RFC3339), Reason: s.Reason}
			if s.Check != nil {
				r.Check = s.Check.Status + " " + s.Check.Result
			}
			rows = append(rows, r)
		}
	}
	return rows
}

// human renders an answer for people: tables with aligned columns.
func human(out any) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	ts := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	switch v := out.(type) {
	case text:
		return string(v)
	case csvText:
		return string(v)
	case Info:
		fmt.Fprintf(tw, "version:\t%s\npid:\t%d\nuptime:\t%s\nconfig:\t%s\nconfig sha256:\t%s\n", v.Version, v.PID,
			(time.Duration(v.Uptime) * time.Second).String(), v.Config, v.ConfigSHA256)
		if v.StateFile != "" {
			fmt.Fprintf(tw, "state file:\t%s\n", v.StateFile)
		}
		fmt.Fprintf(tw, "sessions:\t%d\nmaxconn:\t%d\nfrontends:\t%d\nbackends:\t%d\nfrozen users:\t%d\n",
			v.Sessions, v.MaxConn, v.Frontends, v.Backends, v.Frozen)
	case []serverRow:
		fmt.Fprintln(tw, "BACKEND/SERVER\tSTATUS\tADMIN\tWEIGHT\tSESSIONS\tUSERS\tSINCE\tCHECK")
		for _, r := range v {
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", r.Backend, r.Server, r.Status, r.Admin, r.Weight, r.Sessions, r.Assigned, r.Since, r.Check)
		}
	case []Session:
		fmt.Fprintln(tw, "ID\tFRONTEND\tREMOTE\tUSER\tBACKEND/SERVER\tTLS\tAGE\tIN\tOUT\tSESSION")
		for _, s := range v {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s/%s\t%v\t%s\t%d\t%d\t%s\n", s.ID, s.Frontend, s.Remote, dash(s.User), s.Backend, dash(s.Server), s.TLS,
				(time.Duration(s.Age) * time.Second).String(), s.BytesIn, s.BytesOut, dash(s.SessionID))
		}
		if len(v) == 0 {
			return "no sessions"
		}
	case Session:
		fmt.Fprintf(tw, "session:\t%s\nconn:\t%d\nfrontend:\t%s (%s)\nclient:\t%s\nuser:\t%s\nbackend:\t%s\nserver:\t%s\n",
			v.SessionID, v.ID, v.Frontend, v.Protocol, v.Remote, dash(v.User), v.Backend, dash(v.Server))
		fmt.Fprintf(tw, "since:\t%s (%s)\nbytes in:\t%d\nbytes out:\t%d\ntls:\t%v\n",
			ts(v.Since), (time.Duration(v.Age) * time.Second).String(), v.BytesIn, v.BytesOut, v.TLS)
	case []User:
		fmt.Fprintln(tw, "USER\tBACKEND/SERVER\tSESSIONS\tSINCE\tLAST ACTIVE\tEXPIRES\tMOVED")
		for _, u := range v {
			fmt.Fprintf(tw, "%s\t%s/%s\t%d\t%s\t%s\t%s\t%v\n", u.User, u.Backend, u.Server, u.Sessions, ts(u.Since), ts(u.Active), ts(u.Expires), u.Moved)
		}
		if len(v) == 0 {
			return "no users assigned"
		}
	case []Where:
		for _, p := range v {
			fmt.Fprintf(tw, "backend %s:\t%s → %s\n", p.Backend, p.User, dash(p.Server))
			fmt.Fprintf(tw, "  why:\t%s\n", p.Reason)
			for _, r := range p.Routes {
				fmt.Fprintf(tw, "  routed:\tfrontend %s by %s\n", r.Frontend, r.Why)
				for _, u := range r.Unless {
					fmt.Fprintf(tw, "    unless:\t%s\n", u)
				}
			}
			if p.Frozen {
				fmt.Fprintf(tw, "  frozen:\tyes, by an operator: logins wait, LMTP gets 451 4.2.0\n")
			}
			if !p.Since.IsZero() {
				how := "sticky"
				if p.Moved {
					how = "moved by an operator"
				}
				fmt.Fprintf(tw, "  placed:\t%s, %s\n", ts(p.Since), how)
			}
			fmt.Fprintf(tw, "  hashed:\t%s\n", dash(p.Hashed))
			fmt.Fprintf(tw, "  sessions:\t%d\n", len(p.Sessions))
			for _, s := range p.Sessions {
				fmt.Fprintf(tw, "    %d\t%s %s on %s, %s\n", s.ID, s.Frontend, s.Remote, s.Server, (time.Duration(s.Age) * time.Second).String())
			}
		}
	case Moved:
		return fmt.Sprintf("%s moved to %s; %d sessions kicked", v.User, v.Server, v.Kicked)
	case Flushed:
		return fmt.Sprintf("%s: %d users forgotten; %d sessions kicked", v.Server, v.Users, v.Kicked)
	case Frozen:
		s := fmt.Sprintf("%s frozen; %d sessions kicked", v.User, v.Kicked)
		if v.Live > 0 {
			s += fmt.Sprintf("; %d sessions or deliveries still under way", v.Live)
		} else {
			s += "; nothing under way"
		}
		return s
	case ClusterSnapshot:
		state := "synchronised"
		if v.Degraded {
			state = "DEGRADED (etcd unreachable; placing users from local tables)"
		}
		fmt.Fprintf(tw, "node:\t%s\nstate:\t%s since %s\n", v.Node, state, ts(v.Since))
		if v.LastErr != "" {
			fmt.Fprintf(tw, "last error:\t%s\n", v.LastErr)
		}
		fmt.Fprintf(tw, "revision applied:\t%d\nassignments:\t%d\netcd writes:\t%d\nclaims:\t%d\n", v.Revision, v.Assignments, v.Writes, v.Claims)
		fmt.Fprintln(tw, "ETCD ENDPOINT\tHEALTH\tLEADER\tVERSION\tREVISION")
		for _, e := range v.Endpoints {
			health := "healthy"
			if !e.Healthy {
				health = "unhealthy: " + dash(e.Err)
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%d\n", e.Endpoint, health, e.Leader, dash(e.Version), e.Revision)
		}
		fmt.Fprintln(tw, "NODE\tLAST HEARTBEAT\tSTARTED\tREVISION\tSEES DOWN")
		for _, n := range v.Nodes {
			var down []string
			for b, ss := range n.Down {
				for _, s := range ss {
					down = append(down, b+"/"+s)
				}
			}
			slices.Sort(down)
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", n.Name, ts(n.Heartbeat), ts(n.Started), n.Revision, dash(strings.Join(down, ",")))
		}
	case Upgraded:
		return fmt.Sprintf("upgraded: pid %d serves on the listening sockets now; pid %d drains its sessions and exits", v.PID, v.OldPID)
	case Released:
		if v.Server != "" {
			return fmt.Sprintf("%s released to %s", v.User, v.Server)
		}
		return v.User + " released"
	case []string:
		if len(v) == 0 {
			return "none"
		}
		return strings.Join(v, "\n")
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
	tw.Flush()
	return b.String()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
