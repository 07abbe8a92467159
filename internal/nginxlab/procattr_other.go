//go:build !linux

package nginxlab

import "syscall"

// procAttr: without Linux's PR_SET_PDEATHSIG an nginx outlives a harness
// that dies without cleaning up.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
