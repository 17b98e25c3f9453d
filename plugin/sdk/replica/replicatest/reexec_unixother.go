//go:build unix && !linux

package replicatest

import "syscall"

func setParentDeathSignal(*syscall.SysProcAttr) {}
