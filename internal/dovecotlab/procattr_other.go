//go:build !linux

package dovecotlab

import "syscall"

// masterProcAttr starts a Dovecot master as the leader of a process group
// holding all its children. Without Linux's PR_SET_PDEATHSIG a master
// outlives a harness that dies without cleaning up.
func masterProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
