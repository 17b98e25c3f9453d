//go:build integration

package plugins

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
	"github.com/custos-ha/custos/testkit/poll"
)

// openMemory starts the test plugin supervised and configures it.
func openMemory(t *testing.T, th *testHost) *SupervisedDCS {
	t.Helper()
	ctx := context.Background()
	s, err := th.OpenDCS(ctx, "memory")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	if err := s.Configure(ctx, dcs.ConfigureRequest{Scope: "batman", Member: "m1", TTL: 5 * time.Second}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetTTL(ctx, 7*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.TouchMember(ctx, []byte(`{"role":"replica"}`)); err != nil {
		t.Fatal(err)
	}
	return s
}

// crash kills the plugin process the way the OOM killer would.
func crash(t *testing.T, s *SupervisedDCS) int {
	t.Helper()
	pid := s.Pid()
	if pid <= 0 {
		t.Fatalf("no plugin process to kill (pid %d)", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", pid, err)
	}
	return pid
}

// A process that ran fine and is killed is replaced at once (no backoff),
// and the next call waits for the new process instead of failing.
func TestSupervisedDCSRestartsAKilledPlugin(t *testing.T) {
	th := newTestHost(t, nil)
	// Every process counts as having run fine: the test plugin is killed
	// a moment after its start.
	th.restartStable = 0
	installPlugin(t, th.dir, "dcs-memory", nil)
	s := openMemory(t, th)
	ctx := context.Background()
	if _, err := s.GetCluster(ctx); err != nil {
		t.Fatal(err)
	}

	pid := crash(t, s)
	// The very next call runs on the new process. GetCluster needs a
	// configured backend: success means the new process got the
	// Configure replayed.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := s.GetCluster(cctx); err != nil {
		t.Fatalf("first call after the crash: %v", err)
	}

	if got := s.Pid(); got == pid || got <= 0 {
		t.Errorf("pid after restart %d (was %d)", got, pid)
	}
	if !processGone(pid) {
		t.Errorf("killed process %d still there", pid)
	}
	if n := s.Restarts(); n != 1 {
		t.Errorf("%d restarts, want 1", n)
	}
	if err := s.TouchMember(ctx, []byte(`{}`)); err != nil {
		t.Errorf("TouchMember after restart: %v", err)
	}

	restarting := th.logs.withMessage(t, "restarting plugin", "plugin", "dcs-memory")
	if len(restarting) != 1 || restarting[0]["reason"] != "plugin process exited" || restarting[0]["attempt"] != float64(1) || restarting[0]["backoff"] != "0s" {
		t.Errorf("restart log lines (want one, attempt 1, backoff 0s): %v", restarting)
	}
	if got := th.logs.withMessage(t, "plugin restarted", "plugin", "dcs-memory", "attempt", "1"); len(got) != 1 {
		t.Errorf("no 'plugin restarted' line: %v", got)
	}
	// The plugin logs what it was given: Configure and SetTTL twice each,
	// once by the caller and once replayed after the restart.
	poll.Eventually(t, 5*time.Second, "Configure and SetTTL replayed", func() bool {
		return len(th.logs.withMessage(t, "configured", "scope", "batman", "member", "m1", "ttl", "5s")) == 2 &&
			len(th.logs.withMessage(t, "ttl set", "ttl", "7s")) == 2
	})

}

func TestSupervisedDCSWatchEndsWhenThePluginDies(t *testing.T) {
	th := newTestHost(t, nil)
	installPlugin(t, th.dir, "dcs-memory", nil)
	s := openMemory(t, th)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	watch := func() (chan dcs.Event, chan error) {
		events := make(chan dcs.Event, 100)
		done := make(chan error, 1)
		go func() {
			done <- s.Watch(ctx, func(e dcs.Event) {
				select {
				case events <- e:
				default:
				}
			})
		}()
		return events, done
	}
	// waitEvent writes keys until the watch reports one: the watch may not
	// be registered yet when the first write happens.
	waitEvent := func(events chan dcs.Event) {
		t.Helper()
		poll.Eventually(t, 5*time.Second, "a watch event", func() bool {
			if err := s.Set(ctx, dcs.KeyStatus, []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			select {
			case <-events:
				return true
			case <-time.After(50 * time.Millisecond):
				return false
			}
		})

	}

	events, done := watch()
	waitEvent(events)
	crash(t, s)
	select {
	case err := <-done:
		if !errors.Is(err, dcs.ErrUnavailable) {
			t.Errorf("watch ended with %v, want ErrUnavailable", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not end within 5 s of the plugin's death")
	}

	// The caller re-subscribes once the plugin is back.
	poll.Eventually(t, 10*time.Second, "plugin back", func() bool {
		_, err := s.GetCluster(ctx)
		return err == nil
	})

	events, done = watch()
	waitEvent(events)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("cancelled watch returned %v", err)
	}
}

// A process that dies young, then starts that fail, are retried with a
// backoff that grows up to its cap; calls meanwhile wait for a process
// until their deadline and fail as unavailable.
func TestSupervisedDCSCrashLoopBacksOff(t *testing.T) {
	th := newTestHost(t, nil)
	th.restartMin, th.restartMax = 10*time.Millisecond, 40*time.Millisecond
	// The first process, killed a moment after its start, died young.
	th.restartStable = time.Hour
	bin := installPlugin(t, th.dir, "dcs-memory", nil)
	s := openMemory(t, th)
	ctx := context.Background()

	setKnobs(t, bin.Path, knobs{CrashAtStart: true})
	crash(t, s)
	// 10, 20, 40, 40, 40, 40 ms: growth, then the cap several times.
	const attempts = 6
	poll.Eventually(t, 20*time.Second, fmt.Sprintf("%d restart attempts", attempts), func() bool {
		cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		if _, err := s.GetCluster(cctx); !errors.Is(err, dcs.ErrUnavailable) || !strings.Contains(err.Error(), "not running") {
			t.Fatalf("call during the crash loop: want ErrUnavailable (not running), got %v", err)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("call with a 50 ms deadline during the crash loop took %s", took)
		}
		return len(th.logs.withMessage(t, "restarting plugin")) >= attempts
	})

	lines := th.logs.withMessage(t, "restarting plugin")
	var waits []time.Duration
	for i, e := range lines {
		if e["attempt"] != float64(i+1) {
			t.Errorf("line %d has attempt %v", i, e["attempt"])
		}
		d, err := time.ParseDuration(fmt.Sprint(e["backoff"]))
		if err != nil {
			t.Fatalf("backoff %v: %v", e["backoff"], err)
		}
		waits = append(waits, d)
		if i > 0 && !strings.Contains(fmt.Sprint(e["reason"]), "dcs-memory") {
			t.Errorf("attempt %d gives reason %q, want the start error naming the plugin", i+1, e["reason"])
		}
	}
	if waits[0] != th.restartMin {
		t.Errorf("first backoff %s, want %s", waits[0], th.restartMin)
	}
	for i := 1; i < len(waits); i++ {
		if waits[i] < waits[i-1] || waits[i] > th.restartMax {
			t.Errorf("backoffs %v do not grow up to the cap %s", waits, th.restartMax)
			break
		}
	}
	if last := waits[len(waits)-1]; last != th.restartMax {
		t.Errorf("backoff after %d attempts is %s, want the cap %s", len(waits), last, th.restartMax)
	}

	// Fixed: the plugin comes back, configured.
	setKnobs(t, bin.Path, knobs{})
	poll.Eventually(t, 10*time.Second, "plugin back after the crash loop", func() bool {
		_, err := s.GetCluster(ctx)
		return err == nil
	})

	if n := s.Restarts(); n != 1 {
		t.Errorf("%d successful restarts, want 1", n)
	}
}

// Close during a long backoff returns at once, and so do the calls
// waiting for the next process.
func TestSupervisedDCSCloseDuringBackoffIsPrompt(t *testing.T) {
	th := newTestHost(t, nil)
	th.restartMin, th.restartMax, th.restartStable = time.Minute, time.Minute, time.Hour
	installPlugin(t, th.dir, "dcs-memory", nil)
	s := openMemory(t, th)
	ctx := context.Background()

	crash(t, s)
	poll.Eventually(t, 5*time.Second, "restart scheduled", func() bool {
		return len(th.logs.withMessage(t, "restarting plugin")) == 1
	})

	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := s.GetCluster(cctx); !errors.Is(err, dcs.ErrUnavailable) || !strings.Contains(err.Error(), "not running") {
		t.Errorf("call while down, with a deadline: %v", err)
	}
	// A call without a deadline waits for the process, until Close.
	waiting := make(chan error, 1)
	go func() {
		_, err := s.GetCluster(ctx)
		waiting <- err
	}()
	start := time.Now()
	if err := s.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close during a 1 minute backoff took %s", took)
	}
	select {
	case err := <-waiting:
		if !errors.Is(err, dcs.ErrUnavailable) || !strings.Contains(err.Error(), "closed") {
			t.Errorf("a call waiting for the process when Close came: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("a call waiting for the process did not return within 5 s of Close")
	}
	if _, err := s.GetCluster(ctx); !errors.Is(err, dcs.ErrUnavailable) {
		t.Errorf("call after Close: %v", err)
	}
}

func TestSupervisedDCSCloseEndsTheProcess(t *testing.T) {
	th := newTestHost(t, nil)
	installPlugin(t, th.dir, "dcs-memory", nil)
	s := openMemory(t, th)
	pid := s.Pid()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !processGone(pid) {
		t.Errorf("plugin process %d survived Close", pid)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.RenewLeader(context.Background()); !errors.Is(err, dcs.ErrUnavailable) || !strings.Contains(err.Error(), "closed") {
		t.Errorf("call after Close: %v", err)
	}
	if got := th.logs.withMessage(t, "restarting plugin"); len(got) != 0 {
		t.Errorf("Close led to a restart: %v", got)
	}
}

func TestSupervisedDCSRefusesAReplacedIdentity(t *testing.T) {
	th := newTestHost(t, nil)
	th.restartMin, th.restartMax = 10*time.Millisecond, 20*time.Millisecond
	bin := installPlugin(t, th.dir, "dcs-memory", nil)
	s := openMemory(t, th)
	setKnobs(t, bin.Path, knobs{Name: "impostor"})
	crash(t, s)
	poll.Eventually(t, 5*time.Second, "restart refused for the new identity", func() bool {
		for _, e := range th.logs.withMessage(t, "restarting plugin") {
			if strings.Contains(fmt.Sprint(e["reason"]), `not the dcs plugin "memory"`) {
				return true
			}
		}
		return false
	})

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := s.GetCluster(ctx); !errors.Is(err, dcs.ErrUnavailable) {
		t.Errorf("call while the impostor is refused: %v", err)
	}
}

// A plugin whose calls hang, deaf to their deadline, is killed after
// maxMissedDeadlines misses in a row and a fresh process serves; fewer
// misses, or misses broken by a call answered in time, cost nothing.
func TestSupervisedDCSKillsAPluginThatMissesDeadlines(t *testing.T) {
	th := newTestHost(t, nil)
	th.restartMin, th.restartMax = 10*time.Millisecond, 50*time.Millisecond
	hang := filepath.Join(t.TempDir(), "hang")
	installPlugin(t, th.dir, "dcs-memory", &knobs{HangWhile: hang})
	s := openMemory(t, th)
	pid := s.Pid()

	miss := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := s.GetCluster(ctx); !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, dcs.ErrUnavailable) {
			t.Fatalf("a hanging call: %v", err)
		}
	}
	answer := func() {
		t.Helper()
		if _, err := s.GetCluster(context.Background()); err != nil {
			t.Fatalf("a call answered in time: %v", err)
		}
	}
	setHang := func(on bool) {
		t.Helper()
		if on {
			if err := os.WriteFile(hang, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		} else if err := os.Remove(hang); err != nil {
			t.Fatal(err)
		}
	}

	// Two misses, an answer, two misses: never three in a row.
	for range 2 {
		setHang(true)
		for range maxMissedDeadlines - 1 {
			miss()
		}
		setHang(false)
		answer()
	}
	if got := s.Pid(); got != pid || s.Restarts() != 0 {
		t.Fatalf("the plugin was replaced (pid %d, was %d; %d restarts) without %d misses in a row", got, pid, s.Restarts(), maxMissedDeadlines)
	}

	setHang(true)
	for range maxMissedDeadlines {
		miss()
	}
	poll.Eventually(t, 10*time.Second, "the stuck process is killed", func() bool { return processGone(pid) })
	setHang(false)
	poll.Eventually(t, 10*time.Second, "a fresh process serves", func() bool {
		_, err := s.GetCluster(context.Background())
		return err == nil && s.Pid() != pid && s.Pid() > 0
	})

	if n := len(th.logs.withMessage(t, "plugin missed the deadline of its calls several times in a row; killing it to start a fresh process")); n != 1 {
		t.Errorf("%d log lines about the kill, want 1", n)
	}
	if n := len(th.logs.withMessage(t, "restarting plugin", "reason", "plugin killed after missing its deadlines")); n == 0 {
		t.Error("the restart does not say why")
	}
}

// Large values through the real handshake: a value over dcs.MaxValueSize
// written by another client is left out of the read and named, and the
// read succeeds; values up to the limit, and reads over gRPC's default
// 4 MiB, pass whole; a write over the limit is refused, naming the key.
func TestLargeDCSValues(t *testing.T) {
	ctx := context.Background()
	t.Run("a value over the limit", func(t *testing.T) {
		th := newTestHost(t, nil)
		const big = 5 << 20
		installPlugin(t, th.dir, "dcs-memory", &knobs{BigMemberBytes: big})
		s := openMemory(t, th)
		for range 2 {
			c, err := s.GetCluster(ctx)
			if err != nil {
				t.Fatalf("a cluster read with a %d-byte member value: %v", big, err)
			}
			if c.Member("big") != nil || c.Member("m1") == nil {
				t.Errorf("members read: %+v", c.Members)
			}
			if len(c.Omitted) != 1 || c.Omitted[0] != (dcs.OmittedValue{Path: "members/big", Size: big}) {
				t.Errorf("omitted values %+v", c.Omitted)
			}
		}
		logged := th.logs.withMessage(t, "DCS values too large to read were left out of the cluster read; they read as absent until they are rewritten smaller")
		if len(logged) != 1 || logged[0]["values"] != fmt.Sprintf("members/big (%d bytes)", big) {
			t.Errorf("log lines about the left-out value: %v", logged)
		}
	})
	t.Run("values up to the limit", func(t *testing.T) {
		th := newTestHost(t, nil)
		const big = 3 << 20
		installPlugin(t, th.dir, "dcs-memory", &knobs{BigMemberBytes: big})
		s := openMemory(t, th)
		if err := s.TouchMember(ctx, make([]byte, dcs.MaxValueSize)); err != nil {
			t.Fatalf("writing a value of exactly the limit: %v", err)
		}
		c, err := s.GetCluster(ctx)
		if err != nil {
			t.Fatalf("a %d-byte cluster read: %v", big+dcs.MaxValueSize, err)
		}
		if m := c.Member("big"); m == nil || len(m.Data) != big || len(c.Member("m1").Data) != dcs.MaxValueSize || len(c.Omitted) != 0 {
			t.Errorf("the read lost values: %d members, omitted %+v", len(c.Members), c.Omitted)
		}
		err = s.TouchMember(ctx, make([]byte, dcs.MaxValueSize+1))
		if err == nil || !strings.Contains(err.Error(), "members/m1") || !strings.Contains(err.Error(), fmt.Sprint(dcs.MaxValueSize+1)) {
			t.Errorf("writing a value over the limit: %v", err)
		}
		if _, err := s.CompareAndSet(ctx, dcs.KeyConfig, make([]byte, dcs.MaxValueSize+1), ""); err == nil || !strings.Contains(err.Error(), "config") {
			t.Errorf("writing /config over the limit: %v", err)
		}
	})
}

// A call made while the plugin is down waits for the next process and runs
// on it.
func TestSupervisedDCSCallWaitsForTheRestart(t *testing.T) {
	th := newTestHost(t, nil)
	// The process, killed a moment after its start, died young: its
	// replacement comes after the backoff.
	th.restartMin, th.restartMax, th.restartStable = 300*time.Millisecond, 300*time.Millisecond, time.Hour
	installPlugin(t, th.dir, "dcs-memory", nil)
	s := openMemory(t, th)

	pid := crash(t, s)
	poll.Eventually(t, 5*time.Second, "the restart to be scheduled", func() bool {
		return len(th.logs.withMessage(t, "restarting plugin")) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.TouchMember(ctx, []byte(`{"role":"replica"}`)); err != nil {
		t.Fatalf("a call while the plugin restarts: %v", err)
	}
	if got := s.Pid(); got == pid || got <= 0 || s.Restarts() != 1 {
		t.Errorf("after the call: pid %d (was %d), %d restarts, want a new process and 1 restart", got, pid, s.Restarts())
	}
	restarting := th.logs.withMessage(t, "restarting plugin")
	if len(restarting) != 1 || restarting[0]["backoff"] != "300ms" {
		t.Errorf("restart log lines (want one with backoff 300ms): %v", restarting)
	}
}

// A call in flight when the process dies runs again on the next process
// when running it twice does no harm (a read); a compare-and-set, which
// the dead process may have applied, is not repeated and fails as
// unavailable.
func TestSupervisedDCSCallInFlightWhenThePluginDies(t *testing.T) {
	for _, tc := range []struct {
		call  string
		run   func(context.Context, *SupervisedDCS) error
		again bool
	}{
		{"get cluster", func(ctx context.Context, s *SupervisedDCS) error {
			_, err := s.GetCluster(ctx)
			return err
		}, true},
		{"compare and set", func(ctx context.Context, s *SupervisedDCS) error {
			_, err := s.CompareAndSet(ctx, dcs.KeyConfig, []byte(`{"ttl":30}`), "")
			return err
		}, false},
	} {
		t.Run(tc.call, func(t *testing.T) {
			th := newTestHost(t, nil)
			th.restartStable = 0
			hang := filepath.Join(t.TempDir(), "hang")
			bin := installPlugin(t, th.dir, "dcs-memory", &knobs{HangWhile: hang})
			s := openMemory(t, th)
			if err := os.WriteFile(hang, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			// The next process does not hang.
			setKnobs(t, bin.Path, knobs{})
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- tc.run(ctx, s) }()
			poll.Eventually(t, 10*time.Second, "the call to hang in the plugin", func() bool {
				return len(th.logs.withMessage(t, "hanging", "call", tc.call)) > 0
			})
			crash(t, s)
			err := <-done
			again := th.logs.withMessage(t, "dcs plugin went away during a call; calling again on the restarted process")

			c, rerr := s.GetCluster(ctx)
			if rerr != nil {
				t.Fatalf("a read on the new process: %v", rerr)
			}
			if tc.again {
				if err != nil {
					t.Errorf("the call in flight when the plugin died: %v, want it run again on the new process", err)
				}
				if len(again) != 1 {
					t.Errorf("%d log lines about calling again, want 1", len(again))
				}
				return
			}
			if !errors.Is(err, dcs.ErrUnavailable) || !strings.Contains(err.Error(), "went away") {
				t.Errorf("the call in flight when the plugin died: %v, want ErrUnavailable (went away)", err)
			}
			if c.Config != nil || len(again) != 0 {
				t.Errorf("the compare-and-set was run again on the new process (/config %+v; %d lines about calling again)", c.Config, len(again))
			}
		})
	}
}
