package dovecotlab

import "syscall"

// masterProcAttr starts a Dovecot master as the leader of a process group
// holding all its children; if the harness dies, the master dies and its
// children follow it (PR_SET_PDEATHSIG, Linux only).
func masterProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
