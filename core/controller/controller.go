package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/dcs"
	"github.com/custos-ha/custos/core/ha"
)

// Timing of the loop besides loop_wait.
const (
	// retryInterval is how soon a cycle runs again after a failed DCS read
	// or a failed action: short, so a primary re-checks its lock well
	// within retry_timeout.
	retryInterval = time.Second
	// peerTimeout bounds the leader race's GET /patroni calls (Patroni: 2 s).
	peerTimeout = 2 * time.Second
	// leaseRecheck is the wait before the cycle that decides on a lease
	// that ran out during the last one (a hung action): short against the
	// stop margin, long enough that a loop which somehow does not stop
	// PostgreSQL then does not spin a CPU.
	leaseRecheck = 10 * time.Millisecond
	// shutdownTimeout bounds the final cycle: stopping PostgreSQL and
	// releasing the leader key.
	shutdownTimeout = 2 * time.Minute
)

// Options are the controller's fixed settings.
type Options struct {
	Name    string
	Scope   string
	ConnURL string
	APIURL  string
	// Version is the agent version published in the member key.
	Version string
	Tags    cluster.Tags
	// Bootstrap is the dynamic configuration from [bootstrap.dcs]: what
	// seeds /config and what applies while /config is absent.
	Bootstrap config.Dynamic
	// Local is the member's configuration (file and environment); the
	// loop merges it with the dynamic one (config.Merge).
	Local *config.Config
	// Publish, when set, receives the state after each cycle.
	Publish func(*State)
	// Watchdog fences this member's primary; nil for mode off.
	Watchdog Watchdog
	// ApplyDynamic, when set, applies a changed configuration (dynamic or
	// local) to PostgreSQL (parameters, pg_hba...); it is called from the
	// loop, never while a background action runs, and again until it
	// succeeds.
	ApplyDynamic func(context.Context, config.Effective) (reloaded bool, err error)
	// Events, when set, receives PostgreSQL's lifecycle events for the
	// callbacks.
	Events Events
	// Hooks, when set, runs the pre_promote and before_stop scripts.
	Hooks Hooks
	// CloneWithoutLeader: a configured replica method needs no running
	// member to copy from (the no_leader capability).
	CloneWithoutLeader bool
}

// LocalSettings are the member's own settings a configuration reload may
// change without restarting the agent.
type LocalSettings struct {
	Tags cluster.Tags
	// Config is the reloaded configuration (file and environment).
	Config *config.Config
}

// Controller runs the HA loop of one member.
type Controller struct {
	opts   Options
	store  *dcs.Store
	local  Local
	peers  Peers
	logger hclog.Logger
	now    func() time.Time
	// decide is ha.Decide; tests count its calls.
	decide func(ha.Input) ha.Decision

	// Loop state, owned by Run's goroutine.
	mem ha.Memory
	// gather is what the last decision asked to have before the next one;
	// waited: that decision lacked it (the next cycle comes at once).
	gather      ha.Gather
	waited      bool
	busy        *running
	outcome     *ha.Outcome
	dcsLastSeen time.Time
	dyn         config.Dynamic
	dynRaw      string
	// dynFromConfig: dyn was parsed from /config (dynRaw), not the
	// bootstrap settings.
	dynFromConfig bool
	// appliedRaw is the dynamic configuration last applied to PostgreSQL.
	appliedRaw *string
	ttl        time.Duration
	// exited: the postmaster exited since the last cycle, unasked.
	exited bool
	// seenExit is the Exited channel already handled (it stays closed).
	seenExit <-chan struct{}
	// life turns what is done to PostgreSQL into callback events.
	life lifecycle
	// leaseExpiry is when the leader key this member holds expires unless
	// renewed, counted from before the last successful acquire or renewal
	// request was sent (or, kept by failsafe mode, ttl after it began
	// asking the members); zero when this member does not hold it or no
	// longer counts on it (PostgreSQL stopped).
	leaseExpiry time.Time
	// failsafeAsked is when the last POST /failsafe round began.
	failsafeAsked time.Time
	// renewFailed is the error of the leader-key renewal that failed in
	// the last cycle ("" when none); keyLost: the DCS said the key is not
	// ours. The next cycle's decision takes them in.
	renewFailed string
	keyLost     bool
	// urgent: the renewal failed while PostgreSQL may run as a primary;
	// the next cycle comes at once.
	urgent bool
	// lastFailsafe is /failsafe as last read.
	lastFailsafe cluster.Failsafe
	// heartbeat is when a primary last reached this member with POST
	// /failsafe (guarded by settingsMu: the REST API sets it).
	heartbeat time.Time
	// dcsProblems are the malformed values of the last DCS read.
	dcsProblems []string
	// configProblems are the values of /config rejected in favour of the
	// ones in effect (config.ParseDynamicOver), each naming its key.
	configProblems []string

	settingsMu sync.Mutex
	settings   LocalSettings
	// localGen counts the reloads of the local configuration (guarded by
	// settingsMu); appliedGen is the count last applied to PostgreSQL.
	localGen   uint64
	appliedGen uint64

	kick      chan struct{}
	requests  chan *pending
	asyncDone chan ha.Outcome
	// waiting is the request whose reply waits for a background action;
	// doneReply is that reply once the action ended.
	waiting   *pending
	doneReply *ha.Reply
	state     atomic.Pointer[State]
}

// running is the background action in progress.
type running struct {
	kind   ha.Kind
	since  time.Time
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a controller; Run drives it.
func New(opts Options, store *dcs.Store, local Local, peers Peers, logger hclog.Logger) *Controller {
	c := &Controller{
		opts: opts, store: store, local: local, peers: peers, logger: logger,
		now:       time.Now,
		decide:    ha.Decide,
		dyn:       opts.Bootstrap,
		kick:      make(chan struct{}, 1),
		requests:  make(chan *pending),
		asyncDone: make(chan ha.Outcome, 1),
		settings:  LocalSettings{Tags: opts.Tags, Config: opts.Local},
	}
	c.life.events = opts.Events
	c.state.Store(&State{Member: cluster.Member{Name: opts.Name}})
	return c
}

// State returns the state published after the last cycle. It is never
// modified after publication.
func (c *Controller) State() *State { return c.state.Load() }

// SetLocal replaces the member's own settings after a configuration
// reload; the next cycle uses them and applies the PostgreSQL
// configuration again through Options.ApplyDynamic. That happens in the
// loop, never while a background action (a promotion, a start) runs: a
// reload must not rewrite PostgreSQL's files under it.
func (c *Controller) SetLocal(l LocalSettings) {
	c.settingsMu.Lock()
	c.settings = l
	c.localGen++
	c.settingsMu.Unlock()
	c.Wake()
}

func (c *Controller) localSettings() LocalSettings {
	c.settingsMu.Lock()
	defer c.settingsMu.Unlock()
	return c.settings
}

// Wake asks for a cycle now.
func (c *Controller) Wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// Run runs cycles until ctx is cancelled, then shuts down: it cancels a
// background action, stops PostgreSQL and releases the leader key.
func (c *Controller) Run(ctx context.Context) error {
	watchCtx, stopWatch := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.store.Watch(watchCtx)
	}()
	defer func() {
		stopWatch()
		wg.Wait()
	}()
	trigger := TriggerStart
	var req *pending
	for {
		wait := c.cycle(ctx, false, trigger, req)
		req = nil
		timer := time.NewTimer(wait)
		exited := c.local.Exited()
		if exited == c.seenExit {
			exited = nil
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			c.shutdown()
			return nil
		case <-timer.C:
			trigger = TriggerTimer
			if c.waited {
				trigger = TriggerGathered
			}
		case <-c.store.Wake():
			trigger = TriggerWatch
		case <-c.kick:
			trigger = TriggerRequest
		case req = <-c.requests:
			trigger = TriggerRequest
		case <-exited:
			trigger = TriggerPostmasterExit
			c.seenExit = exited
			c.exited = true
			c.logger.Warn("postmaster exited")
		case o := <-c.asyncDone:
			trigger = TriggerActionDone
			c.finishAsync(o)
		}
		timer.Stop()
	}
}

func (c *Controller) finishAsync(o ha.Outcome) {
	c.busy = nil
	c.outcome = &o
	// The requester hears after the next cycle has published the new
	// state, so that /patroni agrees with the answer.
	if o.Err != "" {
		c.doneReply = &ha.Reply{Status: ha.ReplyRefused, Message: string(o.Kind) + " failed: " + o.Err}
	} else {
		c.doneReply = &ha.Reply{Status: ha.ReplyDone, Message: string(o.Kind) + " done"}
	}
	if o.Kind == ha.ActDemote || o.Kind == ha.ActRestart || o.Kind == ha.ActReinitialize {
		// The exit of a postmaster we stopped is no crash.
		c.seenExit, c.exited = c.local.Exited(), false
	}
	if o.Err != "" {
		c.logger.Error("background action failed", "action", o.Kind, "error", o.Err)
	} else {
		c.logger.Info("background action done", "action", o.Kind)
	}
}

func (c *Controller) shutdown() {
	if c.busy != nil {
		c.busy.cancel()
		<-c.busy.done
		// Drain the outcome of the cancelled action.
		select {
		case o := <-c.asyncDone:
			c.finishAsync(o)
		default:
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	c.cycle(ctx, true, TriggerShutdown, nil)
	c.answer(&c.waiting, ha.Reply{Status: ha.ReplyRefused, Message: "the agent is shutting down"})
}

// What woke a cycle; logged with it.
const (
	TriggerStart          = "start"
	TriggerTimer          = "loop_wait"
	TriggerWatch          = "dcs_watch"
	TriggerRequest        = "request"
	TriggerPostmasterExit = "postmaster_exit"
	TriggerActionDone     = "action_done"
	// TriggerGathered: the last decision waited for the other members'
	// answers; this cycle gathers them and decides.
	TriggerGathered = "gathered"
	TriggerShutdown = "shutdown"
)

// cycle runs one HA cycle and returns how long to wait for the next.
//
// A leader's cycle runs against the leader key's lease: every DCS call and
// every action gets a deadline at the lease's expiry minus the stop margin
// (ha.ActBy), so that a DCS or a disk that hangs instead of failing ends
// in a decision while the key is still ours. Observing PostgreSQL and
// stopping it are not bound by that deadline: they are what must still
// happen when it comes.
func (c *Controller) cycle(ctx context.Context, shuttingDown bool, trigger string, req *pending) time.Duration {
	start := c.now()
	lctx, cancel := c.leaseContext(ctx)
	defer cancel()
	clu, readErr := c.readDCS(lctx, start)
	obs := c.local.Observe(ctx)
	if c.busy == nil && !shuttingDown {
		c.life.observed(obs.HA)
	}
	in := c.input(start, clu, readErr, obs, shuttingDown, req)
	c.gatherFor(lctx, &in, obs)
	c.rereadAfterSlowGather(lctx, &in)

	dec := c.decide(in)
	c.take(in, &dec)

	obs, failed := c.execute(lctx, in, dec, obs)
	c.forgetLease(dec.Stops() && failed == nil, obs)
	if !obs.HA.MayBePrimary() {
		// Nothing to stop at once: a renewal that keeps failing (before a
		// start as primary) is retried at the failure pace, not in a spin.
		c.urgent = false
	}
	if req != nil {
		c.replyTo(req, dec, failed)
	}
	c.publish(in, dec, obs, c.member(in, obs), failed)
	if c.doneReply != nil {
		c.answer(&c.waiting, *c.doneReply)
		c.doneReply = nil
	}
	c.logCycle(trigger, dec, failed)
	if dec.Waiting {
		// The next cycle gathers what this one lacked, and decides.
		return 0
	}
	return c.nextWait(readErr != nil || failed != nil, dec.Stops())
}

// leaseContext is ctx with the deadline of a leader's cycle: the lease's
// expiry minus the stop margin (none when this member counts no lease).
func (c *Controller) leaseContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if by := ha.ActBy(c.leaseExpiry, c.ttl); !by.IsZero() {
		return context.WithDeadline(ctx, by)
	}
	return ctx, func() {}
}

// readDCS reads the cluster and takes in what it says: its malformed
// values, the dynamic configuration (applied to PostgreSQL when it or the
// local one changed), /failsafe, and whether the leader key is still ours.
func (c *Controller) readDCS(ctx context.Context, start time.Time) (*cluster.Cluster, error) {
	clu, malformed, err := c.store.Read(ctx)
	if err == nil {
		c.dcsProblems = c.dcsProblems[:0:0]
		for _, p := range malformed {
			c.dcsProblems = append(c.dcsProblems, p.Error())
		}
		c.dcsLastSeen = start
		c.lastFailsafe = clu.Failsafe
		c.applyDynamic(clu)
		if clu.LeaderName() != c.opts.Name {
			c.leaseExpiry = time.Time{}
		}
	}
	if err == nil || c.appliedRaw != nil {
		// The first time only once /config was read; a reload of the
		// local configuration also while the DCS is down.
		c.applyToPostgres()
	}
	return clu, err
}

// input puts together the decision's input and forgets the events it
// takes in (they are decided on once).
func (c *Controller) input(start time.Time, clu *cluster.Cluster, readErr error, obs Observation, shuttingDown bool, req *pending) ha.Input {
	in := ha.Input{
		// Decided on the time after the read: a read that hung counts.
		Now:          c.now(),
		Name:         c.opts.Name,
		Config:       c.haConfig(),
		Cluster:      clu,
		DCSLastSeen:  c.dcsLastSeen,
		LeaderExpiry: c.leaseExpiry,
		Watchdog:     c.watchdogState(),
		Postgres:     obs.HA,
		Busy:         c.busyNow(),
		ShuttingDown: shuttingDown,
		Memory:       c.mem,
		LastFailsafe: c.lastFailsafe,
		// What happened since the last cycle.
		RenewFailed:      c.renewFailed,
		KeyLost:          c.keyLost,
		Outcome:          c.outcome,
		PostmasterExited: c.exited,
	}
	c.renewFailed, c.keyLost, c.urgent, c.exited, c.outcome = "", false, false, false, nil
	c.settingsMu.Lock()
	in.FailsafeHeartbeat = c.heartbeat
	c.settingsMu.Unlock()
	if readErr != nil {
		in.DCSError = readErr.Error()
		if c.dcsLastSeen.IsZero() {
			// Never seen: count from the start so a primary found running
			// at start-up is not demoted before retry_timeout.
			c.dcsLastSeen = start
			in.DCSLastSeen = start
		}
	}
	if req != nil {
		in.Request = &req.req
	}
	return in
}

// take checks the decision against the safety invariants and keeps what
// it says for the next cycle.
func (c *Controller) take(in ha.Input, dec *ha.Decision) {
	if err := ha.CheckInvariants(in, *dec); err != nil {
		// A bug in Decide must not become a second primary.
		c.logger.Error("refusing a decision that breaks a safety invariant", "reason", dec.Reason, "error", err)
		dec.Actions = nil
	}
	c.gather, c.waited = dec.Gather, dec.Waiting
	c.mem = dec.Memory
	if kept := dec.Memory.FailsafeKept; !kept.IsZero() && kept.Equal(in.Now) {
		// The members keep this primary now: they do not race for ttl
		// after they received the POST /failsafe, so a new lease counts
		// from when the asking began, as from a renewal's sending. The
		// next acknowledgements must come before its stop margin, and
		// the watchdog is fed as on a renewal.
		c.leaseExpiry = c.failsafeAsked.Add(c.ttl)
		c.feedWatchdog(c.leaseExpiry)
	}
}

// logCycle logs the cycle in one line.
func (c *Controller) logCycle(trigger string, dec ha.Decision, failed error) {
	line := []any{"reason", dec.Reason, "trigger", trigger}
	if len(dec.Actions) > 0 {
		line = append(line, "actions", ha.ActionNames(dec.Actions))
	}
	if failed != nil {
		line = append(line, "error", failed)
		c.logger.Warn("ha cycle", line...)
		return
	}
	c.logger.Info("ha cycle", line...)
}

// gatherFor asks the other members what this decision will want
// (ha.Gathering) and what the last decision asked for: their GET /patroni
// and their answer to POST /failsafe, both bound by the lease like every
// call of a leader's cycle (acknowledgements that come later do not keep
// the primary).
func (c *Controller) gatherFor(lctx context.Context, in *ha.Input, obs Observation) {
	want := ha.Gathering(*in)
	if (want.Peers || c.gather.Peers) && in.Cluster != nil {
		in.Peers, in.PeersFetched = c.fetchPeers(lctx, in.Cluster), true
	}
	if want.Failsafe || c.gather.Failsafe {
		c.failsafeAsked = c.now()
		in.FailsafeAcks, in.FailsafeChecked = c.askFailsafe(lctx, obs), true
		in.Now = c.now()
	}
}

// staleRead is how old the DCS read may be when the decision is made
// after gathering the peers' answers (a peer that does not answer holds
// the gathering up to peerTimeout).
const staleRead = time.Second

// rereadAfterSlowGather reads the DCS again when gathering the peers took
// long: the leader race must not be decided on a view from before it (a
// new /history, a leader that came and went), since acquiring the key only
// checks that nobody holds it. A read that fails then is decided on as
// the DCS being down.
func (c *Controller) rereadAfterSlowGather(lctx context.Context, in *ha.Input) {
	if !in.PeersFetched || in.Cluster == nil || c.now().Sub(in.Now) <= staleRead {
		return
	}
	now := c.now()
	clu, err := c.readDCS(lctx, now)
	in.Cluster, in.DCSLastSeen, in.LeaderExpiry, in.LastFailsafe = clu, c.dcsLastSeen, c.leaseExpiry, c.lastFailsafe
	if err != nil {
		in.DCSError = err.Error()
	}
	in.Now = c.now()
}

// watchdogState is the watchdog as the decision sees it (mode off without
// one).
func (c *Controller) watchdogState() ha.Watchdog {
	if c.opts.Watchdog == nil {
		return ha.Watchdog{}
	}
	return c.opts.Watchdog.State(c.dyn.TTL.Duration(), c.dyn.LoopWait.Duration())
}

// feedWatchdog restarts the watchdog's countdown; a failure is logged: the
// next decision sees the watchdog unarmed and arms it again (or, when it is
// required and not usable, demotes).
func (c *Controller) feedWatchdog(expiry time.Time) {
	if c.opts.Watchdog == nil {
		return
	}
	if err := c.opts.Watchdog.Feed(expiry); err != nil {
		c.logger.Error("feeding the watchdog", "error", err)
	}
}

// forgetLease stops counting the leader key's lease once there is nothing
// left for it to protect (ha.LeaseStillCounts).
func (c *Controller) forgetLease(stopped bool, obs Observation) {
	if !ha.LeaseStillCounts(c.leaseExpiry, c.ttl, c.now(), stopped, obs.HA, c.dyn.Pause, c.busy != nil) {
		c.leaseExpiry = time.Time{}
	}
}

// nextWait is how long to wait for the next cycle: loop_wait, less after a
// failure; none after a failed renewal of the leader key, nor once the
// lease needs a decision (unless this cycle already tried to stop
// PostgreSQL: a stop that fails is retried at the failure pace); and never
// past the moment the lease requires one.
func (c *Controller) nextWait(failed, stopTried bool) time.Duration {
	wait := c.dyn.LoopWait.Duration()
	if failed {
		wait = min(retryInterval, wait)
	}
	if c.renewFailed != "" && c.urgent {
		return 0
	}
	if by := ha.ActBy(c.leaseExpiry, c.ttl); !by.IsZero() {
		switch until := by.Sub(c.now()); {
		case until <= 0 && !stopTried:
			return leaseRecheck
		case until > 0 && until < wait:
			wait = until
		}
	}
	return wait
}

// applyDynamic takes the dynamic configuration from /config (or the local
// bootstrap one while it is absent) and applies TTL changes. A value of
// /config that is rejected keeps the value in effect, never the default
// (config.ParseDynamicOver): the last good one read, else the bootstrap
// one.
func (c *Controller) applyDynamic(clu *cluster.Cluster) {
	dyn := c.opts.Bootstrap
	raw := ""
	switch {
	case clu.Config == nil:
		c.configProblems = nil
	case c.dynFromConfig && string(clu.Config.Data) == c.dynRaw:
		// Unchanged since the last cycle: parsed then.
		raw, dyn = c.dynRaw, c.dyn
	default:
		raw = string(clu.Config.Data)
		dyn, c.configProblems = c.parseConfig(clu.Config.Data, raw != c.dynRaw)
	}
	c.dynFromConfig = clu.Config != nil
	c.dynRaw = raw
	c.dyn = dyn
	c.store.SetTimeout(dyn.RetryTimeout.Duration())
	c.store.SetTiming(dyn.TTL.Duration(), dyn.LoopWait.Duration())
	if ttl := dyn.TTL.Duration(); ttl != c.ttl {
		if c.ttl != 0 {
			ctx, cancel := context.WithTimeout(context.Background(), dyn.RetryTimeout.Duration())
			err := c.store.Backend().SetTTL(ctx, ttl)
			cancel()
			if err != nil {
				// c.ttl stays the TTL the plugin has: the lease is counted
				// with it, and the change is tried again next cycle.
				c.logger.Warn("changing the TTL", "ttl", ttl, "error", err)
				return
			}
		}
		c.ttl = ttl
	}
}

// fetchPeers asks every other member with an api_url about itself, in
// parallel.
func (c *Controller) fetchPeers(ctx context.Context, clu *cluster.Cluster) []ha.Peer {
	if clu == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		peers []ha.Peer
	)
	for _, m := range clu.Members {
		if m.Name == c.opts.Name || m.APIURL == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := c.peers.Status(ctx, m)
			if err != nil {
				c.logger.Debug("peer unreachable", "member", m.Name, "error", err)
				p = ha.Peer{Name: m.Name, Answered: p.Answered}
			}
			p.Name = m.Name
			mu.Lock()
			peers = append(peers, p)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return peers
}

// failsafeTimeout bounds one POST /failsafe (Patroni: 2 s, one retry).
const failsafeTimeout = 2 * time.Second

// askFailsafe POSTs /failsafe to every other member /failsafe lists, in
// parallel, one retry each, and returns who accepted.
func (c *Controller) askFailsafe(ctx context.Context, obs Observation) map[string]bool {
	me := c.member(ha.Input{}, obs)
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		acks = map[string]bool{}
	)
	for name, apiURL := range c.lastFailsafe {
		if name == c.opts.Name {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			for attempt := 0; attempt < 2; attempt++ {
				actx, cancel := context.WithTimeout(ctx, failsafeTimeout)
				err = c.peers.Failsafe(actx, name, apiURL, me)
				cancel()
				if err == nil {
					mu.Lock()
					acks[name] = true
					mu.Unlock()
					return
				}
			}
			c.logger.Warn("failsafe: member did not accept", "member", name, "error", err)
		}()
	}
	wg.Wait()
	return acks
}

// failsafeActive is Patroni's failsafe_mode_is_active (ha.FailsafeActive).
func (c *Controller) failsafeActive(now time.Time) bool {
	c.settingsMu.Lock()
	hb := c.heartbeat
	c.settingsMu.Unlock()
	return ha.FailsafeActive(now, hb, c.mem, c.dyn.TTL.Duration())
}

// FailsafeHeartbeat records that the primary reached this member with POST
// /failsafe.
func (c *Controller) FailsafeHeartbeat(leader string) {
	c.settingsMu.Lock()
	c.heartbeat = c.now()
	c.settingsMu.Unlock()
	c.logger.Debug("failsafe heartbeat", "leader", leader)
}

// execute runs the decision's actions in order, stopping at the first
// failure; touch_member runs regardless. It returns the observation to
// publish: after a stop, PostgreSQL is observed again.
func (c *Controller) execute(ctx context.Context, in ha.Input, dec ha.Decision, obs Observation) (Observation, error) {
	var failed error
	for _, a := range dec.Actions {
		if failed != nil && a.Kind != ha.ActTouchMember {
			continue
		}
		if err := c.run(ctx, in, a, obs); err != nil {
			if a.Kind == ha.ActTouchMember {
				failed = errors.Join(failed, err)
			} else {
				failed = fmt.Errorf("%s: %w", a.Kind, err)
			}
		}
		if a.Kind == ha.ActStop {
			// Publish the stop at once, before the leader key is released
			// (and in the member key): the peers that the release wakes ask
			// /patroni straight away and must not find this member still
			// reported as a running primary.
			obs = c.local.Observe(ctx)
			c.publish(in, dec, obs, c.member(in, obs), failed)
		}
	}
	return obs, failed
}

func (c *Controller) member(in ha.Input, obs Observation) cluster.Member {
	m := cluster.Member{
		Name:         c.opts.Name,
		ConnURL:      c.opts.ConnURL,
		APIURL:       c.opts.APIURL,
		AgentVersion: c.opts.Version,
		Tags:         c.localSettings().Tags,
		Pause:        c.dyn.Pause,
		State:        ha.StateName(c.busyNow(), obs.HA, c.mem),
		Role:         ha.RoleName(obs.HA, c.mem),
	}
	if obs.HA.Timeline > 0 {
		m.Timeline = obs.HA.Timeline
	}
	if obs.HA.Running && obs.HA.Ready {
		lsn := obs.HA.LSN
		m.XLogLocation = &lsn
	}
	if obs.HA.InRecovery {
		m.ReceiveLSN, m.ReplayLSN = obs.ReceiveLSN, obs.ReplayLSN
		m.ReplicationState = obs.ReplicationState
	}
	if sr := c.mem.ScheduledRestart; sr != nil {
		m.ScheduledRestart = map[string]any{"schedule": cluster.FormatTime(sr.At)}
		if sr.Role != "" {
			m.ScheduledRestart["role"] = sr.Role
		}
		if sr.PostgresVersion > 0 {
			m.ScheduledRestart["postgres_version"] = sr.PostgresVersion
		}
		if sr.RestartPending {
			m.ScheduledRestart["restart_pending"] = true
		}
	}
	m.PendingRestart = obs.PendingRestart
	m.PendingRestartReason = cluster.PendingRestartReason(obs.PendingReasons)
	return m
}

// busyNow is the background action in progress as the decision sees it.
func (c *Controller) busyNow() *ha.Busy {
	if c.busy == nil {
		return nil
	}
	return &ha.Busy{Kind: c.busy.kind, Since: c.busy.since}
}

// applyToPostgres applies the configuration in effect (the dynamic one and
// a reloaded local one) to PostgreSQL when either changed since it was last
// applied, and again until that succeeds. It runs in the loop and never
// while a background action runs, so that no two changes to PostgreSQL's
// files or process overlap.
func (c *Controller) applyToPostgres() {
	if c.opts.ApplyDynamic == nil || c.busy != nil {
		return
	}
	c.settingsMu.Lock()
	gen := c.localGen
	c.settingsMu.Unlock()
	raw := c.dynRaw
	if c.appliedRaw != nil && *c.appliedRaw == raw && gen == c.appliedGen {
		return
	}
	reloaded, err := c.opts.ApplyDynamic(context.Background(), c.effective())
	if reloaded && c.appliedRaw != nil {
		// The first application, at the agent's start, is no reload the
		// callbacks hear of.
		c.life.reloaded()
	}
	if err != nil {
		c.logger.Warn("applying the configuration to postgres", "error", err)
		return
	}
	c.appliedRaw, c.appliedGen = &raw, gen
}
