package nginxlab

import "syscall"

// procAttr starts nginx so that it dies with the harness that started it
// (PR_SET_PDEATHSIG, Linux only); its workers exit when their master does.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
