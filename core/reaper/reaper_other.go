//go:build !linux

package reaper

import (
	"errors"
	"os/exec"

	"github.com/hashicorp/go-hclog"
)

// Start does nothing on this platform: there is no child subreaper.
func Start(logger hclog.Logger) (stop func()) { return func() {} }

// Prepare does nothing on this platform.
func Prepare(cmd *exec.Cmd) {}

// ReapOrphans does nothing on this platform.
func ReapOrphans() []int { return nil }

// Children is not available on this platform.
func Children(pid int) []int { return nil }

// Stat holds the fields of /proc/<pid>/stat the agent looks at.
type Stat struct {
	Pid       int
	Comm      string
	State     byte
	PPid      int
	Pgrp      int
	Session   int
	StartTime uint64
}

// ReadStat is not available on this platform.
func ReadStat(pid int) (Stat, error) {
	return Stat{}, errors.New("reading /proc: not supported on this platform")
}
