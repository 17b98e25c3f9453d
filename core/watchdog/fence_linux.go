//go:build linux

package watchdog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/custos-ha/custos/core/reaper"
)

// FenceMain is the fencing process (see the protocol in fence.go). It
// returns the exit code.
func FenceMain(stdin io.Reader, stdout, stderr io.Writer) int {
	// Signals sent to the agent's process group or session never reach
	// this process: the agent starts it in a session of its own. Those
	// sent to it by name would end the fence while PostgreSQL runs on, so
	// they are ignored: a disarm and the end of input, or SIGKILL, end it.
	// With SIGPIPE ignored, answering a dead agent is an error, not death.
	signal.Ignore(unix.SIGPIPE, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	logger := hclog.New(&hclog.LoggerOptions{
		Name:   "watchdog-fencer",
		Output: stderr,
		Level:  hclog.Info,
	}).With("pid", os.Getpid())

	lines := make(chan string)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-done:
				return
			}
		}
	}()
	f := &fence{out: stdout, logger: logger, timer: time.NewTimer(time.Hour)}
	f.timer.Stop()
	fmt.Fprintln(stdout, fenceReady)
	return f.run(lines)
}

type fence struct {
	out      io.Writer
	logger   hclog.Logger
	timer    *time.Timer // runs while armed; the deadline decides
	armed    bool
	timeout  time.Duration
	deadline time.Time // on the monotonic clock (time.Now's reading)
	target   Target
}

func (f *fence) run(lines <-chan string) int {
	for {
		var expired <-chan time.Time
		if f.armed {
			expired = f.timer.C
		}
		select {
		case line, ok := <-lines:
			if !ok {
				if !f.armed {
					return fenceExitDone
				}
				lines = nil
				f.logger.Warn("the agent closed the pipe while armed: the countdown goes on",
					"remaining", time.Until(f.deadline).Round(time.Millisecond), "target_pid", f.target.Pid)
				continue
			}
			if err := f.handle(line); err != nil {
				fmt.Fprintln(f.out, fenceError, err)
			} else {
				fmt.Fprintln(f.out, fenceOK)
			}
		case <-expired:
			if left := time.Until(f.deadline); left > 0 {
				f.timer.Reset(left)
				continue
			}
			f.fire()
			return fenceExitFired
		}
	}
}

func (f *fence) handle(line string) error {
	fields := strings.Fields(line)
	if len(fields) == 0 {
		return errors.New("empty command")
	}
	switch fields[0] {
	case fenceArm:
		// A refused arm disarms: the agent asked for a countdown it does
		// not get, and it is told so.
		f.disarm()
		if len(fields) != 4 {
			return fmt.Errorf("usage: %s <timeout ms> <pid> <start time>", fenceArm)
		}
		ms, err1 := strconv.ParseInt(fields[1], 10, 64)
		pid, err2 := strconv.Atoi(fields[2])
		start, err3 := strconv.ParseUint(fields[3], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return fmt.Errorf("parsing %q: %w", line, err)
		}
		if ms <= 0 || ms > maxFenceTimeout.Milliseconds() {
			return fmt.Errorf("timeout %dms out of range (1ms to %v)", ms, maxFenceTimeout)
		}
		t := Target{Pid: pid, StartTime: start}
		if err := checkTarget(t); err != nil {
			return err
		}
		f.armed, f.timeout, f.target = true, time.Duration(ms)*time.Millisecond, t
		f.feed()
		return nil
	case fenceFeed:
		if f.armed {
			f.feed()
		}
		return nil
	case fenceDisarm:
		f.disarm()
		return nil
	}
	return fmt.Errorf("unknown command %q", fields[0])
}

func (f *fence) feed() {
	f.deadline = time.Now().Add(f.timeout)
	f.timer.Reset(f.timeout)
}

func (f *fence) disarm() {
	f.armed = false
	f.timer.Stop()
}

// checkTarget refuses a pid that cannot be the postmaster or does not have
// that start time now.
func checkTarget(t Target) error {
	if t.Pid <= 1 || t.Pid == os.Getpid() {
		// kill(-1) would signal every process we may signal.
		return fmt.Errorf("target pid %d refused", t.Pid)
	}
	st, err := reaper.ReadStat(t.Pid)
	if err != nil {
		return fmt.Errorf("target pid %d: %w", t.Pid, err)
	}
	if st.StartTime != t.StartTime {
		return fmt.Errorf("target pid %d started at %d, not %d: another process", t.Pid, st.StartTime, t.StartTime)
	}
	if st.State == 'Z' || st.State == 'X' {
		return fmt.Errorf("target pid %d has exited", t.Pid)
	}
	return nil
}

// fire kills the target's process group, and the target itself should it
// not lead one, unless the pid is gone or now another process's.
func (f *fence) fire() {
	t := f.target
	why := fmt.Sprintf("not fed for %v while armed", f.timeout)
	st, err := reaper.ReadStat(t.Pid)
	if err != nil {
		f.logger.Error(why+": the target is already gone, nothing killed", "target_pid", t.Pid, "error", err)
		return
	}
	if st.StartTime != t.StartTime {
		f.logger.Error(why+": the target pid is another process now, nothing killed", "target_pid", t.Pid, "start_time", st.StartTime, "want_start_time", t.StartTime)
		return
	}
	// PostgreSQL's backends and auxiliary processes each lead a session
	// of their own (setsid), so the group alone would miss them: a backend
	// in the middle of a commit could finish it after the postmaster died.
	// They are listed before the postmaster goes (its children are
	// re-parented then) and killed with it.
	kids := reaper.Children(t.Pid)
	gerr := unix.Kill(-t.Pid, unix.SIGKILL)
	perr := unix.Kill(t.Pid, unix.SIGKILL)
	for _, k := range kids {
		_ = unix.Kill(k, unix.SIGKILL)
	}
	switch {
	case gerr == nil:
		f.logger.Error(why+": killed the target's process group with SIGKILL", "target_pid", t.Pid, "command", st.Comm)
	case perr == nil:
		f.logger.Error(why+": killed the target with SIGKILL (it leads no process group)", "target_pid", t.Pid, "command", st.Comm, "group_error", gerr)
	default:
		f.logger.Error(why+": could not kill the target", "target_pid", t.Pid, "command", st.Comm, "error", errors.Join(gerr, perr))
	}
}
