package plugins

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/plugin/sdk"
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

// supervisor keeps one plugin process of a kind serving and survives its
// death: when the process has exited, it starts the binary again (at once
// when it had run fine, else after a capped exponential backoff, see
// restartPolicy), checks that its identity is still the same plugin of the
// kind, replays what the kind needs replayed, and only then serves calls
// with it again. SupervisedDCS and SupervisedCallback are built on it.
type supervisor[T any] struct {
	host   *Host
	bin    Binary
	name   string // the identity name every new process must have
	logger hclog.Logger
	spec   kindSpec[T]

	cancel context.CancelFunc // stops the supervisor
	done   chan struct{}      // closed when the supervisor has returned
	wake   chan struct{}      // asks the supervisor to look now

	closeOnce sync.Once
	closeErr  error

	mu  sync.Mutex
	cur *instance[T] // nil while restarting
	// changed is closed (and replaced) when cur is set or the supervisor
	// is closed: calls waiting for a process wake on it.
	changed  chan struct{}
	identity sdk.Identity
	closed   bool
	policy   restartPolicy
	attempt  int // restart attempts in the current outage, 0 while serving
	restarts int // successful restarts
	// replayGen counts the changes of what spec.replay hands a new
	// process (the owner bumps it under mu), so that a restart that raced
	// with one replays again before serving.
	replayGen uint64
}

// kindSpec is what a supervisor needs to know about its plugin kind.
type kindSpec[T any] struct {
	kind string // sdk.KindDCS, ...
	// client gets the kind's client from a process.
	client func(*Plugin) (T, error)
	// replay, when set, hands a new process what its predecessor was told,
	// before it serves.
	replay func(ctx context.Context, c T) error
	// close, when set, is the kind's own Close, called at Close while the
	// process still runs.
	close func(ctx context.Context, c T) error
	// unavailable is wrapped by the errors of calls that got no live
	// process.
	unavailable error
	// mayBeGone reports whether a failed call's error may come from the
	// process going away (then the process is looked at); nil: any error.
	mayBeGone func(error) bool
}

// instance is one process of the plugin and its client.
type instance[T any] struct {
	plugin *Plugin
	client T
	// missed counts the calls in a row that ended at their deadline;
	// killed is set when that killed the process.
	missed atomic.Int32
	killed atomic.Bool
}

// closer is a supervisor as the host tracks it, for Shutdown.
type closer interface {
	Close(ctx context.Context) error
	binaryName() string
}

// newSupervisor takes over a launched plugin; run starts supervising it.
// Between the two, the owner finishes building what spec's functions use.
func newSupervisor[T any](h *Host, p *Plugin, spec kindSpec[T]) (*supervisor[T], error) {
	c, err := spec.client(p)
	if err != nil {
		return nil, err
	}
	return &supervisor[T]{
		host:     h,
		bin:      p.Binary,
		name:     p.Identity.Name,
		logger:   p.logger,
		spec:     spec,
		done:     make(chan struct{}),
		wake:     make(chan struct{}, 1),
		cur:      &instance[T]{plugin: p, client: c},
		changed:  make(chan struct{}),
		identity: p.Identity,
		policy:   restartPolicy{min: h.restartMin, max: h.restartMax, stable: h.restartStable},
	}, nil
}

// run registers the supervisor with the host and starts watching the
// process. It fails when the host is shut down.
func (s *supervisor[T]) run() error {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	h := s.host
	h.mu.Lock()
	if h.shutdown {
		h.mu.Unlock()
		cancel()
		close(s.done)
		return fmt.Errorf("supervising plugin %s: the plugin host is shut down", s.bin.Name)
	}
	h.supervisors[s] = struct{}{}
	h.mu.Unlock()
	go s.supervise(ctx)
	return nil
}

func (s *supervisor[T]) binaryName() string { return s.bin.Name }

// Identity returns the identity of the current (or last) plugin process.
func (s *supervisor[T]) Identity() sdk.Identity {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.identity
}

// Restarts returns how many times the plugin was restarted successfully.
func (s *supervisor[T]) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// Pid returns the process id of the running plugin, 0 while it is down.
func (s *supervisor[T]) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return 0
	}
	return s.cur.plugin.Pid()
}

// supervise watches the process and restarts it when it has exited, until
// ctx ends.
func (s *supervisor[T]) supervise(ctx context.Context) {
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
func (s *supervisor[T]) restart(ctx context.Context, old *instance[T]) {
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
		inst, err := s.relaunch(ctx)
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

// relaunch starts a new process, checks its identity, replays what the
// kind needs and publishes it.
func (s *supervisor[T]) relaunch(ctx context.Context) (*instance[T], error) {
	lctx, cancel := context.WithTimeout(ctx, startTimeout+identityTimeout)
	p, err := s.host.Launch(lctx, s.bin)
	cancel()
	if err != nil {
		return nil, err
	}
	if p.Identity.Name != s.name || !p.Identity.Serves(s.spec.kind) {
		p.Kill()
		return nil, fmt.Errorf("plugin %s now says it is %s, not the %s plugin %q it was", s.bin.Name, p.Identity, s.spec.kind, s.name)
	}
	c, err := s.spec.client(p)
	if err != nil {
		p.Kill()
		return nil, err
	}
	inst := &instance[T]{plugin: p, client: c}
	for {
		s.mu.Lock()
		gen := s.replayGen
		s.mu.Unlock()
		if s.spec.replay != nil {
			if err := s.spec.replay(ctx, c); err != nil {
				p.Kill()
				return nil, err
			}
		}
		s.mu.Lock()
		if gen == s.replayGen {
			s.cur = inst
			s.identity = p.Identity
			s.restarts++
			s.attempt = 0
			s.broadcast()
			s.mu.Unlock()
			return inst, nil
		}
		// What replay hands over changed meanwhile: replay it too.
		s.mu.Unlock()
	}
}

// nudge wakes the supervisor without waiting.
func (s *supervisor[T]) nudge() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// broadcast wakes the calls waiting for a process; s.mu is held.
func (s *supervisor[T]) broadcast() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// instance returns the serving process other than dead, waiting for one
// while the plugin restarts, until ctx ends or restartWaitMax passed; then
// (or once closed) it returns an error wrapping spec.unavailable.
func (s *supervisor[T]) instance(ctx context.Context, dead *instance[T]) (*instance[T], error) {
	var timeout <-chan time.Time
	for {
		s.mu.Lock()
		cur, closed, attempt, changed := s.cur, s.closed, s.attempt, s.changed
		s.mu.Unlock()
		switch {
		case closed:
			return nil, fmt.Errorf("%s plugin %s is closed: %w", s.spec.kind, s.bin.Name, s.spec.unavailable)
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
			return nil, fmt.Errorf("%s plugin %s is not running (restart pending): %w", s.spec.kind, s.bin.Name, s.spec.unavailable)
		}
		return nil, fmt.Errorf("%s plugin %s is not running (restart attempt %d): %w", s.spec.kind, s.bin.Name, attempt, s.spec.unavailable)
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
// the failures that mean "the process went away" into spec.unavailable.
// When that happened and the call is idempotent, it runs again on the next
// process while ctx allows.
func (s *supervisor[T]) call(ctx context.Context, again bool, fn func(T) error) (*instance[T], error) {
	return s.do(ctx, true, again, fn)
}

// do is call; deadlines counts deadline misses (not for a call that runs
// until its caller cancels it, such as a watch).
func (s *supervisor[T]) do(ctx context.Context, deadlines, again bool, fn func(T) error) (*instance[T], error) {
	var dead *instance[T]
	for {
		inst, err := s.instance(ctx, dead)
		if err != nil {
			return nil, err
		}
		err = fn(inst.client)
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
		if s.spec.mayBeGone != nil && !s.spec.mayBeGone(err) {
			return inst, err
		}
		if !s.wentAway(inst) {
			return inst, err
		}
		err = fmt.Errorf("%s plugin %s went away: %v: %w", s.spec.kind, s.bin.Name, err, s.spec.unavailable)
		if !again {
			return inst, err
		}
		s.logger.Debug(s.spec.kind+" plugin went away during a call; calling again on the restarted process", "error", err)
		dead = inst
	}
}

// wentAway reports whether inst's process is gone (replaced, or exited),
// waiting up to exitGrace for go-plugin to see an exit, and wakes the
// supervisor.
func (s *supervisor[T]) wentAway(inst *instance[T]) bool {
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
func (s *supervisor[T]) missedDeadline(inst *instance[T]) {
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

// Close stops the supervision, calls the kind's Close (bounded by ctx and
// a short timeout) and ends the process. Calls after Close fail with an
// error wrapping spec.unavailable. It may be called more than once.
func (s *supervisor[T]) Close(ctx context.Context) error {
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
		if s.spec.close != nil && !inst.plugin.Exited() {
			cctx, cancel := context.WithTimeout(ctx, pluginCloseTimeout)
			err = s.spec.close(cctx, inst.client)
			cancel()
		}
		inst.plugin.Kill()
		if err != nil {
			s.closeErr = fmt.Errorf("closing %s plugin %s: %w", s.spec.kind, s.bin.Name, err)
		}
	})
	return s.closeErr
}
