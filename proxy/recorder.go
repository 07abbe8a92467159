package proxy

// Recorder receives one frontend's session events for the statistics. It
// is implemented outside the engine (cmd wires the stats package to it),
// so the engine never depends on it; see [Frontend.Stats]. Its methods run
// on the session's goroutine and must be cheap: atomics, no blocking.
type Recorder interface {
	// SessionStarted: a connection was accepted and registered.
	SessionStarted()
	// SessionEnded: the session ended, with its final snapshot and its end
	// reason (one of a bounded set: see the session's log line).
	SessionEnded(info Info, end string)
	// Login: the outcome of one login the engine ran ([Conn.Connect]).
	Login(result LoginResult)
	// Recipient: an LMTP recipient's final reply code, one per accepted
	// RCPT after the data, or the RCPT's own reply when it was refused.
	Recipient(code int)
}

// LoginResult is the outcome of one login, a bounded set for the
// statistics' labels.
type LoginResult string

const (
	LoginOK       LoginResult = "ok"        // the server accepted it
	LoginRejected LoginResult = "rejected"  // the server refused it: a wrong password
	LoginNoServer LoginResult = "no_server" // no server could take it
	LoginTempFail LoginResult = "temp_fail" // the server refused it for now ([UNAVAILABLE], [SYS/TEMP], 454)
)

// Temporary is implemented by a LoginFunc's refusal that is temporary
// (IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP]): it is counted as
// LoginTempFail instead of LoginRejected.
type Temporary interface{ Temporary() bool }

// nopRecorder is the Recorder of a Frontend without one.
type nopRecorder struct{}

func (nopRecorder) SessionStarted()           {}
func (nopRecorder) SessionEnded(Info, string) {}
func (nopRecorder) Login(LoginResult)         {}
func (nopRecorder) Recipient(int)             {}

// stats is the frontend's Recorder, never nil.
func (f *Frontend) stats() Recorder {
	if f.Stats == nil {
		return nopRecorder{}
	}
	return f.Stats
}

// CountRecipient records an LMTP recipient's final reply code in the
// frontend's statistics.
func (c *Conn) CountRecipient(code int) { c.fe.stats().Recipient(code) }
