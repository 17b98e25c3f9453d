//go:build linux

package watchdog

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/custos-ha/custos/core/reaper"
	"github.com/custos-ha/custos/testkit/poll"
)

// within bounds every wait for something that should happen after a
// countdown of a few hundred milliseconds: generous, for a loaded machine.
const within = 15 * time.Second

// group stands in for a postmaster and its backends: a shell that leads
// its own group and a sleep it started in a session of its own, as
// PostgreSQL's backends do (setsid), out of the group's reach.
type group struct {
	cmd    *exec.Cmd
	child  int // the sleep, in its own session
	target Target
	done   chan struct{}
	err    error
}

func startGroup(t *testing.T) *group {
	t.Helper()
	cmd := exec.Command("sh", "-c", "setsid sleep 1000 & echo $!; wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the stand-in postmaster: %v", err)
	}
	g := &group{cmd: cmd, done: make(chan struct{})}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err == nil {
		g.child, err = strconv.Atoi(strings.TrimSpace(line))
	}
	if err == nil {
		g.target, err = TargetOf(cmd.Process.Pid)
	}
	go func() {
		g.err = cmd.Wait()
		close(g.done)
	}()
	t.Cleanup(func() {
		_ = unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
		if g.child > 1 {
			_ = unix.Kill(g.child, unix.SIGKILL)
		}
		<-g.done
	})
	if err != nil {
		t.Fatalf("reading the stand-in postmaster: %v", err)
	}
	return g
}

func (g *group) exited() bool { return isClosed(g.done) }

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// killed tells whether the leader died of SIGKILL and the sleep is gone
// too (a zombie counts: nothing reaps orphans here).
func (g *group) killed() bool {
	if !g.exited() {
		return false
	}
	var ee *exec.ExitError
	if !errors.As(g.err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		return false
	}
	st, err := reaper.ReadStat(g.child)
	return err != nil || st.State == 'Z'
}

func (g *group) requireAlive(t *testing.T) {
	t.Helper()
	if g.exited() {
		t.Fatalf("the stand-in postmaster died: %v", g.err)
	}
}

func testExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// newFencer returns the process driver running the real fencing process
// (this test binary, see TestMain).
func newFencer(t *testing.T) (*process, *syncBuffer) {
	t.Helper()
	stderr := &syncBuffer{}
	p := newProcess(testExe(t), stderr, hclog.NewNullLogger()).(*process)
	t.Cleanup(func() { p.close() })
	if err := p.usable(); err != nil {
		t.Fatalf("starting the fencing process: %v", err)
	}
	return p, stderr
}

func (p *process) exitedNow() bool { return isClosed(p.exited) }

func TestFencerKillsWhenNotFed(t *testing.T) {
	t.Parallel()
	g := startGroup(t)
	p, stderr := newFencer(t)
	if _, err := p.arm(300*time.Millisecond, g.target); err != nil {
		t.Fatalf("arm: %v", err)
	}
	poll.Eventually(t, within, "the group of an unfed fence is not killed", g.killed)
	poll.Eventually(t, within, "the fencing process did not exit after firing", p.exitedNow)
	log := stderr.String()
	for _, want := range []string{"not fed for 300ms while armed", "killed the target's process group", "target_pid=" + strconv.Itoa(g.target.Pid)} {
		if !strings.Contains(log, want) {
			t.Errorf("fencer log lacks %q:\n%s", want, log)
		}
	}
	if p.armed() {
		t.Error("the driver says armed after the fencer fired")
	}
	if err := p.feed(); err == nil {
		t.Error("feeding a fencer that fired succeeded")
	}
}

func TestFencerSparesWhileFedAndAfterDisarm(t *testing.T) {
	t.Parallel()
	g := startGroup(t)
	p, stderr := newFencer(t)
	exited := p.exited
	if _, err := p.arm(500*time.Millisecond, g.target); err != nil {
		t.Fatalf("arm: %v", err)
	}
	// Fed every 50 ms for three countdowns.
	for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err := p.feed(); err != nil {
			t.Fatalf("feed: %v", err)
		}
		g.requireAlive(t)
	}
	if err := p.disarm(); err != nil {
		t.Fatalf("disarm: %v", err)
	}
	// Nothing may happen: give a countdown left running twice its length
	// to show itself.
	time.Sleep(time.Second)
	g.requireAlive(t)
	if p.exitedNow() {
		t.Fatalf("the disarmed fencing process exited: %v\n%s", p.waitErr, stderr.String())
	}
	// End of input while disarmed: it exits 0 and kills nothing.
	if err := p.close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	<-exited
	if p.waitErr != nil {
		t.Errorf("fencer exit: %v, want 0\n%s", p.waitErr, stderr.String())
	}
	g.requireAlive(t)
	if strings.Contains(stderr.String(), "killed") {
		t.Errorf("fencer log:\n%s", stderr.String())
	}
}

func TestFencerKillsAfterTheAgentIsGone(t *testing.T) {
	t.Parallel()
	g := startGroup(t)
	p, stderr := newFencer(t)
	if _, err := p.arm(400*time.Millisecond, g.target); err != nil {
		t.Fatalf("arm: %v", err)
	}
	// The agent dies: its end of the pipe closes without a disarm.
	p.in.Close()
	poll.Eventually(t, within, "an armed fencer whose agent is gone did not kill", g.killed)
	// The fencer logs the kill after making it.
	poll.Eventually(t, within, "the fencer did not log the kill", func() bool {
		return strings.Contains(stderr.String(), "killed the target's process group")
	})
	log := stderr.String()
	if !strings.Contains(log, "closed the pipe while armed") || !strings.Contains(log, "killed the target's process group") {
		t.Errorf("fencer log:\n%s", log)
	}
}

func TestFencerOutlivesSignalsToTheAgent(t *testing.T) {
	t.Parallel()
	g := startGroup(t)
	p, _ := newFencer(t)
	pid := p.cmd.Process.Pid
	// Its own session and group: a signal to the agent's group, or from
	// the agent's terminal, does not reach it.
	if sid, err := unix.Getsid(pid); err != nil || sid != pid {
		t.Errorf("fencer session = %d (%v), want its own (%d)", sid, err, pid)
	}
	if pgid, err := unix.Getpgid(pid); err != nil || pgid != pid {
		t.Errorf("fencer process group = %d (%v), want its own (%d)", pgid, err, pid)
	}
	if _, err := p.arm(time.Second, g.target); err != nil {
		t.Fatalf("arm: %v", err)
	}
	// Signals sent to it by name do not end the fence either.
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGINT, unix.SIGHUP} {
		if err := unix.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.feed(); err != nil {
		t.Fatalf("feed after SIGTERM, SIGINT, SIGHUP: %v", err)
	}
	if err := p.disarm(); err != nil {
		t.Fatalf("disarm: %v", err)
	}
	g.requireAlive(t)
}

func TestFencerRefusesAWrongTarget(t *testing.T) {
	t.Parallel()
	g := startGroup(t)
	p, _ := newFencer(t)
	for _, tc := range []struct {
		target Target
		want   string
	}{
		{Target{Pid: g.target.Pid, StartTime: g.target.StartTime + 1}, "another process"},
		{Target{Pid: 1, StartTime: 1}, "no postmaster to fence (pid 1)"},
		{Target{Pid: -g.target.Pid, StartTime: g.target.StartTime}, "no postmaster to fence"},
	} {
		_, err := p.arm(300*time.Millisecond, tc.target)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("arm(%+v) = %v, want an error containing %q", tc.target, err, tc.want)
		}
		if p.armed() {
			t.Errorf("armed after a refused arm (%+v)", tc.target)
		}
	}
	// The fencing process refuses them too, and nonsense: it stays up.
	for cmd, want := range map[string]string{
		"arm 300 1 1":               "target pid 1 refused",
		"arm 300 -1 1":              "target pid -1 refused",
		"arm 0 2 1":                 "out of range",
		"arm 99999999999999999 2 1": "out of range",
		"arm 300 x 1":               "parsing",
		"bogus":                     `unknown command "bogus"`,
	} {
		if err := p.command(cmd); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error containing %q", cmd, err, want)
		}
	}
	if p.alive() != nil {
		t.Fatalf("fencer gone after refusals: %v", p.alive())
	}
	// Armed with a target, then refused a new one: disarmed, nothing fires.
	if _, err := p.arm(300*time.Millisecond, g.target); err != nil {
		t.Fatal(err)
	}
	if _, err := p.arm(300*time.Millisecond, Target{Pid: g.target.Pid, StartTime: 1}); err == nil {
		t.Fatal("re-arm with a wrong start time succeeded")
	}
	time.Sleep(900 * time.Millisecond) // a countdown left running would fire here
	g.requireAlive(t)
}

func TestFireChecksTheStartTime(t *testing.T) {
	t.Parallel()
	g := startGroup(t)
	var log syncBuffer
	f := &fence{logger: hclog.New(&hclog.LoggerOptions{Output: &log}), timeout: time.Second,
		target: Target{Pid: g.target.Pid, StartTime: g.target.StartTime + 1}}
	f.fire()
	g.requireAlive(t)
	if !strings.Contains(log.String(), "another process now, nothing killed") {
		t.Errorf("log:\n%s", log.String())
	}

	// The target exited before the countdown ran out.
	gone := startGroup(t)
	_ = unix.Kill(-gone.target.Pid, unix.SIGKILL)
	<-gone.done
	f.target = gone.target
	f.fire()
	if !strings.Contains(log.String(), "already gone, nothing killed") {
		t.Errorf("log:\n%s", log.String())
	}
}

func TestProcessWatchdog(t *testing.T) {
	t.Parallel()
	g := startGroup(t)
	stderr := &syncBuffer{}
	w := New(Config{Mode: ModeRequired, Driver: DriverProcess, Exe: testExe(t), SafetyMargin: -1, Stderr: stderr}, nil)
	defer w.Close()
	// ttl 2 s and safety_margin -1: a 1 s countdown.
	ttl, loopWait := 2*time.Second, 100*time.Millisecond
	if err := w.Healthy(ttl, loopWait); err != nil {
		t.Fatalf("Healthy: %v", err)
	}
	p := w.drv.(*process)
	first := p.cmd.Process.Pid

	if err := w.Arm(ttl, loopWait, g.target); err != nil {
		t.Fatalf("Arm: %v", err)
	}
	if st := w.Status(); !st.Armed || st.Timeout != time.Second || st.Failed || st.Driver != DriverProcess {
		t.Errorf("status = %+v", st)
	}
	for range 15 {
		if err := w.Feed(); err != nil {
			t.Fatalf("Feed: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // the HA loop's loop_wait
	}
	g.requireAlive(t)
	if err := w.Disarm(); err != nil {
		t.Fatalf("Disarm: %v", err)
	}
	if w.Armed() {
		t.Fatal("armed after Disarm")
	}

	// The fencing process dies while armed: Healthy starts another, Feed
	// says the countdown is gone, Arm starts it again.
	if err := w.Arm(ttl, loopWait, g.target); err != nil {
		t.Fatalf("Arm: %v", err)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	poll.Eventually(t, within, "the killed fencer did not exit", p.exitedNow)
	if err := w.Healthy(ttl, loopWait); err != nil {
		t.Fatalf("Healthy after the fencer died: %v", err)
	}
	if p.cmd == nil || p.cmd.Process.Pid == first {
		t.Fatalf("no new fencing process")
	}
	if err := w.Feed(); err == nil || !strings.Contains(err.Error(), "no longer armed") {
		t.Errorf("Feed after the armed fencer died = %v", err)
	}
	if w.Armed() {
		t.Error("armed after the fencer died")
	}
	if err := w.Arm(ttl, loopWait, g.target); err != nil {
		t.Fatalf("Arm: %v", err)
	}
	if !w.Armed() {
		t.Fatal("not armed again")
	}

	// Armed and no longer fed: the postmaster's group is killed, then the
	// watchdog says it is gone.
	poll.Eventually(t, within, "an unfed process watchdog did not kill", g.killed)
	poll.Eventually(t, within, "the fencer did not exit after firing", p.exitedNow)
	if err := w.Feed(); err == nil || !strings.Contains(err.Error(), "fencing process") {
		t.Errorf("Feed after the fencer fired = %v", err)
	}
	if st := w.Status(); st.Armed || !st.Failed || !strings.Contains(st.Reason, "fencing process") {
		t.Errorf("status after firing = %+v", st)
	}
	if !strings.Contains(stderr.String(), "killed the target's process group") {
		t.Errorf("fencer log:\n%s", stderr.String())
	}
}

func TestProcessWatchdogCannotStart(t *testing.T) {
	t.Parallel()
	missing := t.TempDir() + "/custos"
	w := New(Config{Mode: ModeRequired, Driver: DriverProcess, Exe: missing, SafetyMargin: -1}, nil)
	defer w.Close()
	err := w.Healthy(30*time.Second, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "starting the fencing process "+missing) {
		t.Errorf("Healthy = %v", err)
	}
	if st := w.Status(); !st.Failed || !strings.Contains(st.Reason, missing) {
		t.Errorf("status = %+v", st)
	}

	a := New(Config{Mode: ModeAutomatic, Driver: DriverProcess, Exe: missing, SafetyMargin: -1}, nil)
	defer a.Close()
	if err := a.Healthy(30*time.Second, 10*time.Second); err != nil {
		t.Errorf("automatic Healthy = %v", err)
	}
	if err := a.Arm(30*time.Second, 10*time.Second, Target{Pid: os.Getpid(), StartTime: 1}); err != nil {
		t.Errorf("automatic Arm = %v", err)
	}
	if st := a.Status(); st.Failed || st.Armed || !strings.Contains(st.Reason, missing) {
		t.Errorf("automatic status = %+v", st)
	}
}

func TestFencerThatDoesNotAnswerIsReplaced(t *testing.T) {
	t.Parallel()
	g := startGroup(t)
	p, _ := newFencer(t)
	pid := p.cmd.Process.Pid
	exited := p.exited
	if _, err := p.arm(time.Minute, g.target); err != nil {
		t.Fatalf("arm: %v", err)
	}
	// A stopped fencer cannot answer; the driver must not leave it behind
	// in an unknown state.
	if err := unix.Kill(pid, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	err := p.feed()
	if err == nil || !strings.Contains(err.Error(), "did not answer") {
		t.Errorf("feed to a stopped fencer = %v", err)
	}
	poll.Eventually(t, within, "the stopped fencer was not killed", func() bool { return isClosed(exited) })
	if p.armed() {
		t.Error("armed after the fencer was killed")
	}
	if err := p.usable(); err != nil {
		t.Fatalf("usable: %v", err)
	}
	if p.cmd.Process.Pid == pid {
		t.Error("the stopped fencer was not replaced")
	}
}
