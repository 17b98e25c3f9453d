//go:build linux

package ctl

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// demoSupported: the demo needs Linux (process credentials, parent-death
// signals, Debian's PostgreSQL layout).
const demoSupported = true

// agentSysProcAttr runs an agent as u (nil: as custosctl's user) and sends
// it SIGTERM, so it stops PostgreSQL and leaves, should custosctl die
// without cleaning up.
func agentSysProcAttr(u *osUser) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if u != nil {
		a.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
	}
	return a
}

// killGroup signals a whole process group.
func killGroup(pgid int, sig syscall.Signal) { _ = syscall.Kill(-pgid, sig) }

// checkReachable reports what keeps u from running path: a directory on
// the way it cannot search, or the file it cannot execute (root's rights
// are not u's).
func checkReachable(path string, u *osUser) error {
	if u == nil {
		return nil
	}
	path, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for p := path; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		var bit os.FileMode = 0o001
		switch {
		case st.Uid == u.UID:
			bit = 0o100
		case st.Gid == u.GID || containsUint32(u.Groups, st.Gid):
			bit = 0o010
		}
		if fi.Mode().Perm()&bit == 0 {
			what := "search the directory"
			if p == path && !fi.IsDir() {
				what = "execute"
			}
			return fmt.Errorf("the %s user cannot %s %s (mode %s), so it cannot run %s: put the binaries where others can read them (e.g. /opt/custos), or run the demo as a user that may run PostgreSQL",
				u.Name, what, p, fi.Mode().Perm(), path)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func containsUint32(list []uint32, v uint32) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// stopLeftoverPostmaster ends a postmaster that outlived its agent (the
// agent was SIGKILLed): fast shutdown, then SIGKILL after wait. It returns
// the postmaster's pid, 0 when there was none.
func stopLeftoverPostmaster(dataDir string, wait time.Duration) (int, error) {
	pid := postmasterPid(dataDir)
	if pid == 0 {
		return 0, nil
	}
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return 0, nil
		}
		return pid, fmt.Errorf("stopping the postmaster %d of %s: %w", pid, dataDir, err)
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if !isLivePostgres(pid) {
			return pid, nil
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return pid, nil
}

// postmasterPid is the pid of the running postmaster of a data directory,
// 0 when none runs there.
func postmasterPid(dataDir string) int {
	data, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	pid, err := strconv.Atoi(string(bytes.TrimSpace(line)))
	if err != nil || pid <= 0 || !isLivePostgres(pid) {
		return 0
	}
	return pid
}

// isLivePostgres reports whether pid is a running (not zombie) postgres
// process: a pid from a stale postmaster.pid may since belong to anyone.
func isLivePostgres(pid int) bool {
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil || string(bytes.TrimSpace(comm)) != "postgres" {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] != 'Z' && stat[i+2] != 'X'
}
