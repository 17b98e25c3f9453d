//go:build !linux

package cluster

import "syscall"

// sysProcAttr: without Linux's parent-death signal an agent outlives a
// caller that dies without stopping it.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Setpgid: true}
}
