package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
	ApplyDynamic func(context.Context, config.Effective) error
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

	// Loop state, owned by Run's goroutine.
	mem         ha.Memory
	busy        *running
	outcome     *ha.Outcome
	dcsLastSeen time.Time
	dyn         config.Dynamic
	dynRaw      string
	// dynFromConfig: dyn was parsed from /config (dynRaw), not the
	// bootstrap settings.
	dynFromConfig bool
	// appliedRaw is the dynamic configuration last applied to PostgreSQL.
	appliedRaw  *string
	ttl         time.Duration
	crashed     bool
	startFailed bool
	role        string
	// seenExit is the Exited channel already handled (it stays closed).
	seenExit <-chan struct{}
	// leaseExpiry is when the leader key this member holds expires unless
	// renewed, counted from before the last successful acquire or renewal
	// request was sent; zero when this member does not hold it or no
	// longer counts on it (PostgreSQL stopped, or failsafe mode keeps the
	// primary instead).
	leaseExpiry time.Time
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
	// failsafeKept is when this primary last stayed primary in failsafe
	// mode with the DCS down; zero once the DCS answers again.
	failsafeKept time.Time
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
		dyn:       opts.Bootstrap,
		kick:      make(chan struct{}, 1),
		requests:  make(chan *pending),
		asyncDone: make(chan ha.Outcome, 1),
		settings:  LocalSettings{Tags: opts.Tags, Config: opts.Local},
	}
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
		case <-c.store.Wake():
			trigger = TriggerWatch
		case <-c.kick:
			trigger = TriggerRequest
		case req = <-c.requests:
			trigger = TriggerRequest
		case <-exited:
			trigger = TriggerPostmasterExit
			c.seenExit = exited
			c.crashed = true
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
		c.seenExit, c.crashed = c.local.Exited(), false
	}
	if o.Kind == ha.ActStart {
		c.startFailed = o.Err != ""
		if o.Err == "" {
			c.crashed = false
		}
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
	TriggerShutdown       = "shutdown"
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
	lctx := ctx
	if by := ha.ActBy(c.leaseExpiry, c.ttl); !by.IsZero() {
		var cancel context.CancelFunc
		lctx, cancel = context.WithDeadline(ctx, by)
		defer cancel()
	}
	clu, malformed, readErr := c.store.Read(lctx)
	if readErr == nil {
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
	if readErr == nil || c.appliedRaw != nil {
		// The first time only once /config was read; a reload of the
		// local configuration also while the DCS is down.
		c.applyToPostgres()
	}
	obs := c.local.Observe(ctx)
	in := ha.Input{
		// Decided on the time after the read: a read that hung counts.
		Now:          c.now(),
		Name:         c.opts.Name,
		Config:       c.haConfig(),
		Cluster:      clu,
		DCSLastSeen:  c.dcsLastSeen,
		LeaderExpiry: c.leaseExpiry,
		RenewFailed:  c.renewFailed,
		KeyLost:      c.keyLost,
		Watchdog:     c.watchdogState(),
		Postgres:     obs.HA,
		Outcome:      c.outcome,
		ShuttingDown: shuttingDown,
		Memory:       c.mem,
		LastFailsafe: c.lastFailsafe,
	}
	c.renewFailed, c.keyLost, c.urgent = "", false, false
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
	if c.busy != nil {
		in.Busy = &ha.Busy{Kind: c.busy.kind, Since: c.busy.since}
	}
	if req != nil {
		in.Request = &req.req
	}
	c.outcome = nil

	dec := ha.Decide(in)
	if dec.NeedPeers {
		in.Peers, in.PeersFetched = c.fetchPeers(lctx, clu), true
		dec = ha.Decide(in)
	}
	if dec.NeedFailsafe {
		// Not bound by the lease: failsafe mode may keep a primary past it.
		in.FailsafeAcks, in.FailsafeChecked = c.askFailsafe(ctx, obs), true
		in.Now = c.now()
		dec = ha.Decide(in)
	}
	if err := ha.CheckInvariants(in, dec); err != nil {
		// A bug in Decide must not become a second primary.
		c.logger.Error("refusing a decision that breaks a safety invariant", "reason", dec.Reason, "error", err)
		dec.Actions = nil
	}
	c.mem = dec.Memory
	switch {
	case readErr == nil && !in.FailsafeChecked:
		c.failsafeKept = time.Time{}
	case in.FailsafeChecked && !stops(dec):
		c.failsafeKept = in.Now
		// The members, not the lease, keep this primary now: the lease is
		// no longer counted, so the cycles go on reading the DCS. The
		// watchdog is fed on their acknowledgement as on a renewal.
		c.leaseExpiry = time.Time{}
		c.feedWatchdog()
	}

	obs, failed := c.execute(lctx, in, dec, obs)
	c.forgetLease(stops(dec) && failed == nil, obs)
	if !obs.HA.MayBePrimary() {
		// Nothing to stop at once: a renewal that keeps failing (before a
		// start as primary) is retried at the failure pace, not in a spin.
		c.urgent = false
	}
	if req != nil {
		c.replyTo(req, dec, failed)
	}
	member := c.member(in, obs)
	c.publish(in, dec, obs, member, failed)
	if c.doneReply != nil {
		c.answer(&c.waiting, *c.doneReply)
		c.doneReply = nil
	}

	line := []any{"reason", dec.Reason, "trigger", trigger}
	if len(dec.Actions) > 0 {
		line = append(line, "actions", actionNames(dec.Actions))
	}
	if failed != nil {
		line = append(line, "error", failed)
		c.logger.Warn("ha cycle", line...)
	} else {
		c.logger.Info("ha cycle", line...)
	}
	return c.nextWait(readErr != nil || failed != nil, stops(dec))
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
func (c *Controller) feedWatchdog() {
	if c.opts.Watchdog == nil {
		return
	}
	if err := c.opts.Watchdog.Feed(); err != nil {
		c.logger.Error("feeding the watchdog", "error", err)
	}
}

// forgetLease stops counting the leader key's lease once there is nothing
// left for it to protect: PostgreSQL was stopped, or the lease ran out
// while PostgreSQL is known not to run as a primary, or paused (nothing is
// stopped then). A running primary past its lease keeps it counted: every
// DCS call then fails at once and the next decision stops the server.
func (c *Controller) forgetLease(stopped bool, obs Observation) {
	by := ha.ActBy(c.leaseExpiry, c.ttl)
	if stopped || (!by.IsZero() && !c.now().Before(by) && (!obs.HA.MayBePrimary() || c.dyn.Pause) && c.busy == nil) {
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

func actionNames(actions []ha.Action) string {
	names := make([]string, 0, len(actions))
	for _, a := range actions {
		n := string(a.Kind)
		if a.Member != "" {
			n += "(" + a.Member + ")"
		}
		if a.Mode != "" {
			n += "(" + a.Mode + ")"
		}
		names = append(names, n)
	}
	return strings.Join(names, ",")
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
				p = ha.Peer{Name: m.Name}
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

// stops reports whether the decision stops PostgreSQL.
func stops(dec ha.Decision) bool {
	for _, a := range dec.Actions {
		if a.Kind == ha.ActStop {
			return true
		}
	}
	return false
}

// failsafeActive is Patroni's failsafe_mode_is_active: this primary stays
// primary in failsafe mode, or a primary reached this replica with POST
// /failsafe, within the last ttl.
func (c *Controller) failsafeActive(now time.Time) bool {
	c.settingsMu.Lock()
	last := c.heartbeat
	c.settingsMu.Unlock()
	if c.failsafeKept.After(last) {
		last = c.failsafeKept
	}
	return !last.IsZero() && now.Sub(last) < c.dyn.TTL.Duration()
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
		State:        c.stateName(obs),
		Role:         c.roleName(obs),
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

// stateName is Patroni's "state" of the member.
func (c *Controller) stateName(obs Observation) string {
	if c.busy != nil {
		switch c.busy.kind {
		case ha.ActBootstrap:
			return "initializing new cluster"
		case ha.ActCreateReplica:
			return "creating replica"
		case ha.ActStart:
			return "starting"
		case ha.ActRewind:
			return "stopped"
		case ha.ActRestart:
			return "restarting"
		case ha.ActReinitialize:
			return "creating replica"
		}
	}
	switch {
	case obs.HA.Running && obs.HA.Ready:
		return "running"
	case obs.HA.Running:
		return "starting"
	case c.startFailed:
		return "start failed"
	case c.crashed:
		return "crashed"
	}
	return "stopped"
}

// roleName is Patroni's "role" of the member; a stopped member keeps its
// last role.
func (c *Controller) roleName(obs Observation) string {
	switch {
	case obs.HA.DataDir == ha.DataDirEmpty:
		c.role = cluster.RoleUninitialized
	case obs.HA.Running && obs.HA.Ready && obs.HA.InRecovery:
		c.role = cluster.RoleReplica
	case obs.HA.Running && obs.HA.Ready:
		c.role = cluster.RolePrimary
	case c.mem.Demoted:
		c.role = cluster.RoleDemoted
	case c.role == "":
		c.role = cluster.RoleReplica
	}
	return c.role
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
	if err := c.opts.ApplyDynamic(context.Background(), c.effective()); err != nil {
		c.logger.Warn("applying the configuration to postgres", "error", err)
		return
	}
	c.appliedRaw, c.appliedGen = &raw, gen
}
