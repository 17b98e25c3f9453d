package plugins

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

const (
	// restartStableUptime is how long a process must have run to count as
	// one that ran fine: when it dies, the next one is started at once,
	// without backoff. The DCS counts as unreachable while the plugin is
	// down, and a leader that cannot reach it for retry_timeout stops its
	// primary, so a plugin that crashed after serving (a bug hit by one
	// call, the OOM killer, an operator's kill) comes back as fast as a
	// process starts, however often that happened before. A plugin that
	// keeps dying after running this long is restarted at most this often.
	restartStableUptime = time.Second
	// restartBackoffMin is the wait before restarting a process that died
	// younger than restartStableUptime, or after a start that failed: such
	// a plugin may fail again at once, and must not spin.
	restartBackoffMin = 100 * time.Millisecond
	// restartBackoffMax caps that wait, doubled after every failure in a
	// row. It is well under the shortest stop margin of a leader (2 s, or
	// a quarter of the ttl) and a quarter of a retry_timeout of 4 s, so a
	// plugin that failed a few times and is then fixed (or whose DCS is
	// back) is serving again before the leader must give up; a crash loop
	// still costs at most one process start per second.
	restartBackoffMax = time.Second
	// restartWaitMax bounds how long a call waits for a restarted process
	// when its context has no earlier deadline (a watch, a caller without
	// one): the caller then gets ErrUnavailable and decides itself.
	restartWaitMax = 10 * time.Second
	// exitGrace is how long a call that failed as "unavailable" or
	// "cancelled" waits for go-plugin to see the process exit before
	// taking the failure as the DCS's own: the broken connection is
	// noticed a moment before the process is reaped.
	exitGrace = 100 * time.Millisecond
	// exitGracePoll is how often the process is looked at meanwhile.
	exitGracePoll = 5 * time.Millisecond
	// exitPollInterval is how often the supervisor asks go-plugin whether
	// the process has exited. A call that fails with ErrUnavailable wakes
	// the supervisor at once (the host's DCS watch, broken by the crash,
	// makes such a call within half a second); this bounds how late a crash
	// between calls is noticed otherwise, at one wake-up of an idle agent
	// per second.
	exitPollInterval = time.Second
	// replayTimeout bounds replaying Configure and SetTTL on a restarted
	// plugin: Configure may connect to the DCS and retry for up to
	// retry_timeout (10 s by default).
	replayTimeout = 30 * time.Second
	// maxMissedDeadlines is how many calls in a row may end at their
	// deadline before the process is killed and a fresh one started. One
	// miss is a slow DCS round trip or a pause; three in a row, each
	// bounded by the HA loop's deadline, is a plugin that no longer
	// answers, or whose connections to the DCS hang without breaking (a
	// half-open TCP connection after a network fault), and a fresh process
	// with fresh connections is the way out of both. A DCS that refuses
	// calls makes them fail fast and costs no restart.
	maxMissedDeadlines = 3
)

// SupervisedDCS is a dcs.Backend on top of a DCS plugin process that
// survives the process's death. When the process has exited, the
// supervisor starts the binary again (at once when it had run fine, else
// after a capped exponential backoff, see restartPolicy), checks that its
// identity is still the same DCS plugin, replays the last successful
// Configure and SetTTL, and only then serves calls with it again.
//
// A call made while the plugin is down waits for the new process, within
// its context's deadline (at most restartWaitMax), and then runs on it. A
// call in flight when the process dies runs again on the new one when it is
// idempotent (a read, a renewal, a write of a whole value); a create-only
// write or a compare-and-set is not repeated, since the first one may have
// been applied, and fails. A call that gets no process in time fails with
// an error wrapping dcs.ErrUnavailable, as for a DCS that cannot be
// reached: the HA loop's DCS-loss rules take over, so a plugin that stays
// down still ends in failsafe mode or a demotion before the leader key
// runs out.
type SupervisedDCS struct {
	host   *Host
	bin    Binary
	name   string // the identity name every new process must have
	logger hclog.Logger

	cancel context.CancelFunc // stops the supervisor
	done   chan struct{}      // closed when the supervisor has returned
	wake   chan struct{}      // asks the supervisor to look now

	closeOnce sync.Once
	closeErr  error

	mu  sync.Mutex
	cur *dcsInstance // nil while restarting
	// changed is closed (and replaced) when cur is set or the backend is
	// closed: calls waiting for a process wake on it.
	changed  chan struct{}
	identity sdk.Identity
	closed   bool
	policy   restartPolicy
	attempt  int // restart attempts in the current outage, 0 while serving
	restarts int // successful restarts
	// configure and ttl are the last successful Configure and SetTTL;
	// replaySeq counts their changes, so that a restart that raced with
	// one replays again before serving.
	configure *dcs.ConfigureRequest
	ttl       *time.Duration
	replaySeq uint64
	// omitted is the last list of values left out of a read, as logged.
	omitted string
}

// dcsInstance is one process of the plugin and its backend client.
type dcsInstance struct {
	plugin  *Plugin
	backend dcs.Backend
	// missed counts the calls in a row that ended at their deadline;
	// killed is set when that killed the process.
	missed atomic.Int32
	killed atomic.Bool
}

var _ dcs.Backend = (*SupervisedDCS)(nil)

// SuperviseDCS takes ownership of a launched DCS plugin and supervises it.
// Closing the returned backend ends the process.
func (h *Host) SuperviseDCS(p *Plugin) (*SupervisedDCS, error) {
	b, err := p.DCS()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &SupervisedDCS{
		host:     h,
		bin:      p.Binary,
		name:     p.Identity.Name,
		logger:   p.logger,
		cancel:   cancel,
		done:     make(chan struct{}),
		wake:     make(chan struct{}, 1),
		cur:      &dcsInstance{plugin: p, backend: b},
		changed:  make(chan struct{}),
		identity: p.Identity,
		policy:   restartPolicy{min: h.restartMin, max: h.restartMax, stable: h.restartStable},
	}
	h.mu.Lock()
	if h.shutdown {
		h.mu.Unlock()
		cancel()
		return nil, fmt.Errorf("supervising plugin %s: the plugin host is shut down", p.Binary.Name)
	}
	h.supervisors[s] = struct{}{}
	h.mu.Unlock()
	go s.supervise(ctx)
	return s, nil
}

// Identity returns the identity of the current (or last) plugin process.
func (s *SupervisedDCS) Identity() sdk.Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.identity
}

// Restarts returns how many times the plugin was restarted successfully.
func (s *SupervisedDCS) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// Pid returns the process id of the running plugin, 0 while it is down.
func (s *SupervisedDCS) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return 0
	}
	return s.cur.plugin.Pid()
}

// supervise watches the process and restarts it when it has exited, until
// ctx ends.
func (s *SupervisedDCS) supervise(ctx context.Context) {
	defer close(s.done)
	poll := time.NewTicker(exitPollInterval)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		case <-s.wake:
		}
		s.mu.Lock()
		inst := s.cur
		s.mu.Unlock()
		if inst != nil && inst.plugin.Exited() {
			s.restart(ctx, inst)
		}
	}
}

// restart replaces an exited process, retrying with backoff until a new one
// serves or ctx ends.
func (s *SupervisedDCS) restart(ctx context.Context, old *dcsInstance) {
	uptime := time.Since(old.plugin.started)
	s.mu.Lock()
	s.cur = nil
	wait := s.policy.exited(uptime)
	s.mu.Unlock()
	down := time.Now()
	old.plugin.Kill() // reaps go-plugin's goroutines of the dead process

	reason := "plugin process exited"
	if old.killed.Load() {
		reason = "plugin killed after missing its deadlines"
	}
	for attempt := 1; ; attempt++ {
		s.mu.Lock()
		s.attempt = attempt
		s.mu.Unlock()
		line := []any{"reason", reason, "attempt", attempt, "backoff", wait.String()}
		if attempt == 1 {
			line = append(line, "uptime", uptime.Round(time.Millisecond).String())
		}
		s.logger.Warn("restarting plugin", line...)
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		inst, err := s.start(ctx)
		if err == nil {
			s.logger.Info("plugin restarted", "attempt", attempt, "down_for", time.Since(down).Round(time.Millisecond).String(),
				"pid", inst.plugin.Pid(), "identity", inst.plugin.Identity.String())
			return
		}
		if ctx.Err() != nil {
			return
		}
		reason = err.Error()
		s.mu.Lock()
		wait = s.policy.failed()
		s.mu.Unlock()
	}
}

// restartPolicy decides how long to wait before starting a plugin process
// again: not at all after a process that ran fine (restartStableUptime),
// else min, doubled for every failure in a row (a process that died young,
// a start that failed), up to max.
type restartPolicy struct {
	min, max, stable time.Duration
	// failures counts the failures since the last process that ran fine.
	failures int
}

// exited takes in the death of a process that ran for uptime and returns
// the wait before starting the next one.
func (p *restartPolicy) exited(uptime time.Duration) time.Duration {
	if uptime >= p.stable {
		p.failures = 0
		return 0
	}
	return p.failed()
}

// failed takes in a failure (a process that died young, a start that
// failed) and returns the wait before the next start.
func (p *restartPolicy) failed() time.Duration {
	p.failures++
	d := p.min
	for i := 1; i < p.failures && d < p.max; i++ {
		d *= 2
	}
	return min(d, p.max)
}

// start launches a new process, checks its identity, replays the
// configuration and publishes it.
func (s *SupervisedDCS) start(ctx context.Context) (*dcsInstance, error) {
	lctx, cancel := context.WithTimeout(ctx, startTimeout+identityTimeout)
	p, err := s.host.Launch(lctx, s.bin)
	cancel()
	if err != nil {
		return nil, err
	}
	if p.Identity.Name != s.name || !p.Identity.Serves(sdk.KindDCS) {
		p.Kill()
		return nil, fmt.Errorf("plugin %s now says it is %s, not the dcs plugin %q it was", s.bin.Name, p.Identity, s.name)
	}
	b, err := p.DCS()
	if err != nil {
		p.Kill()
		return nil, err
	}
	inst := &dcsInstance{plugin: p, backend: b}
	for {
		s.mu.Lock()
		cfg, ttl, seq := s.configure, s.ttl, s.replaySeq
		s.mu.Unlock()
		if err := s.replay(ctx, inst, cfg, ttl); err != nil {
			p.Kill()
			return nil, err
		}
		s.mu.Lock()
		if seq == s.replaySeq {
			s.cur = inst
			s.identity = p.Identity
			s.restarts++
			s.attempt = 0
			s.broadcast()
			s.mu.Unlock()
			return inst, nil
		}
		// A Configure or SetTTL succeeded meanwhile: replay it too.
		s.mu.Unlock()
	}
}

// replay hands a new process the last configuration.
func (s *SupervisedDCS) replay(ctx context.Context, inst *dcsInstance, cfg *dcs.ConfigureRequest, ttl *time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, replayTimeout)
	defer cancel()
	if cfg != nil {
		if err := inst.backend.Configure(ctx, *cfg); err != nil {
			return fmt.Errorf("replaying configure on plugin %s: %w", s.bin.Name, err)
		}
	}
	if ttl != nil {
		if err := inst.backend.SetTTL(ctx, *ttl); err != nil {
			return fmt.Errorf("replaying set ttl on plugin %s: %w", s.bin.Name, err)
		}
	}
	return nil
}

// nudge wakes the supervisor without waiting.
func (s *SupervisedDCS) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// broadcast wakes the calls waiting for a process; s.mu is held.
func (s *SupervisedDCS) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// instance returns the serving process other than dead, waiting for one
// while the plugin restarts, until ctx ends or restartWaitMax passed; then
// (or once closed) it returns an error wrapping ErrUnavailable.
func (s *SupervisedDCS) instance(ctx context.Context, dead *dcsInstance) (*dcsInstance, error) {
	var timeout <-chan time.Time
	for {
		s.mu.Lock()
		cur, closed, attempt, changed := s.cur, s.closed, s.attempt, s.changed
		s.mu.Unlock()
		switch {
		case closed:
			return nil, fmt.Errorf("dcs plugin %s is closed: %w", s.bin.Name, dcs.ErrUnavailable)
		case cur != nil && cur != dead:
			return cur, nil
		}
		if timeout == nil {
			t := time.NewTimer(restartWaitMax)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-changed:
			continue
		case <-ctx.Done():
		case <-timeout:
		}
		if attempt == 0 {
			// The supervisor has not taken in the death yet.
			return nil, fmt.Errorf("dcs plugin %s is not running (restart pending): %w", s.bin.Name, dcs.ErrUnavailable)
		}
		return nil, fmt.Errorf("dcs plugin %s is not running (restart attempt %d): %w", s.bin.Name, attempt, dcs.ErrUnavailable)
	}
}

// Whether a call may run again on a restarted process after the process it
// was sent to died: only when running it twice does no harm.
const (
	once       = false
	idempotent = true
)

// call runs fn on the serving process (waiting for one while the plugin
// restarts), counts the calls that end at their deadline, and translates
// the failures that mean "the process went away" into ErrUnavailable. When
// that happened and the call is idempotent, it runs again on the next
// process while ctx allows.
func (s *SupervisedDCS) call(ctx context.Context, again bool, fn func(dcs.Backend) error) (*dcsInstance, error) {
	return s.do(ctx, true, again, fn)
}

// do is call; deadlines counts deadline misses (not for a watch, which
// runs until its caller cancels it).
func (s *SupervisedDCS) do(ctx context.Context, deadlines, again bool, fn func(dcs.Backend) error) (*dcsInstance, error) {
	var dead *dcsInstance
	for {
		inst, err := s.instance(ctx, dead)
		if err != nil {
			return nil, err
		}
		err = fn(inst.backend)
		if deadlines {
			if pastDeadline(ctx) {
				s.missedDeadline(inst)
			} else {
				inst.missed.Store(0)
			}
		}
		if err == nil || ctx.Err() != nil || pastDeadline(ctx) {
			return inst, err
		}
		// A dead process shows as Unavailable; one whose connection the
		// supervisor already closed shows as Canceled, though the caller's
		// context is fine.
		if !errors.Is(err, dcs.ErrUnavailable) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			return inst, err
		}
		if !s.wentAway(inst) {
			return inst, err
		}
		err = fmt.Errorf("dcs plugin %s went away: %v: %w", s.bin.Name, err, dcs.ErrUnavailable)
		if !again {
			return inst, err
		}
		s.logger.Debug("dcs plugin went away during a call; calling again on the restarted process", "error", err)
		dead = inst
	}
}

// wentAway reports whether inst's process is gone (replaced, or exited),
// waiting up to exitGrace for go-plugin to see an exit, and wakes the
// supervisor.
func (s *SupervisedDCS) wentAway(inst *dcsInstance) bool {
	s.nudge()
	deadline := time.Now().Add(exitGrace)
	for {
		s.mu.Lock()
		gone := s.cur != inst
		s.mu.Unlock()
		if gone {
			return true
		}
		if inst.plugin.Exited() {
			s.nudge()
			return true
		}
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(exitGracePoll)
	}
}

// pastDeadline reports whether ctx's deadline has come: its error says so,
// or the clock does (the context's own timer may fire a moment after the
// call gave up at the deadline).
func pastDeadline(ctx context.Context) bool {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// missedDeadline counts a call of inst that ended at its deadline and
// kills the process at the maxMissedDeadlines-th in a row; the supervisor
// then restarts it.
func (s *SupervisedDCS) missedDeadline(inst *dcsInstance) {
	if inst.missed.Add(1) != maxMissedDeadlines {
		return
	}
	s.logger.Warn("plugin missed the deadline of its calls several times in a row; killing it to start a fresh process",
		"missed", maxMissedDeadlines, "pid", inst.plugin.Pid())
	// SIGKILL at once: a process that does not answer calls would not
	// answer go-plugin's request to stop either.
	inst.killed.Store(true)
	inst.plugin.cancel()
	s.nudge()
}

// Validate implements dcs.Backend.
func (s *SupervisedDCS) Validate(ctx context.Context, config []byte) error {
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.Validate(ctx, config) })
	return err
}

// Configure implements dcs.Backend. A successful Configure is replayed on
// every restarted process.
func (s *SupervisedDCS) Configure(ctx context.Context, req dcs.ConfigureRequest) error {
	inst, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.Configure(ctx, req) })
	if err != nil {
		return err
	}
	req.Config = append([]byte(nil), req.Config...)
	return s.record(inst, "configure", func() { s.configure = &req })
}

// SetTTL implements dcs.Backend. A successful SetTTL is replayed on every
// restarted process.
func (s *SupervisedDCS) SetTTL(ctx context.Context, ttl time.Duration) error {
	inst, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.SetTTL(ctx, ttl) })
	if err != nil {
		return err
	}
	return s.record(inst, "set ttl", func() { s.ttl = &ttl })
}

// record keeps a successful Configure or SetTTL for replay. When the
// process that took it has been replaced already, the replacement was set
// up without it: the caller gets ErrUnavailable and calls again.
func (s *SupervisedDCS) record(inst *dcsInstance, op string, set func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	set()
	s.replaySeq++
	if s.cur != nil && s.cur != inst {
		return fmt.Errorf("%s: dcs plugin %s was restarted meanwhile: %w", op, s.bin.Name, dcs.ErrUnavailable)
	}
	return nil
}

// GetCluster implements dcs.Backend. Values the plugin left out of the
// read for their size (dcs.Cluster.Omitted) are logged, once for each
// change of the list.
func (s *SupervisedDCS) GetCluster(ctx context.Context) (*dcs.Cluster, error) {
	var c *dcs.Cluster
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) (err error) {
		c, err = b.GetCluster(ctx)
		return err
	})
	if c != nil {
		s.reportOmitted(c.Omitted)
	}
	return c, err
}

// reportOmitted logs the values a read left out, when they changed since
// the last read.
func (s *SupervisedDCS) reportOmitted(omitted []dcs.OmittedValue) {
	var b strings.Builder
	for i, o := range omitted {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%d bytes)", o.Path, o.Size)
	}
	list := b.String()
	s.mu.Lock()
	changed := list != s.omitted
	s.omitted = list
	s.mu.Unlock()
	if changed && list != "" {
		s.logger.Error("DCS values too large to read were left out of the cluster read; they read as absent until they are rewritten smaller",
			"values", list, "max_value_bytes", dcs.MaxValueSize)
	}
}

// AcquireLeader implements dcs.Backend.
func (s *SupervisedDCS) AcquireLeader(ctx context.Context) (string, error) {
	var v string
	_, err := s.call(ctx, once, func(b dcs.Backend) (err error) {
		v, err = b.AcquireLeader(ctx)
		return err
	})
	return v, err
}

// RenewLeader implements dcs.Backend.
func (s *SupervisedDCS) RenewLeader(ctx context.Context) error {
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.RenewLeader(ctx) })
	return err
}

// TakeLeader implements dcs.Backend.
func (s *SupervisedDCS) TakeLeader(ctx context.Context) error {
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.TakeLeader(ctx) })
	return err
}

// DeleteLeader implements dcs.Backend.
func (s *SupervisedDCS) DeleteLeader(ctx context.Context) error {
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.DeleteLeader(ctx) })
	return err
}

// TouchMember implements dcs.Backend.
func (s *SupervisedDCS) TouchMember(ctx context.Context, data []byte) error {
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.TouchMember(ctx, data) })
	return err
}

// CompareAndSet implements dcs.Backend.
func (s *SupervisedDCS) CompareAndSet(ctx context.Context, key dcs.Key, data []byte, version string) (string, error) {
	var v string
	_, err := s.call(ctx, once, func(b dcs.Backend) (err error) {
		v, err = b.CompareAndSet(ctx, key, data, version)
		return err
	})
	return v, err
}

// CompareAndDelete implements dcs.Backend.
func (s *SupervisedDCS) CompareAndDelete(ctx context.Context, key dcs.Key, version string) error {
	_, err := s.call(ctx, once, func(b dcs.Backend) error { return b.CompareAndDelete(ctx, key, version) })
	return err
}

// Set implements dcs.Backend.
func (s *SupervisedDCS) Set(ctx context.Context, key dcs.Key, data []byte) error {
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.Set(ctx, key, data) })
	return err
}

// DeleteCluster implements dcs.Backend.
func (s *SupervisedDCS) DeleteCluster(ctx context.Context) error {
	_, err := s.call(ctx, idempotent, func(b dcs.Backend) error { return b.DeleteCluster(ctx) })
	return err
}

// Watch implements dcs.Backend on the current process. A watch does not
// outlive its process: when the plugin dies mid-watch (or the backend is
// closed), Watch returns an error wrapping dcs.ErrUnavailable: events may
// have been missed, so the caller re-reads the cluster and watches again,
// as after any broken watch. A Watch started while the plugin is down
// waits for the new process, as every call does.
func (s *SupervisedDCS) Watch(ctx context.Context, fn func(dcs.Event)) error {
	_, err := s.do(ctx, false, once, func(b dcs.Backend) error { return b.Watch(ctx, fn) })
	return err
}

// Close stops the supervision, calls the plugin's Close (bounded by ctx and
// a short timeout) and ends the process. Calls after Close return
// ErrUnavailable. It may be called more than once.
func (s *SupervisedDCS) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.broadcast()
		s.mu.Unlock()
		s.cancel()
		<-s.done
		s.mu.Lock()
		inst := s.cur
		s.cur = nil
		s.mu.Unlock()
		s.host.mu.Lock()
		delete(s.host.supervisors, s)
		s.host.mu.Unlock()
		if inst == nil {
			return
		}
		var err error
		if !inst.plugin.Exited() {
			cctx, cancel := context.WithTimeout(ctx, pluginCloseTimeout)
			err = inst.backend.Close(cctx)
			cancel()
		}
		inst.plugin.Kill()
		if err != nil {
			s.closeErr = fmt.Errorf("closing dcs plugin %s: %w", s.bin.Name, err)
		}
	})
	return s.closeErr
}
