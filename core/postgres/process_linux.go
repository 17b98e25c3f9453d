//go:build linux

package postgres

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/custos-ha/custos/core/reaper"
)

// exitPollMillis is the poll timeout of the pidfd watcher: an exit wakes
// it at once; the timeout only bounds how late it notices Close.
const exitPollMillis = 200

func killGroup(pid int) error { return syscall.Kill(-pid, syscall.SIGKILL) }

// processAlive: the process exists and is not a zombie. Never judge by
// kill(pid, 0): a zombie nobody reaps answers it forever.
func processAlive(pid int) bool {
	st, err := reaper.ReadStat(pid)
	return err == nil && st.State != 'Z' && st.State != 'X'
}

// isPostmasterOf tells whether pid is a live PostgreSQL process whose
// working directory is dataDir (a postmaster chdirs into its data
// directory), which rules out a pid reused by something else.
func isPostmasterOf(pid int, dataDir string) bool {
	if !processAlive(pid) {
		return false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err == nil {
		want, werr := filepath.EvalSymlinks(dataDir)
		if werr != nil {
			want = dataDir
		}
		return filepath.Clean(cwd) == filepath.Clean(want) || filepath.Clean(cwd) == filepath.Clean(dataDir)
	}
	// Another user's process: go by the command name.
	st, err := reaper.ReadStat(pid)
	return err == nil && (strings.HasPrefix(st.Comm, "postgres") || strings.HasPrefix(st.Comm, "postmaster"))
}

// watchExit closes done when pid exits, through a pidfd (poll wakes the
// moment the process dies), or by polling /proc where pidfds are missing.
// The goroutine ends on exit or when stop is closed.
func watchExit(pid int, done chan struct{}, stop <-chan struct{}, wg *sync.WaitGroup) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		close(done)
		return nil
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err == nil {
			exited := pollPidfd(fd, stop)
			// Closed as soon as the process is gone: the reaper leaves
			// alone zombie children we hold a pidfd for.
			unix.Close(fd)
			if exited {
				close(done)
				return
			}
			select {
			case <-stop:
				return
			default: // poll failed: fall back to /proc
			}
		}
		for processAlive(pid) {
			select {
			case <-stop:
				return
			case <-time.After(exitPollMillis * time.Millisecond):
			}
		}
		close(done)
	}()
	return nil
}

// pollPidfd waits until the pidfd is readable (the process exited): true;
// false when stop is closed or poll fails.
func pollPidfd(fd int, stop <-chan struct{}) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, exitPollMillis)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return false
		}
		if n > 0 {
			return true
		}
		select {
		case <-stop:
			return false
		default:
		}
	}
}

func dirWritable(dir string) bool { return unix.Access(dir, unix.W_OK) == nil }

func fileOwner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
