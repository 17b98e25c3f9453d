package replica

import "syscall"

// setParentDeathSignal has the kernel kill the tool when the plugin
// process dies, so a copy never outlives the plugin that owns it.
func setParentDeathSignal(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGKILL
}
