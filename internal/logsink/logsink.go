// Package logsink owns where maildirector's log goes besides stderr: a
// file that is opened again by name on request (logrotate renames it, then
// sends SIGUSR1), and syslog (RFC 5424) over a local datagram socket or
// UDP. Both are io.Writers for slog's text and JSON handlers; syslog also
// wraps the handler so each line carries its record's severity. It uses
// nothing but the standard library and imports nothing of the module.
//
//	f, err := logsink.OpenFile("/var/log/maildirector/maildirector.log")
//	log := slog.New(slog.NewTextHandler(f, nil))
//	... on SIGUSR1: err = f.Reopen()
//
//	s, err := logsink.DialSyslog("unix:/dev/log", logsink.SyslogOptions{Facility: 16, Tag: "maildirector"})
//	log := slog.New(s.Handler(func(w io.Writer) slog.Handler { return slog.NewJSONHandler(w, nil) }))
package logsink

import (
	"fmt"
	"os"
	"sync"
)

// fileMode is the mode of a log file OpenFile creates: the service's user
// and group may read it, nobody else (it names users and their addresses).
const fileMode = 0o640

// File is a log file that [File.Reopen] opens again by its path: after
// logrotate renamed it, writes go on to the renamed file until Reopen
// creates a new one under the path. Safe for concurrent use.
type File struct {
	path string

	mu sync.Mutex
	f  *os.File
}

// OpenFile opens path for appending, creating it with mode 0640 (less the
// umask) if it does not exist.
func OpenFile(path string) (*File, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &File{path: path, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

// Write appends p to the file.
func (f *File) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.f.Write(p)
}

// Reopen opens the path again and closes the file written so far. If the
// path cannot be opened, writes go on to the old file and the error says
// why.
func (f *File) Reopen() error {
	nf, err := openAppend(f.path)
	if err != nil {
		return err
	}
	f.mu.Lock()
	old := f.f
	f.f = nf
	f.mu.Unlock()
	return old.Close()
}

// Close closes the file.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.f.Close()
}

// Path is the file's path.
func (f *File) Path() string { return f.path }
