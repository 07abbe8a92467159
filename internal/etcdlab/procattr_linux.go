package etcdlab

import "syscall"

// procAttr starts etcd so that it dies with the harness that started it
// (PR_SET_PDEATHSIG, Linux only).
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
