//go:build linux

package reaper

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
)

// sweepInterval is how often the reaper looks for zombies without being
// woken by SIGCHLD. Signals coalesce and a zombie that is one of our own
// children can hide adopted ones from waitid for a moment, so a periodic
// sweep bounds how long an orphan can stay a zombie; one second is cheap
// (a waitid call when there is nothing to do).
const sweepInterval = time.Second

var (
	mu      sync.Mutex
	refs    int
	stopCh  chan struct{}
	stopped chan struct{}
)

// Start makes the calling process a child subreaper and reaps adopted
// orphans in a goroutine until the returned stop function is called. Calls
// nest: the reaping goroutine runs while at least one Start has not been
// stopped. The subreaper flag stays set after stop.
func Start(logger hclog.Logger) (stop func()) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	logger = logger.Named("reaper")
	mu.Lock()
	defer mu.Unlock()
	refs++
	if refs == 1 {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			logger.Warn("cannot become a child subreaper; orphans go to PID 1", "error", err)
		}
		stopCh = make(chan struct{})
		stopped = make(chan struct{})
		go loop(logger, stopCh, stopped)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			mu.Lock()
			defer mu.Unlock()
			refs--
			if refs == 0 {
				close(stopCh)
				<-stopped
			}
		})
	}
}

// Prepare sets up cmd so that the reaper recognises it as a direct child of
// the agent and leaves its exit status to cmd.Wait: it runs in its own
// process group. Call it before cmd.Start for every command the agent runs.
// Other SysProcAttr fields (Credential, Pdeathsig...) are kept.
func Prepare(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pgid = 0
	cmd.SysProcAttr.Setsid = false
}

func loop(logger hclog.Logger, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGCHLD)
	defer signal.Stop(sigs)
	tick := time.NewTicker(sweepInterval)
	defer tick.Stop()
	for {
		for _, pid := range ReapOrphans() {
			logger.Debug("reaped an adopted orphan", "pid", pid)
		}
		select {
		case <-stop:
			return
		case <-sigs:
		case <-tick.C:
		}
	}
}

// ReapOrphans reaps every zombie child of this process that is not a
// direct child (see the package doc) and returns their pids. The reaping
// goroutine calls it on SIGCHLD; it is exported for tests and for callers
// that want an orphan gone right now.
func ReapOrphans() []int {
	var reaped []int
	for {
		pid, err := peekZombie()
		if err != nil || pid <= 0 {
			return reaped
		}
		if !isOrphan(pid) {
			// Our own child is first in the kernel's list and hides the
			// others from waitid until its Wait runs: look at them all.
			return append(reaped, sweepChildren()...)
		}
		if reap(pid) {
			reaped = append(reaped, pid)
		} else {
			return reaped
		}
	}
}

// peekZombie returns the pid of a zombie child without reaping it, 0 when
// there is none.
func peekZombie() (int, error) {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	if err != nil {
		if errors.Is(err, unix.EINTR) {
			return peekZombie()
		}
		return 0, err
	}
	return siginfoPid(&info), nil
}

// siginfoPid reads si_pid, the first field of the union that follows
// si_signo, si_errno and si_code, aligned like a pointer.
func siginfoPid(info *unix.Siginfo) int {
	off := uintptr(12)
	if align := unsafe.Sizeof(uintptr(0)); off%align != 0 {
		off += align - off%align
	}
	return int(*(*int32)(unsafe.Add(unsafe.Pointer(info), off)))
}

func reap(pid int) bool {
	var ws unix.WaitStatus
	for {
		got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && got == pid
	}
}

// sweepChildren reaps the orphan zombies among all children of this
// process, found through /proc.
func sweepChildren() []int {
	var reaped []int
	for _, pid := range children() {
		st, err := ReadStat(pid)
		if err != nil || st.State != 'Z' {
			continue
		}
		if isOrphan(pid) && reap(pid) {
			reaped = append(reaped, pid)
		}
	}
	return reaped
}

// children lists the children of every thread of this process. Orphans are
// re-parented to some live thread of the subreaper, so all threads count.
func children() []int { return Children(os.Getpid()) }

// Children lists the children of every thread of process pid (a
// postmaster's backends, which lead sessions of their own and so escape a
// kill of its process group).
func Children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var pids []int
	seen := map[int]bool{}
	if len(tasks) > 0 {
		for _, f := range tasks {
			data, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			for _, field := range strings.Fields(string(data)) {
				if child, err := strconv.Atoi(field); err == nil && !seen[child] {
					seen[child] = true
					pids = append(pids, child)
				}
			}
		}
		return pids
	}
	// Kernels without CONFIG_PROC_CHILDREN: scan every process.
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := ReadStat(child); err == nil && st.PPid == pid {
			pids = append(pids, child)
		}
	}
	return pids
}

// isOrphan tells whether the zombie child pid was adopted rather than
// started by this process.
func isOrphan(pid int) bool {
	st, err := ReadStat(pid)
	if err != nil {
		return false // already gone, or unreadable: leave it alone
	}
	if st.Pgrp == pid && st.Session != pid && !pidfdsWork() {
		// Started through Prepare, as far as can be told without pidfds.
		// With them (below) a group leader is told apart from one that was
		// started by a process that died and left it to us, such as the
		// postmaster of a SIGKILLed agent under a bench or test harness.
		return false
	}
	return !holdsPidfd(pid)
}

// pidfdsWork tells whether the kernel gives pidfds, which os/exec then
// holds for every child it starts until Wait returns.
var pidfdsWork = sync.OnceValue(func() bool {
	fd, err := unix.PidfdOpen(os.Getpid(), 0)
	if err != nil {
		return false
	}
	_ = unix.Close(fd)
	return true
})

// holdsPidfd tells whether this process has a pidfd open for pid, as
// os/exec does for the children it starts.
func holdsPidfd(pid int) bool {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return false
	}
	want := []byte("Pid:\t" + strconv.Itoa(pid) + "\n")
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || target != "anon_inode:[pidfd]" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err == nil && bytes.Contains(info, want) {
			return true
		}
	}
	return false
}

// Stat holds the fields of /proc/<pid>/stat the agent looks at.
type Stat struct {
	Pid     int
	Comm    string
	State   byte // R, S, D, Z, T, ...
	PPid    int
	Pgrp    int
	Session int
	// StartTime is the process start time in clock ticks since boot.
	StartTime uint64
}

// ReadStat reads /proc/<pid>/stat. It is exported for core/postgres, which
// judges whether a postmaster is alive (a zombie is not).
func ReadStat(pid int) (Stat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, err
	}
	return parseStat(data)
}

func parseStat(data []byte) (Stat, error) {
	// pid (comm) state ppid pgrp session ...; comm may hold spaces and
	// parentheses, so split at the last ')'.
	open := bytes.IndexByte(data, '(')
	closing := bytes.LastIndexByte(data, ')')
	if open < 0 || closing < open {
		return Stat{}, fmt.Errorf("parsing /proc stat %q: no command name", data)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data[:open])))
	if err != nil {
		return Stat{}, fmt.Errorf("parsing /proc stat pid: %w", err)
	}
	st := Stat{Pid: pid, Comm: string(data[open+1 : closing])}
	sc := bufio.NewScanner(bytes.NewReader(data[closing+1:]))
	sc.Split(bufio.ScanWords)
	var fields []string
	for sc.Scan() {
		fields = append(fields, sc.Text())
	}
	// fields[0] is field 3 (state); starttime is field 22.
	if len(fields) < 20 || len(fields[0]) != 1 {
		return Stat{}, fmt.Errorf("parsing /proc stat of %d: %d fields", pid, len(fields))
	}
	st.State = fields[0][0]
	ints := []*int{&st.PPid, &st.Pgrp, &st.Session}
	for i, p := range ints {
		if *p, err = strconv.Atoi(fields[1+i]); err != nil {
			return Stat{}, fmt.Errorf("parsing /proc stat of %d: %w", pid, err)
		}
	}
	if st.StartTime, err = strconv.ParseUint(fields[19], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("parsing /proc stat of %d: %w", pid, err)
	}
	return st, nil
}
