package dovecotlab

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"
)

// deliveries numbers the files Deliver writes, for unique maildir names.
var deliveries atomic.Uint64

// maildir returns the INBOX maildir of user, or ErrUnknownUser.
func (i *Instance) maildir(user string) (string, error) {
	if !i.users[user] {
		return "", fmt.Errorf("%s on %s: %w", user, i.Name, ErrUnknownUser)
	}
	return filepath.Join(i.mailRoot, user, "Maildir"), nil
}

// MaildirFiles lists the messages in user's INBOX as paths relative to the
// maildir ("new/…" and "cur/…"), sorted. A user who never received mail has none.
func (i *Instance) MaildirFiles(user string) ([]string, error) {
	md, err := i.maildir(user)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(md, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list maildir of %s: %w", user, err)
		}
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				files = append(files, sub+"/"+e.Name())
			}
		}
	}
	sort.Strings(files)
	return files, nil
}

// MessageCount returns the number of messages in user's INBOX (new + cur).
func (i *Instance) MessageCount(user string) (int, error) {
	files, err := i.MaildirFiles(user)
	return len(files), err
}

// Deliver puts msg straight into user's INBOX the way an MDA does (write
// to tmp/, rename into new/), owned by the mail user, so Dovecot picks it
// up on the next IMAP SELECT or POP3 login. It works while the instance is
// stopped too.
func (i *Instance) Deliver(user string, msg []byte) error {
	md, err := i.maildir(user)
	if err != nil {
		return err
	}
	// The home and the maildir are created as the mail user would, for
	// users Dovecot has not seen yet.
	for _, d := range []string{filepath.Dir(md), md, filepath.Join(md, "tmp"), filepath.Join(md, "new"), filepath.Join(md, "cur")} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("deliver to %s: %w", user, err)
		}
		if err := os.Chown(d, i.uid, i.gid); err != nil {
			return fmt.Errorf("deliver to %s: %w", user, err)
		}
	}
	now := time.Now()
	// Maildir unique name: time.MusecPpid_Qdelivery.host.
	name := fmt.Sprintf("%d.M%dP%dQ%d.dovecotlab,S=%d", now.Unix(), now.Nanosecond()/1000, os.Getpid(), deliveries.Add(1), len(msg))
	tmp := filepath.Join(md, "tmp", name)
	if err := os.WriteFile(tmp, msg, 0o600); err != nil {
		return fmt.Errorf("deliver to %s: %w", user, err)
	}
	if err := os.Chown(tmp, i.uid, i.gid); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("deliver to %s: %w", user, err)
	}
	if err := os.Rename(tmp, filepath.Join(md, "new", name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("deliver to %s: %w", user, err)
	}
	return nil
}

// seedFullUser stores one message in FullUser's maildir, owned by the mail
// user, so that the user is over its one-byte quota from the start.
func seedFullUser(mailRoot string, uid, gid int) error {
	home := filepath.Join(mailRoot, FullUser)
	md := filepath.Join(home, "Maildir")
	for _, d := range []string{home, md, filepath.Join(md, "cur"), filepath.Join(md, "new"), filepath.Join(md, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("seed %s: %w", FullUser, err)
		}
		if err := os.Chown(d, uid, gid); err != nil {
			return fmt.Errorf("seed %s: %w", FullUser, err)
		}
	}
	msg := filepath.Join(md, "cur", "1.seed.lab:2,S")
	if err := os.WriteFile(msg, []byte("Subject: seed\r\n\r\nThis mailbox is over its quota.\r\n"), 0o600); err != nil {
		return fmt.Errorf("seed %s: %w", FullUser, err)
	}
	return os.Chown(msg, uid, gid)
}
