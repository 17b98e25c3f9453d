package agent

import (
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/api"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/controller"
	"github.com/custos-ha/custos/core/ha"
	"github.com/custos-ha/custos/core/postgres"
	"github.com/custos-ha/custos/core/watchdog"
)

// fence is controller.Watchdog: core/watchdog armed against the running
// postmaster. The process driver kills a postmaster, so it needs one: armed
// before PostgreSQL starts (a start as primary), it waits for the
// postmaster, and the first feed after the start arms it; a postmaster
// restarted since arming is followed the same way.
type fence struct {
	w       *watchdog.Watchdog
	pg      *postgres.Postgres
	mode    string
	process bool
	logger  hclog.Logger

	mu            sync.Mutex
	ttl, loopWait time.Duration
	// pending: Arm was asked while no postmaster ran (process driver).
	pending bool
	target  watchdog.Target
}

var _ controller.Watchdog = (*fence)(nil)

// newFence returns the watchdog of [watchdog]; nil for mode off.
func newFence(c config.Watchdog, exe string, pg *postgres.Postgres, logger hclog.Logger) *fence {
	if c.Mode == config.WatchdogOff {
		return nil
	}
	w := watchdog.New(watchdog.Config{Mode: c.Mode, Driver: c.Driver, Device: c.Device, SafetyMargin: c.SafetyMargin, Exe: exe}, logger)
	return &fence{w: w, pg: pg, mode: c.Mode, process: c.Driver == watchdog.DriverProcess, logger: logger}
}

// State implements controller.Watchdog.
func (f *fence) State(ttl, loopWait time.Duration) ha.Watchdog {
	err := f.w.Healthy(ttl, loopWait)
	st := f.w.Status()
	problem := st.Reason
	if problem == "" && err != nil {
		problem = err.Error()
	}
	f.mu.Lock()
	pending := f.pending
	f.mu.Unlock()
	return ha.Watchdog{
		Required:  f.mode == config.WatchdogRequired,
		Available: err == nil && st.Reason == "",
		// Armed as soon as a postmaster exists to fence.
		Armed:   st.Armed || pending,
		Problem: problem,
	}
}

// postmaster is the running postmaster as a fencing target; zero when none
// runs.
func (f *fence) postmaster() watchdog.Target {
	pm := f.pg.Postmaster()
	if pm == nil || !pm.Running() {
		return watchdog.Target{}
	}
	t, err := watchdog.TargetOf(pm.Pid())
	if err != nil {
		return watchdog.Target{}
	}
	return t
}

// Arm implements controller.Watchdog.
func (f *fence) Arm(ttl, loopWait time.Duration) error {
	t := f.postmaster()
	f.mu.Lock()
	f.ttl, f.loopWait = ttl, loopWait
	f.pending = f.process && t.Pid == 0
	f.target = t
	pending := f.pending
	f.mu.Unlock()
	if pending {
		f.logger.Debug("watchdog: no postmaster yet; armed at the first feed after it starts")
		return nil
	}
	return f.w.Arm(ttl, loopWait, t)
}

// Feed implements controller.Watchdog.
func (f *fence) Feed(expiry time.Time) error {
	f.mu.Lock()
	ttl, loopWait, pending, target := f.ttl, f.loopWait, f.pending, f.target
	f.mu.Unlock()
	if f.process && (pending || f.w.Armed()) {
		if t := f.postmaster(); t.Pid != 0 && t != target {
			// The postmaster started, or was restarted, since arming.
			f.mu.Lock()
			f.pending, f.target = false, t
			f.mu.Unlock()
			if err := f.w.Arm(ttl, loopWait, t); err != nil {
				return err
			}
		}
	}
	if expiry.IsZero() {
		return f.w.Feed()
	}
	return f.w.FeedBefore(expiry)
}

// Disarm implements controller.Watchdog.
func (f *fence) Disarm() error {
	f.mu.Lock()
	f.pending = false
	f.mu.Unlock()
	return f.w.Disarm()
}

// Close disarms the watchdog and stops the fencing process.
func (f *fence) Close() {
	if err := f.w.Close(); err != nil {
		f.logger.Warn("closing the watchdog", "error", err)
	}
}

// status is what /patroni shows of the watchdog; nil for mode off.
func (f *fence) status() *api.WatchdogStatus {
	if f == nil {
		return nil
	}
	st := f.w.Status()
	return &api.WatchdogStatus{Mode: st.Mode, Driver: st.Driver, Armed: st.Armed, Timeout: st.Timeout.Seconds(), Reason: st.Reason}
}

// failed is /patroni's watchdog_failed.
func (f *fence) failed() bool { return f != nil && f.w.Status().Failed }
