//go:build !linux

package testenv

import "syscall"

func dieWithParent(attr *syscall.SysProcAttr) {}
