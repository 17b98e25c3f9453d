//go:build linux

package reaper

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/goleak"

	"github.com/custos-ha/custos/testkit/poll"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// spawnOrphan runs a shell (a direct child) that starts `sleep d` in the
// background and exits at once; it returns the pid of the sleep, which the
// subreaper adopts.
func spawnOrphan(t *testing.T, d time.Duration, prepare bool) int {
	t.Helper()
	cmd := exec.Command("sh", "-c", fmt.Sprintf("sleep %.3f >/dev/null 2>&1 & echo $!", d.Seconds()))
	if prepare {
		Prepare(cmd)
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("running the orphan maker: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("orphan maker printed %q", out)
	}
	return pid
}

// waitGone polls until /proc/<pid> is gone: a zombie still has an entry.
func waitGone(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	poll.Eventually(t, within, fmt.Sprintf("pid %d gone from /proc", pid), func() error {
		st, err := ReadStat(pid)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("state %c, ppid %d", st.State, st.PPid)
	})
}

func TestOrphanIsAdoptedAndReaped(t *testing.T) {
	stop := Start(hclog.NewNullLogger())
	defer stop()

	pid := spawnOrphan(t, 300*time.Millisecond, true)
	st, err := ReadStat(pid)
	if err != nil {
		t.Fatalf("grandchild %d vanished before it should have: %v", pid, err)
	}
	if st.PPid != os.Getpid() {
		t.Fatalf("grandchild %d has parent %d, want this process %d (not a subreaper?)", pid, st.PPid, os.Getpid())
	}
	// Without the reaper it would stay a zombie for good: PID 1 does not
	// reap here, and neither does this process otherwise.
	waitGone(t, pid, 3*time.Second)
}

// TestAdoptedGroupLeaderIsReaped: a process that leads its own process
// group (as a postmaster the agent started through Prepare does) and whose
// parent died is reaped too, not mistaken for one of our own children.
func TestAdoptedGroupLeaderIsReaped(t *testing.T) {
	stop := Start(hclog.NewNullLogger())
	defer stop()

	// perl forks a child that makes itself a process group leader in
	// perl's session, then exits.
	out, err := exec.Command("perl", "-e", `if (my $p = fork) { select(undef, undef, undef, 0.05); print "$p\n" } else { setpgrp(0, 0); open(STDOUT, ">", "/dev/null"); open(STDERR, ">", "/dev/null"); exec "sleep", "1" }`).Output()
	if err != nil {
		t.Fatalf("running the orphan maker: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("orphan maker printed %q", out)
	}
	st, err := ReadStat(pid)
	if err != nil {
		t.Fatalf("grandchild %d vanished before it should have: %v", pid, err)
	}
	if st.Pgrp != pid || st.Session == pid {
		t.Fatalf("grandchild %d: process group %d, session %d; want a group leader outside its session", pid, st.Pgrp, st.Session)
	}
	waitGone(t, pid, 3*time.Second)
}

func TestDirectChildStatusIsNotStolen(t *testing.T) {
	stop := Start(hclog.NewNullLogger())
	defer stop()

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	// Orphans die all the time while direct children exit with a status.
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command("sh", "-c", "sleep 0.05 & sleep 0.05 & exit 0")
			Prepare(cmd)
			if err := cmd.Run(); err != nil {
				errs <- fmt.Errorf("orphan maker: %w", err)
			}
		}()
	}
	for i := 0; i < 20; i++ {
		wg.Add(1)
		prepare := i%2 == 0 // without Prepare the pidfd rule protects it
		go func() {
			defer wg.Done()
			code := 3 + i%5
			cmd := exec.Command("sh", "-c", fmt.Sprintf("sleep 0.0%d; exit %d", i%10, code))
			if prepare {
				Prepare(cmd)
			}
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != code {
				errs <- fmt.Errorf("direct child (prepared=%v): got %v, want exit status %d", prepare, err, code)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A zombie direct child whose Wait has not run yet comes first in the
// kernel's list; orphans behind it must be reaped anyway, and the child's
// status must still reach Wait afterwards.
func TestPendingDirectChildDoesNotHideOrphans(t *testing.T) {
	stop := Start(hclog.NewNullLogger())
	defer stop()

	for _, prepare := range []bool{true, false} {
		t.Run(fmt.Sprintf("prepared=%v", prepare), func(t *testing.T) {
			direct := exec.Command("sh", "-c", "exit 9")
			if prepare {
				Prepare(direct)
			}
			if err := direct.Start(); err != nil {
				t.Fatal(err)
			}
			waitZombie(t, direct.Process.Pid)

			pid := spawnOrphan(t, 100*time.Millisecond, true)
			waitGone(t, pid, 3*time.Second)

			err := direct.Wait()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 9 {
				t.Fatalf("direct child: got %v, want exit status 9", err)
			}
		})
	}
}

func waitZombie(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		st, err := ReadStat(pid)
		if err != nil {
			t.Fatalf("direct child %d: %v", pid, err)
		}
		if st.State == 'Z' {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("direct child %d did not exit (state %c)", pid, st.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStartNests(t *testing.T) {
	stop1 := Start(nil)
	stop2 := Start(nil)
	stop1()
	stop1() // idempotent
	pid := spawnOrphan(t, 50*time.Millisecond, true)
	waitGone(t, pid, 3*time.Second) // stop2 still holds the goroutine
	stop2()
}

func TestParseStat(t *testing.T) {
	line := []byte("4242 (post gres: a) b)) Z 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 0 0 18446744073709551615\n")
	st, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	want := Stat{Pid: 4242, Comm: "post gres: a) b)", State: 'Z', PPid: 17, Pgrp: 4242, Session: 4242, StartTime: 987654}
	if st != want {
		t.Fatalf("parseStat = %+v, want %+v", st, want)
	}
	for _, bad := range []string{"", "12 comm S 1", "x (a) S 1 2 3", "12 (a) S 1 2"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) succeeded", bad)
		}
	}
	self, err := ReadStat(os.Getpid())
	if err != nil || self.Pid != os.Getpid() || self.State == 'Z' || !bytes.Contains([]byte(os.Args[0]), []byte(self.Comm[:1])) {
		t.Fatalf("ReadStat(self) = %+v, %v", self, err)
	}
}
