package replicatest

import "syscall"

// setParentDeathSignal ends the child run when the root run is killed (go
// test's timeout), so no test process outlives it.
func setParentDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGKILL }
