package kubetest

import "syscall"

// sysProcAttr kills the servers with the test process, even when the test
// binary dies without running its clean-up.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
