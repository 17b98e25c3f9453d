//go:build unix && !linux

package postgres

import (
	"errors"
	"io/fs"
	"sync"
	"syscall"
	"time"
)

const exitPoll = 200 * time.Millisecond

func killGroup(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }

// processAlive can only ask kill(pid, 0) here; zombies count as alive.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func isPostmasterOf(pid int, dataDir string) bool { return processAlive(pid) }

func watchExit(pid int, done chan struct{}, stop <-chan struct{}, wg *sync.WaitGroup) error {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for processAlive(pid) {
			select {
			case <-stop:
				return
			case <-time.After(exitPoll):
			}
		}
		close(done)
	}()
	return nil
}

func dirWritable(dir string) bool { return syscall.Access(dir, 2) == nil }

func fileOwner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
