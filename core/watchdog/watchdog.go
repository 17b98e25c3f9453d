package watchdog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/reaper"
)

// Modes, as [watchdog] mode.
const (
	ModeOff       = "off"
	ModeAutomatic = "automatic"
	ModeRequired  = "required"
)

// Drivers, as [watchdog] driver.
const (
	DriverDefault = "default"
	DriverProcess = "process"
)

// minTimeout is the shortest watchdog timeout: Linux watchdog devices
// count in whole seconds, and a shorter countdown would leave the agent no
// time to feed between two cycles anyway.
const minTimeout = time.Second

var errClosed = errors.New("watchdog is closed")

// Config is the [watchdog] section plus what the agent knows about itself.
type Config struct {
	Mode   string // ModeOff, ModeAutomatic or ModeRequired
	Driver string // DriverDefault or DriverProcess
	// Device is the watchdog device of the default driver.
	Device string
	// SafetyMargin is how long before the leader key expires the watchdog
	// fires; a negative value means ttl/2 (Patroni's -1).
	SafetyMargin time.Duration
	// Exe is the custos binary the process driver runs as the fencing
	// process; empty means os.Executable.
	Exe string
	// Stderr receives the fencing process's log lines; nil means
	// os.Stderr, which the process then shares with the agent, so its last
	// line (what it killed) is kept even when the agent is dead.
	Stderr io.Writer
}

// Target is the process the fencing process kills: the postmaster.
type Target struct {
	Pid int
	// StartTime is field 22 of /proc/<pid>/stat (clock ticks since boot):
	// with the pid it names one process, not a later one that reuses the
	// pid.
	StartTime uint64
}

// TargetOf reads the start time of the running process pid.
func TargetOf(pid int) (Target, error) {
	st, err := reaper.ReadStat(pid)
	if err != nil {
		return Target{}, fmt.Errorf("reading the start time of pid %d: %w", pid, err)
	}
	if st.State == 'Z' || st.State == 'X' {
		return Target{}, fmt.Errorf("reading the start time of pid %d: the process has exited", pid)
	}
	return Target{Pid: pid, StartTime: st.StartTime}, nil
}

// Status is what the REST API and the metrics show.
type Status struct {
	Mode   string
	Driver string
	// Armed tells whether a watchdog is counting down now.
	Armed bool
	// Failed is /patroni's watchdog_failed: mode required and the
	// watchdog is not usable, or its last activation failed.
	Failed bool
	// Reason says why the watchdog is not usable or not armed; empty when
	// all is well.
	Reason string
	// Timeout is the countdown in effect while armed (the device's own
	// value, after rounding to whole seconds).
	Timeout time.Duration
}

// driver is one way to fence. Its methods are called under Watchdog.mu.
type driver interface {
	// describe names it in errors and logs.
	describe() string
	// usable tells, without arming, whether arm can work.
	usable() error
	// arm starts the countdown, or changes the timeout and target of a
	// running one, and returns the timeout in effect. On error the driver
	// is left disarmed.
	arm(timeout time.Duration, target Target) (time.Duration, error)
	feed() error
	disarm() error
	armed() bool
	// close disarms and releases everything.
	close() error
}

// Watchdog fences the primary for the HA loop. Its methods may be called
// from one goroutine at a time, Armed and Status from any.
type Watchdog struct {
	cfg    Config
	logger hclog.Logger
	drv    driver

	mu      sync.Mutex
	closed  bool
	on      bool          // armed by Arm and not disarmed since; the driver may have lost it
	want    time.Duration // the timeout asked for while armed
	actual  time.Duration // the timeout in effect while armed
	ttl     time.Duration // the ttl it was armed for
	short   bool          // the countdown runs a timeout shortened by FeedBefore
	target  Target
	health  error     // the last Healthy finding
	failErr error     // the last activation failure, until an Arm succeeds
	failAt  time.Time // when it failed
	failFor time.Duration
	warned  string // the last problem logged in automatic mode

	status atomic.Pointer[Status]
}

// New returns the watchdog for cfg. It starts nothing: the device is
// opened and the fencing process started when first needed. An unknown
// mode or driver is treated as required and never usable.
func New(cfg Config, logger hclog.Logger) *Watchdog {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	w := &Watchdog{cfg: cfg, logger: logger}
	switch cfg.Mode {
	case ModeOff:
		w.drv = unsupported{name: "no watchdog", err: errors.New("watchdog mode is off")}
	case ModeAutomatic, ModeRequired:
		switch cfg.Driver {
		case DriverDefault, "":
			w.drv = newDevice(cfg.Device)
		case DriverProcess:
			w.drv = newProcess(cfg.Exe, cfg.Stderr, logger)
		default:
			w.drv = unsupported{name: "watchdog driver " + cfg.Driver, err: fmt.Errorf("unknown watchdog driver %q", cfg.Driver)}
		}
	default:
		w.cfg.Mode = ModeRequired
		w.drv = unsupported{name: "watchdog", err: fmt.Errorf("unknown watchdog mode %q", cfg.Mode)}
	}
	w.publish()
	return w
}

// Timeout is the watchdog timeout for a leader key ttl: ttl minus the
// safety margin, or ttl/2 when the margin is negative.
func Timeout(ttl, safetyMargin time.Duration) time.Duration {
	if safetyMargin < 0 {
		return ttl / 2
	}
	return ttl - safetyMargin
}

// timeoutFor checks that the timeout for ttl can work with loop_wait: at
// least a second, and longer than loop_wait, or the watchdog would fire
// between two feeds of a healthy agent.
func (w *Watchdog) timeoutFor(ttl, loopWait time.Duration) (time.Duration, error) {
	t := Timeout(ttl, w.cfg.SafetyMargin)
	if t < minTimeout {
		return 0, fmt.Errorf("watchdog timeout %v (ttl %v, safety_margin %v) is below %v", t, ttl, marginText(w.cfg.SafetyMargin), minTimeout)
	}
	if t <= loopWait {
		return 0, fmt.Errorf("watchdog timeout %v (ttl %v, safety_margin %v) is not longer than loop_wait %v: it would fire between two feeds", t, ttl, marginText(w.cfg.SafetyMargin), loopWait)
	}
	return t, nil
}

func marginText(m time.Duration) string {
	if m < 0 {
		return "-1 (ttl/2)"
	}
	return m.String()
}

// Healthy tells whether the watchdog can be armed for this ttl and
// loop_wait. In mode required it returns why not; in automatic and off it
// returns nil (automatic logs the problem once and shows it in Status).
// For the process driver it starts the fencing process, or a new one when
// the last one died, and waits for it to answer. After a failed Arm it
// stays unhealthy for one ttl, so a member whose watchdog cannot be armed
// does not race for the leader key every cycle.
func (w *Watchdog) Healthy(ttl, loopWait time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cfg.Mode == ModeOff {
		return nil
	}
	err := w.check(ttl, loopWait)
	w.health = err
	w.publish()
	if err != nil && w.cfg.Mode != ModeRequired {
		w.warnOnce(err)
		return nil
	}
	return err
}

func (w *Watchdog) check(ttl, loopWait time.Duration) error {
	if w.closed {
		return errClosed
	}
	if _, err := w.timeoutFor(ttl, loopWait); err != nil {
		return err
	}
	if w.failErr != nil {
		if since := time.Since(w.failAt); since < w.failFor {
			return fmt.Errorf("%w (%v ago; retried after ttl)", w.failErr, since.Round(time.Millisecond))
		}
		w.failErr = nil
	}
	return w.drv.usable()
}

// Arm starts the countdown before this member promotes or while it keeps
// a primary, with the timeout for ttl (see Timeout) and target, the
// postmaster (the process driver needs it; a device ignores it). Called again with the
// same values it does nothing; with other values it changes the running
// countdown (ttl changed, PostgreSQL restarted). In mode required every
// failure is an error; in automatic a failure is logged once, Status
// shows it and Arm returns nil with Armed false.
func (w *Watchdog) Arm(ttl, loopWait time.Duration, target Target) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cfg.Mode == ModeOff {
		return nil
	}
	if w.closed {
		return errClosed
	}
	if w.on && !w.drv.armed() {
		w.on = false
		w.logger.Error("watchdog lost while armed: arming again", "driver", w.drv.describe())
	}
	was := w.on
	timeout, err := w.timeoutFor(ttl, loopWait)
	if err == nil && was && timeout == w.want && target == w.target {
		return nil
	}
	var actual time.Duration
	if err == nil {
		actual, err = w.drv.arm(timeout, target)
		if err != nil {
			err = fmt.Errorf("arming %s: %w", w.drv.describe(), err)
		} else if actual <= loopWait {
			err = fmt.Errorf("arming %s: its timeout is %v, not longer than loop_wait %v", w.drv.describe(), actual, loopWait)
			err = errors.Join(err, w.drv.disarm())
		}
	}
	if err != nil {
		w.failErr, w.failAt, w.failFor = err, time.Now(), ttl
		w.on = w.drv.armed()
		if was && !w.on {
			w.logger.Warn("watchdog disarmed", "reason", err)
		}
		w.publish()
		if w.cfg.Mode == ModeRequired {
			return err
		}
		w.warnOnce(err)
		return nil
	}
	if !was || actual != w.actual || target != w.target {
		w.logger.Info("watchdog armed", "driver", w.drv.describe(), "timeout", actual, "requested", timeout, "pid", target.Pid)
	}
	w.on, w.want, w.actual, w.target, w.ttl, w.short = true, timeout, actual, target, ttl, false
	w.failErr, w.health, w.warned = nil, nil, ""
	w.publish()
	return nil
}

// lateFeed is how late a renewal's answer may come before FeedBefore
// shortens the countdown: a second of the safety margin, so that the usual
// round trip of a few milliseconds changes nothing.
const lateFeed = time.Second

// FeedBefore is Feed after a renewal of the leader key that expires at
// expiry, counted from before the renewal was sent: the countdown is
// restarted so that it runs out no later than the safety margin before
// expiry. A renewal answered late (a slow DCS) so restarts it with a
// shorter timeout, and the primary of an agent that freezes right after
// is still fenced before another member may take the key; the next timely
// renewal restores the timeout. (A plain feed would let the countdown run
// the whole timeout from the late answer, past the key's expiry.)
func (w *Watchdog) FeedBefore(expiry time.Time) error { return w.feed(expiry) }

// Feed restarts the countdown while armed; otherwise it does nothing. An
// error says the countdown could not be restarted; when the driver lost it
// altogether (the fencing process is gone) Armed turns false and the next
// Arm starts again.
func (w *Watchdog) Feed() error { return w.feed(time.Time{}) }

// feed is Feed, and FeedBefore for a non-zero expiry.
func (w *Watchdog) feed(expiry time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.on {
		return nil
	}
	timeout := w.want
	if left := time.Until(expiry) - (w.ttl - w.want); !expiry.IsZero() && left < timeout-lateFeed {
		timeout = max(left, minTimeout)
	}
	err, rearmed := errors.New("no longer armed"), false
	if w.drv.armed() {
		if timeout == w.want && !w.short || expiry.IsZero() {
			err = w.drv.feed()
		} else {
			// arm sets the timeout (rounded down); feed restarts the
			// countdown with it whether or not arm did.
			var actual time.Duration
			if actual, err = w.drv.arm(timeout, w.target); err == nil {
				err = w.drv.feed()
				w.actual, w.short, rearmed = actual, timeout < w.want, true
			}
		}
	}
	if err != nil {
		err = fmt.Errorf("feeding %s: %w", w.drv.describe(), err)
		w.health = err
		if !w.drv.armed() {
			w.on = false
			w.logger.Error("watchdog lost while armed", "error", err)
		}
	}
	if err != nil || rearmed {
		w.publish()
	}
	return err
}

// Disarm stops the countdown (the magic close); it does nothing when not
// armed.
func (w *Watchdog) Disarm() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.on {
		return nil
	}
	w.on = false
	if !w.drv.armed() {
		w.publish()
		return nil // lost already: nothing counts down
	}
	err := w.drv.disarm()
	w.logger.Info("watchdog disarmed", "driver", w.drv.describe())
	w.publish()
	if err != nil {
		return fmt.Errorf("disarming %s: %w", w.drv.describe(), err)
	}
	return nil
}

// Armed tells whether a countdown is running (as of the last call).
func (w *Watchdog) Armed() bool { return w.status.Load().Armed }

// Status returns the last known state; it never blocks on the driver.
func (w *Watchdog) Status() Status { return *w.status.Load() }

// Close disarms and stops the fencing process. The Watchdog cannot be
// armed afterwards.
func (w *Watchdog) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	was := w.on && w.drv.armed()
	w.on = false
	err := w.drv.close()
	if was {
		w.logger.Info("watchdog disarmed", "driver", w.drv.describe())
	}
	w.publish()
	if err != nil {
		return fmt.Errorf("closing %s: %w", w.drv.describe(), err)
	}
	return nil
}

// warnOnce logs a problem of mode automatic when it differs from the last
// one logged.
func (w *Watchdog) warnOnce(err error) {
	if err.Error() == w.warned {
		return
	}
	w.warned = err.Error()
	w.logger.Warn("going on without a watchdog (mode automatic)", "reason", err)
}

func (w *Watchdog) publish() {
	s := Status{Mode: w.cfg.Mode, Driver: w.cfg.Driver, Armed: w.drv.armed()}
	if s.Driver == "" && s.Mode != ModeOff {
		s.Driver = DriverDefault
	}
	if s.Armed {
		s.Timeout = w.actual
	}
	problem := w.failErr
	if problem == nil {
		problem = w.health
	}
	if w.closed {
		problem = errClosed
	}
	if problem != nil && s.Mode != ModeOff {
		s.Reason = problem.Error()
		s.Failed = s.Mode == ModeRequired
	}
	w.status.Store(&s)
}

// unsupported is a driver that cannot fence: mode off, an unknown driver,
// or a driver this platform lacks.
type unsupported struct {
	name string
	err  error
}

func (u unsupported) describe() string { return u.name }
func (u unsupported) usable() error    { return u.err }
func (u unsupported) arm(time.Duration, Target) (time.Duration, error) {
	return 0, u.err
}
func (u unsupported) feed() error   { return nil }
func (u unsupported) disarm() error { return nil }
func (u unsupported) armed() bool   { return false }
func (u unsupported) close() error  { return nil }
