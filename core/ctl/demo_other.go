//go:build !linux

package ctl

import (
	"syscall"
	"time"
)

// demoSupported: the demo needs Linux (process credentials, parent-death
// signals, Debian's PostgreSQL layout).
const demoSupported = false

func agentSysProcAttr(*osUser) *syscall.SysProcAttr { return &syscall.SysProcAttr{} }

func killGroup(int, syscall.Signal) {}

func checkReachable(string, *osUser) error { return nil }

func stopLeftoverPostmaster(string, time.Duration) (int, error) { return 0, nil }

func postmasterPid(string) int { return 0 }
