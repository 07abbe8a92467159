//go:build !linux

package etcdlab

import "syscall"

// procAttr: without Linux's PR_SET_PDEATHSIG an etcd outlives a harness
// that dies without cleaning up.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{} }
