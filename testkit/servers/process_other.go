//go:build !linux

package servers

import "syscall"

func dieWithParent(attr *syscall.SysProcAttr) {}
