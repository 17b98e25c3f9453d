package cluster

import "syscall"

// sysProcAttr runs an agent as cred (nil: as the caller), in a process
// group of its own, and sends it SIGTERM should the caller die, so it
// stops its PostgreSQL and leaves.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGTERM, Setpgid: true}
}
