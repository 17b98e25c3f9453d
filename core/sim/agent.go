package sim

import (
	"iter"
	"maps"
	"slices"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/ha"
)

// Timing of the simulated agent's loop, as the controller's.
const (
	retryInterval   = time.Second
	peerTimeout     = 2 * time.Second
	failsafeTimeout = 2 * time.Second
	leaseRecheck    = 10 * time.Millisecond
	staleRead       = time.Second
)

// killed unwinds an agent's coroutine when its process dies.
type killed struct{}

// agent is one member's simulated custos process: the controller's loop
// (read the DCS, observe PostgreSQL, gather, ha.Decide, execute, wait),
// written as straight-line code that runs as a coroutine. Every call that
// takes time (a DCS request, a peer request, a stop, the wait for the next
// cycle) suspends it; the world resumes it when the call ends, so that
// other members and faults interleave at every such point.
type agent struct {
	w *World
	n *node

	next  func() (struct{}, bool)
	stop  func()
	yield func(struct{}) bool
	dead  bool

	// Suspension: waitGen names the current wait; a wake-up for another
	// one is stale. frozen: SIGSTOP; a wake-up then waits for SIGCONT.
	waitGen       uint64
	sleeping      bool // between cycles: watch, exits and outcomes end the wait
	blocked       bool // in block: pokes end the wait
	frozen        bool
	resumePending bool
	woke          string

	// Events that arrived while the loop was busy.
	pendingWatch bool
	pendingExit  bool
	pendingDone  *ha.Outcome

	// The controller's state.
	mem          ha.Memory
	gather       ha.Gather
	waited       bool
	busy         *background
	outcome      *ha.Outcome
	dcsLastSeen  time.Time
	dyn          dynamic
	leaseExpiry  time.Time
	renewFailed  string
	keyLost      bool
	urgent       bool
	exited       bool
	lastFailsafe cluster.Failsafe
	// failsafeAsked is when the last POST /failsafe round began.
	failsafeAsked time.Time
	heartbeat     time.Time
}

// background is the async action in progress.
type background struct {
	kind   ha.Kind
	since  time.Time
	gen    uint64
	target string
}

func (a *agent) log(format string, args ...any) {
	a.w.tracef("%s: "+format, append([]any{a.n.name}, args...)...)
}

// startAgent starts the node's agent process with a fresh memory.
func (w *World) startAgent(n *node) {
	a := &agent{w: w, n: n, dyn: w.opt.bootstrapDynamic()}
	n.agent = a
	a.next, a.stop = iter.Pull(func(yield func(struct{}) bool) {
		a.yield = yield
		defer func() {
			if r := recover(); r != nil {
				if _, ok := r.(killed); !ok {
					panic(r)
				}
			}
		}()
		a.run()
	})
	a.resume("start")
}

// kill ends the agent's process at once (SIGKILL); its background actions
// die with it.
func (a *agent) kill() {
	if a.dead {
		return
	}
	a.dead = true
	a.n.agent = nil
	a.stop()
}

// suspend yields to the world until a wake-up for the current wait.
func (a *agent) suspend() string {
	if !a.yield(struct{}{}) {
		panic(killed{})
	}
	return a.woke
}

// resume runs the agent until it waits again.
func (a *agent) resume(why string) {
	if a.dead {
		return
	}
	if a.frozen {
		a.resumePending, a.woke = true, why
		return
	}
	a.waitGen++
	a.woke = why
	a.next()
}

// wake resumes the agent if it still waits for wait g.
func (a *agent) wake(g uint64, why string) {
	if a.dead || g != a.waitGen || (a.frozen && a.resumePending) {
		return
	}
	a.resume(why)
}

// wait suspends the agent until t (or a wake-up of this wait).
func (a *agent) wait(t time.Time) string {
	g := a.waitGen
	a.w.at(t, func() { a.wake(g, "timer") })
	return a.suspend()
}

// block waits until cond holds or t passes; the callbacks that may make
// cond hold poke the agent.
func (a *agent) block(t time.Time, cond func() bool) {
	for !cond() && a.w.now.Before(t) {
		a.blocked = true
		a.wait(t)
		a.blocked = false
	}
}

// poke wakes an agent blocked on a condition to check it again.
func (a *agent) poke(why string) {
	if a.blocked && !a.dead {
		a.wake(a.waitGen, why)
	}
}

func (a *agent) freeze() { a.frozen = true }

func (a *agent) thaw() {
	a.frozen = false
	if a.resumePending {
		a.resumePending = false
		a.resume(a.woke)
	}
}

// notify delivers an event the loop's select waits for: at once when it
// sleeps between cycles, else when it next would.
func (a *agent) notify(kind string) {
	if a.dead {
		return
	}
	switch kind {
	case "watch":
		a.pendingWatch = true
	case "exit":
		a.pendingExit = true
	}
	if a.sleeping {
		a.wake(a.waitGen, kind)
	}
}

// run is the controller's Run.
func (a *agent) run() {
	trigger := "start"
	for {
		wait := a.cycle(trigger)
		trigger = a.sleep(wait)
	}
}

// sleep waits between cycles and returns what ended the wait.
func (a *agent) sleep(d time.Duration) string {
	until := a.w.now.Add(d)
	for {
		if t := a.takePending(); t != "" {
			return t
		}
		if !a.w.now.Before(until) {
			if a.waited {
				return "gathered"
			}
			return "loop_wait"
		}
		a.sleeping = true
		a.wait(until)
		a.sleeping = false
	}
}

// takePending takes one event that arrived, in the order Go's select
// would pick among ready channels: at random.
func (a *agent) takePending() string {
	var ready []string
	if a.pendingWatch {
		ready = append(ready, "dcs_watch")
	}
	if a.pendingExit {
		ready = append(ready, "postmaster_exit")
	}
	if a.pendingDone != nil {
		ready = append(ready, "action_done")
	}
	if len(ready) == 0 {
		return ""
	}
	t := ready[a.w.rng.IntN(len(ready))]
	switch t {
	case "dcs_watch":
		a.pendingWatch = false
	case "postmaster_exit":
		a.pendingExit = false
		a.exited = true
	case "action_done":
		o := *a.pendingDone
		a.pendingDone = nil
		a.busy, a.outcome = nil, &o
		if o.Kind == ha.ActDemote || o.Kind == ha.ActRestart || o.Kind == ha.ActReinitialize {
			a.pendingExit, a.exited = false, false
		}
	}
	return t
}

// config is the decision's configuration: the last /config read (or the
// bootstrap one) over the member's own settings.
func (a *agent) config() ha.Config {
	o := a.w.opt
	return ha.Config{
		TTL: o.TTL, LoopWait: o.LoopWait, RetryTimeout: o.RetryTimeout,
		MaximumLagOnFailover: 1 << 20, PrimaryStartTimeout: o.PrimaryStartTimeout,
		CheckTimeline: true, Paused: a.dyn.Paused,
		UsePgRewind: o.UsePgRewind, RemoveDataDirectoryOnRewindFailure: true,
		RemoveDataDirectoryOnDivergedTimelines: true,
		SyncMode:                               a.dyn.SyncMode, SyncStrict: a.dyn.SyncStrict, FailsafeMode: a.dyn.FailsafeMode,
		SyncNodeCount: 1, MaximumLagOnSyncNode: -1,
	}
}

// leaseDeadline is the deadline of every call of a leader's cycle.
func (a *agent) leaseDeadline() time.Time { return ha.ActBy(a.leaseExpiry, a.w.opt.TTL) }

// cycle is the controller's cycle; it returns the wait for the next one.
func (a *agent) cycle(trigger string) time.Duration {
	w := a.w
	start := w.now
	deadline := a.leaseDeadline()
	clu, readErr := a.readCluster(deadline)
	in := ha.Input{
		Now: w.now, Name: a.n.name, Config: a.config(),
		Cluster: clu, DCSLastSeen: a.dcsLastSeen, LeaderExpiry: a.leaseExpiry,
		Watchdog: a.n.watchdogState(w.opt), Postgres: a.observe(),
		Busy: a.busyNow(), Memory: a.mem, LastFailsafe: a.lastFailsafe,
		RenewFailed: a.renewFailed, KeyLost: a.keyLost, Outcome: a.outcome,
		PostmasterExited: a.exited, FailsafeHeartbeat: a.heartbeat,
	}
	a.renewFailed, a.keyLost, a.urgent, a.exited, a.outcome = "", false, false, false, nil
	if readErr != "" {
		in.DCSError = readErr
		if a.dcsLastSeen.IsZero() {
			a.dcsLastSeen, in.DCSLastSeen = start, start
		}
	}
	want := ha.Gathering(in)
	if (want.Peers || a.gather.Peers) && in.Cluster != nil {
		in.Peers, in.PeersFetched = a.fetchPeers(in.Cluster, deadline), true
	}
	if want.Failsafe || a.gather.Failsafe {
		a.failsafeAsked = w.now
		in.FailsafeAcks, in.FailsafeChecked = a.askFailsafe(deadline), true
		in.Now = w.now
	}
	if in.PeersFetched && in.Cluster != nil && w.now.Sub(in.Now) > staleRead {
		// The controller's rereadAfterSlowGather.
		clu, err := a.readCluster(a.leaseDeadline())
		in.Cluster, in.DCSLastSeen, in.LeaderExpiry, in.LastFailsafe = clu, a.dcsLastSeen, a.leaseExpiry, a.lastFailsafe
		if err != "" {
			in.DCSError = err
		}
		in.Now = w.now
	}
	in.Postgres = a.observe()

	dec := ha.Decide(in)
	w.decisions++
	if err := ha.CheckInvariants(in, dec); err != nil {
		w.fail("%s: decision breaks a safety invariant: %v (reason: %s)", a.n.name, err, dec.Reason)
		dec.Actions = nil
	}
	a.gather, a.waited = dec.Gather, dec.Waiting
	a.mem = dec.Memory
	if kept := dec.Memory.FailsafeKept; !kept.IsZero() && kept.Equal(in.Now) {
		a.leaseExpiry = a.failsafeAsked.Add(w.opt.TTL)
		a.n.feedWatchdog(w, a.leaseExpiry)
	}
	a.log("%s [%s] %s", trigger, ha.ActionNames(dec.Actions), dec.Reason)

	failed := a.execute(in, dec, deadline)
	stopped := dec.Stops() && failed == ""
	if !ha.LeaseStillCounts(a.leaseExpiry, w.opt.TTL, w.now, stopped, a.observe(), a.dyn.Paused, a.busy != nil) {
		a.leaseExpiry = time.Time{}
	}
	if !a.observe().MayBePrimary() {
		a.urgent = false
	}
	if failed != "" {
		a.log("failed: %s", failed)
	}
	if dec.Waiting {
		return 0
	}
	return a.nextWait(readErr != "" || failed != "", dec.Stops())
}

// nextWait is the controller's nextWait.
func (a *agent) nextWait(failed, stopTried bool) time.Duration {
	wait := a.w.opt.LoopWait
	if failed {
		wait = min(retryInterval, wait)
	}
	if a.renewFailed != "" && a.urgent {
		return 0
	}
	if by := a.leaseDeadline(); !by.IsZero() {
		switch until := by.Sub(a.w.now); {
		case until <= 0 && !stopTried:
			return leaseRecheck
		case until > 0 && until < wait:
			wait = until
		}
	}
	return wait
}

func (a *agent) busyNow() *ha.Busy {
	if a.busy == nil {
		return nil
	}
	return &ha.Busy{Kind: a.busy.kind, Since: a.busy.since}
}

// observe is what the controller's observation of PostgreSQL finds.
func (a *agent) observe() ha.Postgres {
	return a.w.observe(a.n)
}

// readCluster is the controller's readDCS: a read and what it takes in.
func (a *agent) readCluster(deadline time.Time) (*cluster.Cluster, string) {
	start := a.w.now
	clu, err := a.read(deadline)
	if err == "" {
		a.dcsLastSeen = start
		a.lastFailsafe = clu.Failsafe
		if clu.LeaderName() != a.n.name {
			a.leaseExpiry = time.Time{}
		}
	}
	return clu, err
}

// read reads the cluster from the DCS.
func (a *agent) read(deadline time.Time) (*cluster.Cluster, string) {
	var (
		clu *cluster.Cluster
		dyn = a.w.opt.bootstrapDynamic()
	)
	err, _ := a.request(deadline, false, func(s *store) (string, bool) {
		clu = s.read()
		if s.config != nil {
			dyn = *s.config
		}
		return "", false
	})
	if err != "" {
		return nil, err
	}
	a.dyn = dyn
	return clu, ""
}

// call sends one request to the DCS and waits for its answer, at most
// retry_timeout and never past the lease deadline. The request may be
// applied and its answer lost: the caller then sees a timeout.
func (a *agent) call(deadline time.Time, apply func(*store) (string, bool)) (string, bool) {
	return a.request(deadline, true, apply)
}

// request is call for a read (write false) or a write.
func (a *agent) request(deadline time.Time, write bool, apply func(*store) (string, bool)) (string, bool) {
	w := a.w
	if !deadline.IsZero() && !w.now.Before(deadline) {
		return "context deadline exceeded", false
	}
	timeout := w.now.Add(w.opt.RetryTimeout)
	if !deadline.IsZero() && deadline.Before(timeout) {
		timeout = deadline
	}
	var (
		done bool
		err  string
		lost bool
	)
	name := a.n.name
	if w.dcsReachable(name) {
		w.after(w.latency(name), func() {
			if !w.dcsReachable(name) || write && w.minority[name] {
				return
			}
			if w.dcs.expire(w.now) {
				w.dcsChanged()
			}
			before := w.dcs.watched()
			e, l := apply(w.dcs)
			if w.dcs.watched() != before {
				w.dcsChanged()
			}
			w.after(w.latency(name), func() {
				if !w.dcsReachable(name) || w.lostAnswers[name] {
					return
				}
				done, err, lost = true, e, l
				a.poke("answer")
			})
		})
	}
	a.block(timeout, func() bool { return done })
	if !done {
		return "timeout", false
	}
	return err, lost
}

// fetchPeers asks every other member for GET /patroni, in parallel.
func (a *agent) fetchPeers(clu *cluster.Cluster, deadline time.Time) []ha.Peer {
	w := a.w
	timeout := w.now.Add(peerTimeout)
	if !deadline.IsZero() && deadline.Before(timeout) {
		timeout = deadline
	}
	var peers []ha.Peer
	pending := 0
	for _, m := range clu.Members {
		if m.Name == a.n.name || m.APIURL == "" {
			continue
		}
		i := len(peers)
		peers = append(peers, ha.Peer{Name: m.Name})
		pending++
		target := w.node(m.Name)
		if target == nil || !w.peerReachable(a.n.name, m.Name) || !deadline.IsZero() && !w.now.Before(deadline) {
			continue
		}
		w.after(w.peerLatency(), func() {
			if target.agent == nil || target.agent.frozen || !w.peerReachable(a.n.name, target.name) {
				return
			}
			p := w.peerAnswer(target)
			w.after(w.peerLatency(), func() {
				if !w.peerReachable(a.n.name, target.name) {
					return
				}
				peers[i] = p
				pending--
				a.poke("peers")
			})
		})
	}
	a.block(timeout, func() bool { return pending == 0 })
	return peers
}

// askFailsafe POSTs /failsafe to the members /failsafe lists, one retry
// each; it returns who accepted.
func (a *agent) askFailsafe(deadline time.Time) map[string]bool {
	w := a.w
	acks := map[string]bool{}
	for attempt := 0; attempt < 2; attempt++ {
		timeout := w.now.Add(failsafeTimeout)
		if !deadline.IsZero() && deadline.Before(timeout) {
			timeout = deadline
		}
		if !timeout.After(w.now) {
			break
		}
		pending := 0
		for _, name := range sortedKeys(a.lastFailsafe) {
			if name == a.n.name || acks[name] {
				continue
			}
			target := w.node(name)
			if target == nil || !w.peerReachable(a.n.name, name) {
				continue
			}
			pending++
			w.after(w.peerLatency(), func() {
				t := target.agent
				if t == nil || t.frozen || !w.peerReachable(a.n.name, target.name) || !t.dyn.FailsafeMode || w.observe(target).Primary() {
					return
				}
				t.heartbeat = w.now
				w.after(w.peerLatency(), func() {
					if !w.peerReachable(a.n.name, target.name) {
						return
					}
					acks[target.name] = true
					pending--
					a.poke("failsafe")
				})
			})
		}
		a.block(timeout, func() bool { return pending == 0 })
		if pending == 0 {
			break
		}
	}
	return acks
}

// execute runs the decision's actions in order, stopping at the first
// that fails (touch_member runs regardless).
func (a *agent) execute(in ha.Input, dec ha.Decision, deadline time.Time) string {
	failed := ""
	for _, act := range dec.Actions {
		if failed != "" && act.Kind != ha.ActTouchMember {
			continue
		}
		if err := a.act(in, act, deadline); err != "" && failed == "" {
			failed = string(act.Kind) + ": " + err
		}
	}
	return failed
}

// act runs one action.
func (a *agent) act(in ha.Input, act ha.Action, deadline time.Time) string {
	w, me := a.w, a.n.name
	ttl := w.opt.TTL
	pg := a.n.pg
	switch act.Kind {
	case ha.ActAcquireLeader:
		sent := w.now
		err, _ := a.call(deadline, func(s *store) (string, bool) {
			if s.leader != nil {
				return "key exists", false
			}
			s.leader = &lease{name: me, ver: s.next(), expires: w.now.Add(ttl)}
			w.scheduleExpiry(s.leader.expires)
			return "", false
		})
		if err == "" {
			a.leaseExpiry = sent.Add(ttl)
			a.n.feedWatchdog(w, a.leaseExpiry)
			w.leaderTaken(me)
		}
		return err
	case ha.ActRenewLeader:
		sent := w.now
		err, lost := a.call(deadline, func(s *store) (string, bool) {
			if s.leader == nil || s.leader.name != me {
				return "key lost", true
			}
			// A renewal refreshes the lease (etcd's keep-alive, Consul's
			// session renewal): the key does not change, no watch fires.
			s.leader.expires = w.now.Add(ttl)
			w.scheduleExpiry(s.leader.expires)
			if act.Status != nil {
				s.status = *act.Status
			}
			return "", false
		})
		if err != "" {
			a.renewFailed, a.keyLost = err, lost
			a.urgent = a.observe().MayBePrimary()
			return err
		}
		a.leaseExpiry = sent.Add(ttl)
		a.n.feedWatchdog(w, a.leaseExpiry)
		return ""
	case ha.ActReleaseLeader:
		err, _ := a.call(deadline, func(s *store) (string, bool) {
			if s.leader != nil && s.leader.name == me {
				s.leader = nil
				s.next()
			}
			return "", false
		})
		if err == "" {
			a.leaseExpiry = time.Time{}
		}
		return err
	case ha.ActRaceInitialize:
		err, _ := a.call(deadline, func(s *store) (string, bool) {
			if s.initialize != nil {
				return "initialize exists", false
			}
			v := ""
			s.initialize, s.initVer = &v, s.next()
			return "", false
		})
		return err
	case ha.ActWriteInitialize:
		sys := pg.sysID
		err, _ := a.call(deadline, func(s *store) (string, bool) {
			if !matches(in.Cluster.InitializeVersion, s.initVer, s.initialize != nil) {
				return "initialize changed", false
			}
			s.initialize, s.initVer = &sys, s.next()
			return "", false
		})
		return err
	case ha.ActCancelInitialize:
		err, _ := a.call(deadline, func(s *store) (string, bool) {
			if s.initialize != nil {
				s.initialize = nil
				s.next()
			}
			return "", false
		})
		return err
	case ha.ActWriteConfig:
		err, _ := a.call(deadline, func(s *store) (string, bool) {
			if s.config != nil {
				return "config exists", false
			}
			d := w.opt.bootstrapDynamic()
			s.config, s.configVer = &d, s.next()
			return "", false
		})
		return err
	case ha.ActWriteHistory:
		// The controller's writeHistory: the lines /history has with the
		// same switch point are kept, the newest one names this member.
		known := map[int]cluster.HistoryLine{}
		for _, l := range in.Cluster.History {
			known[l.Timeline] = l
		}
		var h cluster.History
		sps := pg.hist.switchPoints()
		for i, sp := range sps {
			l := cluster.HistoryLine{Timeline: sp.timeline, LSN: sp.lsn, Reason: "no recovery target specified"}
			if k, ok := known[l.Timeline]; ok && k.LSN == l.LSN {
				l = k
			} else if i == len(sps)-1 {
				l.NewLeader = me
			}
			h = append(h, l)
		}
		// The controller's namePromoter.
		if act.Timeline > 1 && act.Member != "" {
			for i := range h {
				if h[i].Timeline == act.Timeline-1 {
					h[i].NewLeader = act.Member
				}
			}
		}
		err, _ := a.call(deadline, func(s *store) (string, bool) {
			s.history, s.hasHistory = h, true
			s.next()
			w.tracef("%s: /history = %v", me, h)
			return "", false
		})
		return err
	case ha.ActClearFailover:
		err, _ := a.call(deadline, func(s *store) (string, bool) {
			if in.Cluster.Failover != nil && s.failover != nil && in.Cluster.Failover.Version != ver(s.failVer) {
				return "failover changed", false
			}
			s.failover = nil
			s.next()
			return "", false
		})
		return err
	case ha.ActWriteSync:
		value := act.SyncValue(me)
		read := ""
		if in.Cluster.Sync != nil {
			read = in.Cluster.Sync.Version
		}
		err, _ := a.call(deadline, func(s *store) (string, bool) {
			if !matches(read, s.syncVer, s.sync != nil) {
				return "sync changed", false
			}
			s.sync, s.syncVer = &value, s.next()
			w.tracef("%s: /sync = %v quorum %d", me, value.SyncStandby, value.Quorum)
			return "", false
		})
		return err
	case ha.ActDeleteSync:
		read := ""
		if in.Cluster.Sync != nil {
			read = in.Cluster.Sync.Version
		}
		err, _ := a.call(deadline, func(s *store) (string, bool) {
			if s.sync != nil && read != "" && read != ver(s.syncVer) {
				return "sync changed", false
			}
			if s.sync != nil {
				s.sync = nil
				s.next()
			}
			return "", false
		})
		return err
	case ha.ActSetFailsafe:
		v := act.Failsafe
		err, _ := a.call(deadline, func(s *store) (string, bool) {
			s.failsafe = v
			s.next()
			return "", false
		})
		// The controller's setFailsafe: what was written, or (the write
		// may have landed) the members of both.
		merged := maps.Clone(v)
		if err != "" {
			merged = maps.Clone(a.lastFailsafe)
			if merged == nil {
				merged = cluster.Failsafe{}
			}
			maps.Copy(merged, v)
		}
		a.lastFailsafe = merged
		return err
	case ha.ActTouchMember:
		m := a.member()
		err, _ := a.call(deadline, func(s *store) (string, bool) {
			s.members[me] = &memberKey{m: m, ver: s.next(), expires: w.now.Add(ttl)}
			w.scheduleExpiry(w.now.Add(ttl))
			return "", false
		})
		return err
	case ha.ActArmWatchdog:
		if !w.opt.Watchdog {
			return "no watchdog"
		}
		a.n.wdArmed = true
		a.n.feedWatchdog(w, a.leaseExpiry)
		return ""
	case ha.ActDisarmWatchdog:
		a.n.wdArmed = false
		return ""
	case ha.ActSyncSlots:
		return ""
	case ha.ActFollow:
		if !pg.running {
			return "not running"
		}
		pg.upstream = act.Member
		return ""
	case ha.ActSetSyncStandbyNames:
		if !pg.running {
			return "not running"
		}
		if act.Value == nil {
			pg.syncNames = ""
		} else {
			pg.syncNames = *act.Value
		}
		w.tracef("%s: synchronous_standby_names = %q", me, pg.syncNames)
		w.settleCommits(a.n)
		return ""
	case ha.ActRemoveDataDir:
		if pg.running {
			return "postgres runs"
		}
		pg.wipe()
		return ""
	case ha.ActStop:
		return a.stopPostgres(act.Mode)
	case ha.ActCancel:
		if a.busy != nil {
			b := a.busy
			a.busy = nil
			a.pendingDone = nil
			a.outcome = &ha.Outcome{Kind: b.kind, Err: "cancelled", At: w.now}
		}
		return ""
	}
	if act.Kind.Async() {
		return a.startBackground(act)
	}
	return "unknown action " + string(act.Kind)
}

// stopPostgres stops PostgreSQL: it stops taking writes at once and is
// down after the stop's duration, whatever becomes of the agent (pg_ctl
// signalled the postmaster); a clean stop lets the connected standbys
// receive everything, the shutdown checkpoint included.
func (a *agent) stopPostgres(mode string) string {
	w, n, pg := a.w, a.n, a.n.pg
	if !pg.running {
		return ""
	}
	pg.stopping = true
	w.dropCommits(n)
	d := w.duration(10*time.Millisecond, 100*time.Millisecond)
	if mode != ha.StopImmediate {
		d = w.duration(100*time.Millisecond, 2*time.Second)
	}
	w.after(d, func() {
		if pg.running && pg.stopping {
			w.stopPostgres(n, mode == ha.StopImmediate)
		}
		a.poke("stopped")
	})
	a.block(w.now.Add(d), func() bool { return !pg.running })
	return ""
}

// member is the member key's value, as the controller publishes it.
func (a *agent) member() cluster.Member {
	obs := a.observe()
	m := cluster.Member{
		ConnURL: "postgres://" + a.n.name, APIURL: "http://" + a.n.name,
		State: ha.StateName(a.busyNow(), obs, a.mem),
		Role:  ha.RoleName(obs, a.mem),
		Pause: a.dyn.Paused,
	}
	if obs.Timeline > 0 {
		m.Timeline = obs.Timeline
	}
	if obs.Running && obs.Ready {
		lsn := obs.LSN
		m.XLogLocation = &lsn
	}
	if obs.InRecovery {
		lsn := obs.LSN
		m.ReceiveLSN, m.ReplayLSN = &lsn, &lsn
		if obs.Streaming {
			m.ReplicationState = "streaming"
		}
	}
	return m
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
