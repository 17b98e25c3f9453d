package ha

import (
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	"github.com/custos-ha/custos/core/cluster"
)

// Decide returns what to do in this cycle. It is pure: the same Input gives
// the same Decision.
func Decide(in Input) Decision {
	d := &decider{in: in, c: in.Cluster, pg: in.Postgres, mem: in.Memory}
	d.history()
	d.decide()
	if !d.waiting {
		d.disarm()
	}
	if in.Cluster != nil && !d.waiting {
		d.add(Action{Kind: ActTouchMember})
	}
	d.settle()
	if d.note != "" {
		d.reason += " (" + d.note + ")"
	}
	if m := d.malformedNote(); m != "" {
		d.reason += " (" + m + ")"
	}
	return Decision{Actions: d.actions, Reason: d.reason, Gather: d.gather, Waiting: d.waiting, Memory: d.mem, Reply: d.replyTo}
}

type decider struct {
	in  Input
	c   *cluster.Cluster
	pg  Postgres
	mem Memory

	actions []Action
	reason  string
	gather  Gather
	// waiting: the decision lacks what gather names.
	waiting bool
	// failsafeKept: the members' acknowledgement keeps this primary.
	failsafeKept bool
	// note is added to the reason (something worth saying beside it).
	note    string
	replyTo *Reply
}

func (d *decider) add(actions ...Action) { d.actions = append(d.actions, actions...) }

func (d *decider) say(format string, args ...any) { d.reason = fmt.Sprintf(format, args...) }

// held reports whether this member holds the leader key.
func (d *decider) held() bool { return d.c != nil && d.c.LeaderName() == d.in.Name }

func (d *decider) decide() {
	if d.in.ShuttingDown {
		d.shutdown()
		return
	}
	bootstrapFailed := d.outcome()
	if d.fence() {
		return
	}
	if d.c == nil {
		d.dcsDown()
		return
	}
	if d.pg.Primary() && d.c.Leader != nil && !d.held() && !d.in.Config.Paused {
		// Never two primaries: this outranks everything else, even a
		// background action in progress.
		if d.in.Busy != nil {
			d.add(Action{Kind: ActCancel})
		}
		d.add(Action{Kind: ActStop, Mode: StopImmediate})
		d.mem.Demoted = true
		d.say("demoting self because I do not have the lock and I was a leader")
		return
	}
	if bootstrapFailed != "" {
		if d.pg.Running {
			d.add(Action{Kind: ActStop, Mode: StopImmediate})
		}
		d.add(Action{Kind: ActCancelInitialize}, Action{Kind: ActRemoveDataDir})
		d.say("bootstrap failed: %s; removing the data directory and cancelling the initialization", bootstrapFailed)
		return
	}
	if d.in.Request != nil && d.request() {
		return
	}
	if d.in.Busy != nil {
		if d.in.Busy.Kind == ActPromote && !d.held() {
			d.add(Action{Kind: ActCancel})
			d.say("leader key lost while promoting: cancelling the promotion")
			return
		}
		if why := d.watchdogBlocks(); why != "" && d.held() && d.pg.Primary() && !d.in.Watchdog.Armed {
			d.add(Action{Kind: ActCancel}, Action{Kind: ActStop, Mode: StopImmediate}, Action{Kind: ActReleaseLeader})
			d.mem.Demoted = true
			d.say("demoting self: %s", why)
			return
		}
		if d.held() {
			d.add(Action{Kind: ActRenewLeader})
		}
		d.say("%s in progress since %s", d.in.Busy.Kind, d.in.Busy.Since.UTC().Format("15:04:05"))
		return
	}
	switch d.pg.DataDir {
	case DataDirBroken:
		if d.held() {
			d.add(Action{Kind: ActReleaseLeader})
		}
		d.say("data directory unusable: %s", d.pg.Problem)
		return
	case DataDirUnknown:
		d.say("data directory state unknown: %s", d.pg.Problem)
		return
	case DataDirEmpty:
		d.noData()
		return
	}
	if sysid := d.c.SysID(); sysid != "" && d.pg.SysID != "" && sysid != d.pg.SysID {
		d.sysidMismatch(sysid)
		return
	}
	if d.mem.Bootstrapping {
		d.finishBootstrap()
		return
	}
	if !d.pg.Running {
		d.recover()
		return
	}
	if !d.pg.Ready {
		if d.held() {
			d.add(Action{Kind: ActRenewLeader})
		}
		d.say("postgres is running but not answering: %s", d.pg.Problem)
		return
	}
	d.mem.CrashedAt = timeZero
	if d.scheduledRestart() {
		return
	}
	if d.held() {
		d.leader()
		return
	}
	if d.c.Initialize == nil && !d.c.IsLocked() && !d.pg.InRecovery {
		// A running primary of a cluster without /initialize adopts it.
		d.add(Action{Kind: ActWriteInitialize})
	}
	if d.c.Leader == nil {
		d.race()
		return
	}
	d.follow()
}

// outcome takes in the background action that just finished; it returns
// the error of a failed bootstrap, which decides the cycle.
func (d *decider) outcome() (bootstrapFailed string) {
	o := d.in.Outcome
	if o == nil {
		return ""
	}
	switch o.Kind {
	case ActBootstrap:
		d.mem.Bootstrapping = o.Err == ""
		if o.Err != "" {
			d.mem.BootstrapFailed = o.Err
		}
		return o.Err
	case ActRewind:
		d.mem.RewindFailed = o.Err != ""
		d.mem.Rewound = o.Err == ""
	case ActDemote:
		d.mem.HandOff = o.Err == ""
		d.mem.HandOffFailed = o.Err
	case ActPromote:
		if o.Hook != "" {
			d.mem.PromoteRefusedAt = o.At
		}
	}
	return ""
}

func (d *decider) shutdown() {
	if d.in.Config.Paused {
		// Maintenance mode: PostgreSQL and the leader key stay as they are.
		d.say("shutting down; paused, so postgres keeps running")
		return
	}
	if d.pg.Running {
		d.add(Action{Kind: ActStop, Mode: StopFast})
	}
	if d.c == nil || d.held() {
		d.add(Action{Kind: ActReleaseLeader})
	}
	d.say("shutting down")
}

func (d *decider) dcsDown() {
	cfg := d.in.Config
	down := d.in.Now.Sub(d.in.DCSLastSeen)
	// The key cannot be counted on past retry_timeout, past the lease, or
	// once its renewal failed.
	lost := down >= cfg.RetryTimeout || d.leaseRunOut() || d.in.RenewFailed != ""
	switch {
	case d.pg.Primary() && !cfg.Paused && lost && cfg.FailsafeMode && len(d.in.LastFailsafe) > 0:
		d.failsafe(fmt.Sprintf("the DCS is not accessible for %s", down.Round(time.Millisecond)), d.in.DCSError)
	case d.pg.Primary() && !cfg.Paused && lost:
		d.add(Action{Kind: ActStop, Mode: d.demoteMode()})
		d.mem.Demoted = true
		d.say("demoting self because the DCS is not accessible for %s and I was a leader (%s)", down.Round(1e6), d.in.DCSError)
	case d.pg.Primary():
		d.say("DCS is not accessible (%s); still primary for up to retry_timeout %s", d.in.DCSError, cfg.RetryTimeout)
	case !d.pg.Running && d.pg.DataDir == DataDirInitialized && !cfg.Paused && d.in.Busy == nil && d.wasPrimary():
		// Started read-only, a former primary's data looks like any
		// replica's: once the DCS answers, nothing (not even after an
		// agent restart) would tell that another member may have
		// promoted onto the same timeline from a point before its end.
		d.say("DCS is not accessible (%s); not starting: this data ran as a primary (timeline %d), to be checked against the leader's history first", d.in.DCSError, d.pg.ControlTimeline)
	case !d.pg.Running && d.pg.DataDir == DataDirInitialized && !cfg.Paused && d.in.Busy == nil:
		d.add(Action{Kind: ActStart})
		d.say("DCS is not accessible (%s); starting as a read-only replica", d.in.DCSError)
	default:
		d.say("DCS is not accessible: %s", d.in.DCSError)
	}
}

// noData handles an empty data directory: bootstrap or clone.
func (d *decider) noData() {
	c := d.c
	switch {
	case d.held():
		d.add(Action{Kind: ActReleaseLeader})
		d.say("data directory is empty while I hold the leader key: releasing it")
	case c.Leader != nil:
		src := d.cloneSource()
		if src == "" {
			d.say("waiting for leader %s to run before cloning from it", d.leaderLabel())
			return
		}
		d.add(Action{Kind: ActCreateReplica, Member: src})
		d.say("trying to bootstrap from %s %s", map[bool]string{true: "leader", false: "replica"}[src == c.LeaderName()], src)
	case c.Initialize == nil && d.in.Config.StandbyCluster:
		d.say("not bootstrapping: /config sets standby_cluster, which custos does not run yet")
	case c.Initialize == nil && d.mem.BootstrapFailed != "":
		d.say("waiting for another member to bootstrap: my bootstrap failed (%s)", d.mem.BootstrapFailed)
	case c.Initialize == nil && d.in.Config.Tags.CanFailover() && d.watchdogBlocks() != "":
		d.say("not bootstrapping a new cluster: %s", d.watchdogBlocks())
	case c.Initialize == nil && d.in.Config.Tags.CanFailover():
		d.add(Action{Kind: ActRaceInitialize}, Action{Kind: ActBootstrap})
		d.say("trying to bootstrap a new cluster")
	case c.Initialize == nil:
		d.say("waiting for a leader to bootstrap: I am nofailover and will not bootstrap")
	case d.in.Config.CloneWithoutLeader && !d.in.Config.Paused:
		// Patroni: a replica method that needs no leader rebuilds the
		// member from a backup; it then races as any replica.
		d.add(Action{Kind: ActCreateReplica})
		d.say("no leader is running: creating my data with a replica method that needs none")
	default:
		d.say("waiting for leader to bootstrap")
	}
}

// cloneSource picks a running member tagged clonefrom, else the leader.
func (d *decider) cloneSource() string {
	var candidates []string
	for _, m := range d.c.Members {
		if m.Name != d.in.Name && m.Tags.CloneFrom && m.IsRunning() {
			candidates = append(candidates, m.Name)
		}
	}
	if len(candidates) > 0 {
		sort.Strings(candidates)
		return candidates[0]
	}
	if l := d.c.Leader; l != nil && l.Member.IsRunning() {
		return l.Name
	}
	return ""
}

// finishBootstrap publishes a freshly bootstrapped cluster.
func (d *decider) finishBootstrap() {
	if d.c.Leader != nil && !d.held() {
		d.mem.Bootstrapping = false
		d.say("%s leads the cluster: abandoning my bootstrap", d.c.LeaderName())
		return
	}
	if why := d.watchdogBlocks(); why != "" {
		// Patroni: a watchdog that cannot be activated fails the
		// bootstrap; another member may try.
		if d.pg.Running {
			d.add(Action{Kind: ActStop, Mode: StopImmediate})
		}
		if d.held() {
			d.add(Action{Kind: ActReleaseLeader})
		}
		d.add(Action{Kind: ActCancelInitialize}, Action{Kind: ActRemoveDataDir})
		d.mem.Bootstrapping, d.mem.BootstrapFailed = false, why
		d.say("bootstrap failed: %s; removing the data directory and cancelling the initialization", why)
		return
	}
	lock := Action{Kind: ActAcquireLeader}
	if d.held() {
		lock = Action{Kind: ActRenewLeader}
	}
	if !d.pg.Primary() {
		d.say("waiting for the new cluster's primary to accept connections")
		if !d.pg.Running {
			d.add(lock)
			d.add(d.arm()...)
			d.add(Action{Kind: ActStart, AsPrimary: true})
		}
		return
	}
	if d.held() && d.c.SysID() == d.pg.SysID && d.c.Config != nil {
		d.mem.Bootstrapping = false
		d.leader()
		return
	}
	d.add(lock)
	d.add(d.arm()...)
	d.add(Action{Kind: ActWriteInitialize})
	if d.c.Config == nil {
		d.add(Action{Kind: ActWriteConfig})
	}
	d.say("initialized a new cluster")
}

// leader runs the cycle of the leader key's holder with PostgreSQL up.
func (d *decider) leader() {
	if d.in.Config.Paused && d.pg.InRecovery {
		// Paused, the key stays only with a running primary.
		d.add(Action{Kind: ActReleaseLeader})
		d.say("paused: releasing the leader key, postgres runs as a replica")
		return
	}
	if why := d.watchdogBlocks(); why != "" && !d.in.Watchdog.Armed {
		// Patroni's enforce_primary_role: no primary with the key without
		// the watchdog it requires.
		if d.pg.InRecovery {
			d.add(Action{Kind: ActReleaseLeader})
			d.say("releasing the leader key instead of promoting: %s", why)
			return
		}
		d.add(Action{Kind: ActStop, Mode: StopImmediate}, Action{Kind: ActReleaseLeader})
		d.mem.Demoted = true
		d.say("demoting self: %s", why)
		return
	}
	if d.pg.InRecovery && d.in.Config.StandbyCluster {
		d.add(Action{Kind: ActReleaseLeader})
		d.say("releasing the leader key instead of promoting: /config sets standby_cluster, which custos does not run yet")
		return
	}
	if o := d.in.Outcome; d.pg.InRecovery && o != nil && o.Kind == ActPromote && o.Hook != "" {
		// Patroni: the promotion is cancelled and the key given up; the
		// leader race backs off for ttl (raceBackoff).
		d.add(Action{Kind: ActReleaseLeader})
		d.say("promotion cancelled because the %s script failed (%s): releasing the leader key", o.Hook, o.Err)
		return
	}
	if d.pg.InRecovery {
		d.add(Action{Kind: ActRenewLeader})
		d.add(d.prePromoteSync()...)
		d.add(d.arm()...)
		d.add(Action{Kind: ActPromote})
		d.say("promoting self because I hold the leader key")
		return
	}
	// A running primary's watchdog is armed before the renewal (after a
	// pause, say): a renewal that fails must not leave it unarmed, since
	// failsafe mode may keep the primary without another renewal.
	d.add(d.arm()...)
	d.add(Action{Kind: ActRenewLeader})
	d.mem.Demoted = false
	// /history first, before a switchover can hand the key on: a member
	// that took over from an older timeline would otherwise promote onto
	// the timeline number this one already used, and the two would
	// diverge under one number (check_timeline stops that race).
	if d.pg.Timeline > 1 && d.c.Timeline() != d.pg.Timeline || d.pg.Timeline > 0 && d.c.IsMalformed(cluster.KeyHistory) {
		w := Action{Kind: ActWriteHistory}
		if tl, of := d.formerTimeline(); tl > 1 && tl == d.pg.Timeline-1 && of != "" {
			w.Timeline, w.Member = tl, of
		}
		d.add(w)
	}
	if f := d.c.Failover; (f != nil && !f.IsEmpty()) || d.mem.HandOffFailed != "" {
		if f == nil {
			f = &cluster.Failover{}
		}
		if d.manualFailover(f) {
			return
		}
	}
	if d.c.Initialize == nil || *d.c.Initialize != d.pg.SysID {
		d.add(Action{Kind: ActWriteInitialize})
	}
	if d.c.Config == nil {
		d.add(Action{Kind: ActWriteConfig})
	}
	if !d.in.Config.Paused {
		d.add(Action{Kind: ActSyncSlots, Slots: d.leaderSlots()})
	}
	d.syncReplication()
	if d.in.Config.FailsafeMode {
		if f := d.failsafeMembers(); !maps.Equal(f, d.c.Failsafe) {
			d.add(Action{Kind: ActSetFailsafe, Failsafe: f})
		}
	}
	d.say("no action. I am (%s), the leader with the lock", d.in.Name)
}

// race runs the leader race: no leader key, PostgreSQL up.
func (d *decider) race() {
	cfg := d.in.Config
	switch {
	case d.pg.Primary():
		if tl := d.c.Timeline(); tl > 0 && d.pg.Timeline < tl {
			d.add(Action{Kind: ActStop, Mode: StopFast})
			d.say("demoting self: a stale primary on timeline %d behind the cluster's %d", d.pg.Timeline, tl)
			return
		}
		if why := d.watchdogBlocks(); why != "" {
			d.add(Action{Kind: ActStop, Mode: StopFast})
			d.mem.Demoted = true
			d.say("demoting self instead of acquiring the leader key as the running primary: %s", why)
			return
		}
		d.add(Action{Kind: ActAcquireLeader})
		d.add(d.arm()...)
		d.say("acquiring the leader key as the running primary")
		return
	case !cfg.Tags.CanFailover():
		d.follow()
		d.say("no leader; I am nofailover and will not take part in the race")
		return
	case cfg.StandbyCluster:
		d.follow()
		d.say("no leader; /config sets standby_cluster, which custos does not run yet: not racing (a standby cluster's member must not promote)")
		return
	case !d.mem.PromoteRefusedAt.IsZero() && d.in.Now.Sub(d.mem.PromoteRefusedAt) < cfg.TTL:
		d.follow()
		d.say("no leader; not racing for ttl %s after pre_promote refused my promotion", cfg.TTL)
		return
	}
	if hb := d.in.FailsafeHeartbeat; cfg.FailsafeMode && !hb.IsZero() && d.in.Now.Sub(hb) < cfg.TTL {
		// Keep streaming from the primary that is alive, even as the
		// candidate of a failover: that primary does not step down.
		d.say("no leader key, but the primary reached me in failsafe mode %s ago: not racing", d.in.Now.Sub(hb).Round(time.Millisecond))
		return
	}
	f := d.c.Failover
	manual := f != nil && !f.IsEmpty()
	// The candidate takes the key at once, if nothing it checks of itself
	// in the race keeps it out: synchronous mode, failsafe mode (a primary
	// kept by the /failsafe members may still run), the timeline.
	if manual && f.Candidate == d.in.Name && d.mayTakeOver(Peer{Name: d.in.Name, Timeline: d.pg.Timeline}) && d.watchdogBlocks() == "" {
		// Paused, nothing stops the former leader's primary: the key is
		// taken only once it is known not to run one. In quorum mode a
		// voter may lack commits the others acknowledged: the candidate
		// wins the quorum race like anyone.
		quorum := cfg.SyncMode == SyncQuorum && d.c.Sync != nil && d.c.Sync.Leader != ""
		if (cfg.Paused || quorum) && !d.in.PeersFetched {
			d.gather.Peers, d.waiting = true, true
			d.say("failover to me: asking the peers first")
			return
		}
		if cfg.Paused {
			if who := d.primaryMayRun(f.Leader); who != "" {
				d.say("paused failover to me, but %s may still run as a primary: not taking the key", who)
				return
			}
		}
		if ok, why := d.quorumRace(d.in.Peers); !ok {
			d.follow()
			d.say("failover to me, but %s", why)
			return
		}
		d.add(Action{Kind: ActAcquireLeader})
		d.add(d.prePromoteSync()...)
		d.add(d.arm()...)
		d.add(Action{Kind: ActPromote})
		d.say("promoting self as the failover candidate by acquiring the leader key")
		return
	}
	if cfg.Paused {
		d.say("paused: no leader race")
		return
	}
	if !d.in.PeersFetched {
		d.gather.Peers, d.waiting = true, true
		d.say("no leader: asking the peers before the leader race")
		return
	}
	ok, why := false, ""
	if manual {
		ok, why = d.manualFailoverNoLeader(f)
	} else {
		ok, why = d.healthiest()
	}
	if !ok {
		d.follow()
		d.say("no leader, and I am not the healthiest node: %s", why)
		return
	}
	d.add(Action{Kind: ActAcquireLeader})
	d.add(d.prePromoteSync()...)
	d.add(d.arm()...)
	d.add(Action{Kind: ActPromote})
	if manual {
		d.say("promoting self to leader by acquiring the leader key (manual failover)")
		return
	}
	d.say("promoting self to leader by acquiring the leader key")
}

// healthiest is Patroni's is_healthiest_node core check.
func (d *decider) healthiest() (bool, string) {
	return d.healthiestAmong(d.in.Peers, true)
}

// healthiestAmong compares me with the peers; checkLag applies
// maximum_lag_on_failover (a manual failover skips it).
func (d *decider) healthiestAmong(peers []Peer, checkLag bool) (bool, string) {
	cfg := d.in.Config
	if ok, why := d.malformedRace(checkLag); !ok {
		return false, why
	}
	if opt := d.optime(); checkLag && opt > 0 && opt-d.pg.LSN > cfg.MaximumLagOnFailover {
		return false, fmt.Sprintf("my lag %d bytes is above maximum_lag_on_failover %d", opt-d.pg.LSN, cfg.MaximumLagOnFailover)
	}
	if d.behindTimeline(d.pg.Timeline) {
		return false, fmt.Sprintf("my timeline %d is behind the cluster's %d", d.pg.Timeline, d.c.Timeline())
	}
	if why := d.watchdogBlocks(); why != "" {
		return false, why
	}
	if d.failsafeExcludes(d.in.Name) {
		return false, "failsafe mode is on and /failsafe does not list me"
	}
	// Every answer counts for the quorum, the former leader's too (a
	// manual failover leaves it out of the comparison only).
	if ok, why := d.quorumRace(d.in.Peers); !ok {
		return false, why
	}
	if d.syncActive() && !d.syncEligible(d.in.Name) {
		return false, "I am not a synchronous standby"
	}
	// A peer that would not take the key itself (not in /sync, not in
	// /failsafe, behind the cluster's timeline) does not hold me back:
	// else each could wait for the other for good.
	peers = d.takeOverPeers(peers)
	mine := cfg.Tags.Priority()
	for _, p := range peers {
		if p.Name == d.in.Name || !p.Reachable || p.NoFailover {
			continue
		}
		switch {
		case p.Primary:
			return false, fmt.Sprintf("%s is running as a primary", p.Name)
		case p.LSN > d.pg.LSN:
			return false, fmt.Sprintf("%s is ahead (%d > %d)", p.Name, p.LSN, d.pg.LSN)
		case p.LSN == d.pg.LSN && p.FailoverPriority > mine:
			return false, fmt.Sprintf("%s has the same position and a higher failover_priority (%d > %d)", p.Name, p.FailoverPriority, mine)
		}
	}
	return true, ""
}

// primaryMayRun names a member that may run a primary by the peers'
// answers: one that says so, or the former leader when it did not answer.
func (d *decider) primaryMayRun(former string) string {
	answered := false
	for _, p := range d.in.Peers {
		if p.Reachable && p.Primary {
			return p.Name
		}
		if p.Name == former && (p.Reachable || p.Answered) {
			answered = true
		}
	}
	if former != "" && former != d.in.Name && !answered {
		return former
	}
	return ""
}

// follow runs the cycle of a member whose PostgreSQL is up while another
// member (or nobody) holds the leader key.
func (d *decider) follow() {
	leader := d.c.LeaderName()
	if d.pg.Primary() {
		// Only reachable while paused: nothing is demoted then.
		d.say("paused: continuing to run as primary without the lock")
		return
	}
	if why := d.divergedOnSameTimeline(); leader != "" && !d.in.Config.Paused && d.pg.InRecovery && why != "" {
		// A replica of another branch under the same number: it cannot
		// stream, and pg_rewind sees nothing to undo.
		d.add(Action{Kind: ActStop, Mode: StopFast})
		if d.in.Config.RemoveDataDirectoryOnDivergedTimelines {
			d.add(Action{Kind: ActRemoveDataDir})
			d.say("%s: the data diverged; removing the data directory to clone it again", why)
		} else {
			d.say("%s: the data diverged and remove_data_directory_on_diverged_timelines is off: stopping", why)
		}
		return
	}
	if leader != "" && !d.in.Config.Paused && d.divergedWhileRunning() {
		d.add(Action{Kind: ActStop, Mode: StopFast})
		d.say("my WAL went past where leader %s branched off: stopping for pg_rewind", leader)
		return
	}
	upstream := d.upstream()
	if leader != "" && !d.in.Config.Paused {
		d.add(Action{Kind: ActSyncSlots, Slots: d.replicaSlots()})
	}
	if d.pg.Upstream != upstream {
		d.add(Action{Kind: ActFollow, Member: upstream})
		switch {
		case leader == "":
			d.say("no leader: stop following %s", d.pg.Upstream)
		case upstream == "":
			d.say("nostream: replaying archived WAL under leader %s instead of streaming from %s", leader, d.pg.Upstream)
		case upstream != leader:
			d.say("following %s (replicatefrom) under leader %s", upstream, leader)
		default:
			d.say("following new leader %s", leader)
		}
		return
	}
	if leader == "" {
		d.say("no leader, running as a replica without upstream")
		return
	}
	if upstream == "" {
		d.say("no action. I am (%s), a secondary replaying archived WAL (nostream) under leader %s", d.in.Name, leader)
		return
	}
	if upstream != leader {
		d.say("no action. I am (%s), a secondary, and following %s (replicatefrom) under leader %s", d.in.Name, upstream, leader)
		return
	}
	d.say("no action. I am (%s), a secondary, and following a leader (%s)", d.in.Name, leader)
}

// upstream is the member a replica streams from: its replicatefrom member
// when that one runs as a replica, else the leader (cascading
// replication, as Patroni does it); "" for a member tagged nostream,
// which replays only the WAL its restore_command finds (no
// primary_conninfo, and so no slot on any upstream).
func (d *decider) upstream() string {
	if d.in.Config.Tags.NoStream {
		return ""
	}
	return d.upstreamOf(d.c.LeaderName(), d.in.Name, d.in.Config.Tags.ReplicateFrom)
}

// upstreamOf is the member that the member name, tagged replicatefrom rf,
// streams from under leader: rf when that one runs as a replica, else the
// leader.
func (d *decider) upstreamOf(leader, name, rf string) string {
	if leader == "" || rf == "" || rf == name || rf == leader {
		return leader
	}
	if m := d.c.Member(rf); m != nil && m.IsRunning() && !cluster.IsPrimaryRole(m.Role) {
		return rf
	}
	return leader
}

// divergedWhileRunning: a running replica that is not streaming, on an
// older timeline than the leader's, replayed past the leader's switch point.
func (d *decider) divergedWhileRunning() bool {
	if !d.pg.InRecovery || d.pg.Streaming {
		return false
	}
	if d.historyDiverges() {
		return true
	}
	leaderTL := d.leaderTimeline()
	if leaderTL <= d.pg.Timeline || d.pg.Timeline == 0 {
		return false
	}
	switchLSN, ok := d.switchPoint(d.pg.Timeline)
	return ok && d.pg.LSN > switchLSN
}

// historyDiverges: the local timeline history and the cluster's
// (/history) disagree on where a timeline both know was left: this server
// branched off elsewhere than the leader's line did (two promotions from
// one timeline), whatever the timeline numbers say.
func (d *decider) historyDiverges() bool {
	for _, l := range d.pg.History {
		if sp, ok := d.switchPoint(l.Timeline); ok && sp != l.LSN {
			return true
		}
	}
	return false
}

func (d *decider) leaderTimeline() int {
	if l := d.c.Leader; l != nil && l.Member.Timeline > 0 {
		return l.Member.Timeline
	}
	return d.c.Timeline()
}

// switchPoint finds where the cluster left the timeline, from /history.
func (d *decider) switchPoint(tl int) (int64, bool) {
	for _, l := range d.c.History {
		if l.Timeline == tl {
			return l.LSN, true
		}
	}
	return 0, false
}

// wasPrimary tells from pg_control whether the stopped PostgreSQL ran as a
// primary.
func (d *decider) wasPrimary() bool {
	if d.pg.BackupLabel {
		// A fresh base backup or a rewound directory carries the
		// source's "in production" state.
		return false
	}
	switch d.pg.ControlState {
	case ControlInProduction, ControlShutDown, ControlShuttingDown, ControlInCrashRecovery:
		return true
	}
	return false
}

// recover handles an initialized data directory with PostgreSQL down.
func (d *decider) recover() {
	cfg := d.in.Config
	c := d.c
	if cfg.Paused {
		if d.held() {
			d.add(Action{Kind: ActReleaseLeader})
		}
		d.say("postgres is not running and the cluster is paused: not starting it")
		return
	}
	if !d.held() {
		d.mem.HandOff = false
	}
	if d.held() && d.mem.HandOff {
		d.add(Action{Kind: ActReleaseLeader})
		d.mem.HandOff, d.mem.Demoted = false, true
		d.say("demoted for a switchover: releasing the leader key")
		return
	}
	if d.held() {
		if !d.wasPrimary() {
			d.add(Action{Kind: ActRenewLeader}, Action{Kind: ActStart})
			d.say("starting read-only with the leader key held; promote follows")
			return
		}
		if d.mem.CrashedAt.IsZero() {
			d.mem.CrashedAt = d.in.Now
		}
		switch {
		case cfg.PrimaryStartTimeout == 0 && d.failoverPossible():
			d.add(Action{Kind: ActReleaseLeader})
			// Patroni's demote('immediate'): the published role becomes
			// "demoted", so that the replicas do not take this stopped
			// member for a running primary and refuse to race.
			d.mem.CrashedAt, d.mem.Demoted = timeZero, true
			d.say("postgres is down and primary_start_timeout is 0: releasing the leader key for a failover")
		case d.in.Now.Sub(d.mem.CrashedAt) > cfg.PrimaryStartTimeout && d.failoverPossible():
			d.add(Action{Kind: ActReleaseLeader})
			d.mem.CrashedAt, d.mem.Demoted = timeZero, true
			d.say("postgres did not start within primary_start_timeout %s: releasing the leader key", cfg.PrimaryStartTimeout)
		case d.watchdogBlocks() != "":
			d.add(Action{Kind: ActReleaseLeader})
			d.mem.CrashedAt, d.mem.Demoted = timeZero, true
			d.say("postgres is down and will not start as a primary: %s; releasing the leader key", d.watchdogBlocks())
		default:
			d.mem.Demoted = false
			d.add(Action{Kind: ActRenewLeader})
			d.add(d.arm()...)
			d.add(Action{Kind: ActStart, AsPrimary: true})
			d.say("starting primary after failure")
		}
		return
	}
	leader := c.LeaderName()
	if leader == "" {
		// Like Patroni after its own restart: start read-only and race
		// with the others on the positions they report.
		d.add(Action{Kind: ActStart})
		d.say("starting as a replica without a leader")
		return
	}
	if d.wasPrimary() && !d.leaderRunsAsPrimary() {
		// A promotion in progress: the new leader's member key may still
		// show the timeline it is leaving, and comparing with it would
		// start this former primary as its standby without a rewind.
		d.say("waiting for leader %s to run as primary before checking whether I diverged from it", leader)
		return
	}
	if why := d.divergedOnSameTimeline(); why != "" {
		// pg_rewind finds nothing to do between servers on one timeline;
		// only a new copy of the leader's data can follow it.
		if cfg.RemoveDataDirectoryOnDivergedTimelines {
			d.add(Action{Kind: ActRemoveDataDir})
			d.say("%s: the data diverged; removing the data directory to clone it again", why)
		} else {
			d.say("%s: the data diverged and remove_data_directory_on_diverged_timelines is off: staying down", why)
		}
		return
	}
	need, known := d.needsRewind()
	if d.mem.Rewound {
		need, known = false, true
	}
	switch {
	case !known:
		d.say("waiting for leader %s to publish the history of its timeline", leader)
	case need && d.mem.RewindFailed && cfg.RemoveDataDirectoryOnRewindFailure:
		d.add(Action{Kind: ActRemoveDataDir})
		d.mem.RewindFailed = false
		d.say("pg_rewind failed: removing the data directory to clone it again")
	case need && d.mem.RewindFailed:
		d.say("pg_rewind failed and remove_data_directory_on_rewind_failure is off: staying down")
	case need && cfg.UsePgRewind:
		d.add(Action{Kind: ActRewind, Member: leader})
		d.say("running pg_rewind from %s", leader)
	case need && cfg.RemoveDataDirectoryOnDivergedTimelines:
		d.add(Action{Kind: ActRemoveDataDir})
		d.say("diverged from leader %s and use_pg_rewind is off: removing the data directory", leader)
	case need:
		d.say("diverged from leader %s; use_pg_rewind and remove_data_directory_on_diverged_timelines are off: staying down", leader)
	default:
		d.mem.Demoted = false
		d.mem.Rewound = false
		upstream := d.upstream()
		d.add(Action{Kind: ActStart, Member: upstream})
		if upstream == "" {
			d.say("starting as a secondary replaying archived WAL (nostream) under leader %s", leader)
		} else {
			d.say("starting as a secondary following %s", upstream)
		}
	}
}

// divergedOnSameTimeline says why this member's data cannot follow the
// leader although the timeline numbers and switch points agree: another
// member promoted onto the timeline number its data ran on (a primary that
// crashed before publishing /history, a member that promoted from the
// timeline before without seeing it). Either the leader runs on that
// timeline and did not start the data's, or /history names another member
// as the one that started it. "" when it can follow.
func (d *decider) divergedOnSameTimeline() string {
	tl, of := d.mem.DataTimeline, d.mem.DataTimelineOf
	if !d.pg.Running && d.wasPrimary() {
		tl, of = d.pg.ControlTimeline, d.in.Name
	}
	leader := d.c.LeaderName()
	if d.mem.Rewound || tl <= 0 || of == "" || !d.leaderRunsAsPrimary() || strings.EqualFold(leader, d.in.Name) || strings.EqualFold(leader, of) {
		return ""
	}
	why := fmt.Sprintf("my data ran on timeline %d as %s started it", tl, of)
	if strings.EqualFold(of, d.in.Name) {
		why = fmt.Sprintf("I ran as a primary on timeline %d", tl)
	}
	if d.leaderTimeline() == tl {
		return fmt.Sprintf("%s, and leader %s promoted onto timeline %d too", why, leader, tl)
	}
	for _, l := range d.c.History {
		if l.Timeline == tl-1 && l.NewLeader != "" && !strings.EqualFold(l.NewLeader, of) {
			return fmt.Sprintf("%s, and /history says %s promoted onto it", why, l.NewLeader)
		}
	}
	return ""
}

// formerTimeline is the timeline this member's data ran on before its
// promotion, and who started it: the memory's data timeline while it still
// names the one before (this cycle's end moves it to FormerTimeline).
func (d *decider) formerTimeline() (int, string) {
	if m := d.in.Memory; m.DataTimeline > 0 && m.DataTimeline < d.pg.Timeline {
		return m.DataTimeline, m.DataTimelineOf
	}
	return d.in.Memory.FormerTimeline, d.in.Memory.FormerTimelineOf
}

// leaderRunsAsPrimary: the leader's member key shows a running primary,
// so its timeline there is the one it writes on.
func (d *decider) leaderRunsAsPrimary() bool {
	l := d.c.Leader
	return l != nil && l.Member.IsRunning() && cluster.IsPrimaryRole(l.Member.Role)
}

// needsRewind decides whether the stopped local data diverged from the
// leader's timeline (see postgres.NeedsRewind for the rules); known is
// false while the leader's history does not yet cover the local timeline.
func (d *decider) needsRewind() (need, known bool) {
	mine := d.pg.ControlTimeline
	theirs := d.leaderTimeline()
	if mine != 0 && d.historyUnknown() {
		return false, false
	}
	if d.historyDiverges() {
		return true, true
	}
	if mine == 0 || theirs == 0 {
		return false, true
	}
	if mine > theirs {
		return true, true
	}
	if mine == theirs {
		return false, true
	}
	switchLSN, ok := d.switchPoint(mine)
	if !ok {
		for _, l := range d.c.History {
			if l.Timeline > mine {
				// The line was trimmed (max_timelines_history): let
				// pg_rewind judge a former primary.
				return d.wasPrimary(), true
			}
		}
		return false, false
	}
	if d.wasPrimary() {
		return !(d.pg.ControlState == ControlShutDown && d.pg.CheckpointLSN < switchLSN), true
	}
	return max(d.pg.CheckpointLSN, d.pg.MinRecoveryEnd) > switchLSN, true
}

// failoverPossible: another member could take over (a running replica
// that may fail over).
func (d *decider) failoverPossible() bool {
	for _, m := range d.c.Members {
		if m.Name != d.in.Name && m.IsRunning() && !cluster.IsPrimaryRole(m.Role) && m.Tags.CanFailover() {
			return true
		}
	}
	return false
}
