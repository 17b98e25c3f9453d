package servers

import "syscall"

// dieWithParent makes the kernel kill the server when the test binary
// dies, even when the test's clean-up does not run.
func dieWithParent(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
