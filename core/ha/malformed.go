package ha

import (
	"maps"
	"slices"
	"strings"

	"github.com/custos-ha/custos/core/cluster"
)

// DCS values that do not parse (cluster.Cluster.Malformed) are read the
// safe way, one rule for every key: what the value could have allowed is
// refused, what it could have forbidden is kept (docs/dcs-values.md).
//
//   - initialize: no system identifier is known, so there is no mismatch to
//     act on; the leader writes its own identifier back (as Patroni does).
//   - leader: held by an unknown member (cluster.FromDCS): nobody races, a
//     running primary is not its holder and stops, nobody follows it.
//   - members/<name>: the member is not running (no failover, clone or
//     synchronous candidate), and a switchover to it is refused.
//   - sync, in synchronous mode (on or quorum): nobody is a synchronous
//     standby, so nobody is promoted through the leader race or a
//     switchover; the leader writes /sync again from the standbys its
//     PostgreSQL reports synchronous.
//   - failover: nothing requested.
//   - failsafe, in failsafe mode: it lists nobody (a replica does not race;
//     a primary cut from the DCS finds nobody to keep it up, and the leader
//     writes it again).
//   - status: the last leader position is unknown: a replica in the leader
//     race takes the highest position a member key with a primary role
//     shows, and without one does not race (maximum_lag_on_failover cannot
//     be checked).
//   - history: the cluster's timeline history is unknown: a stopped member
//     that cannot compare its timeline with the leader's waits, with
//     check_timeline nobody races, and the leader writes it again.

// malformedNote names the malformed keys for the reason, "" when none.
func (d *decider) malformedNote() string {
	if d.c == nil || len(d.c.Malformed) == 0 {
		return ""
	}
	keys := slices.Sorted(maps.Keys(d.c.Malformed))
	for i, k := range keys {
		keys[i] = "/" + k
	}
	return "malformed in the DCS, read the safe way: " + strings.Join(keys, ", ")
}

// syncUnknown: synchronous mode is on (or quorum) and /sync is malformed,
// so which standbys hold every acknowledged commit is unknown.
func (d *decider) syncUnknown() bool {
	m := d.in.Config.SyncMode
	return (m == SyncOn || m == SyncQuorum) && d.c.IsMalformed(cluster.KeySync)
}

// malformedRace refuses the leader race when a malformed value leaves a
// rule of it unchecked; checkLag tells whether maximum_lag_on_failover
// applies (a manual failover skips it).
func (d *decider) malformedRace(checkLag bool) (bool, string) {
	cfg := d.in.Config
	switch {
	case d.syncUnknown():
		return false, "/sync is malformed: nobody is known to be a synchronous standby"
	case cfg.FailsafeMode && d.c.IsMalformed(cluster.KeyFailsafe):
		// A primary cut from the DCS may still run on the members its
		// last good /failsafe listed; this member cannot tell whether it
		// is one of those that acknowledged it.
		return false, "failsafe mode is on and /failsafe is malformed: not known to list me"
	case checkLag && d.c.IsMalformed(cluster.KeyStatus) && d.optime() == 0:
		return false, "/status is malformed and no member key shows the leader's position: my lag is unknown"
	case cfg.CheckTimeline && d.c.IsMalformed(cluster.KeyHistory):
		return false, "check_timeline is on and /history is malformed: the cluster's timeline is unknown"
	}
	return true, ""
}

// optime is the last known position of the leader: /status's optime, or,
// when /status is malformed, the highest position a member key with a
// primary role shows (a loop old at most, as /status is); 0 when unknown.
func (d *decider) optime() int64 {
	if !d.c.IsMalformed(cluster.KeyStatus) {
		return d.c.Status.Optime
	}
	var best int64
	for _, m := range d.c.Members {
		if cluster.IsPrimaryRole(m.Role) && m.LSN() > best {
			best = m.LSN()
		}
	}
	return best
}

// historyUnknown: /history is malformed while the leader's member key does
// not show its timeline either, so a stopped member cannot tell whether it
// diverged.
func (d *decider) historyUnknown() bool {
	return d.c.IsMalformed(cluster.KeyHistory) && d.leaderTimeline() == 0
}

// sysidMismatch handles a data directory whose system identifier differs
// from /initialize's. Patroni exits; custos does not start PostgreSQL, and
// releases the leader key only when PostgreSQL does not run as a primary:
// a running primary keeps its key (renewed, so it is not left to expire)
// and runs on, reported in the reason, because a key released under a
// running primary lets another member take it while this one still takes
// writes, and /initialize is a value any client can overwrite.
func (d *decider) sysidMismatch(sysid string) {
	switch {
	case d.held() && d.pg.Primary() && d.watchdogBlocks() != "" && !d.in.Watchdog.Armed:
		d.add(Action{Kind: ActStop, Mode: StopImmediate}, Action{Kind: ActReleaseLeader})
		d.mem.Demoted = true
		d.say("system identifier %s of the data directory differs from the cluster's %s, and %s: demoting self", d.pg.SysID, sysid, d.watchdogBlocks())
	case d.held() && d.pg.Primary():
		d.add(Action{Kind: ActRenewLeader})
		d.add(d.arm()...)
		d.say("system identifier %s of the data directory differs from the cluster's %s: keeping the leader key of this running primary; check /initialize", d.pg.SysID, sysid)
	case d.held():
		d.add(Action{Kind: ActReleaseLeader})
		d.say("system identifier %s of the data directory differs from the cluster's %s: not starting", d.pg.SysID, sysid)
	default:
		d.say("system identifier %s of the data directory differs from the cluster's %s: not starting", d.pg.SysID, sysid)
	}
}

// rewriteMalformedSync is the leader's answer to a malformed /sync in
// synchronous mode: /sync again, with the standbys its PostgreSQL reports
// synchronous now (those hold every commit acknowledged since they became
// synchronous, as when the normal cycle adds them), and in quorum mode a
// quorum that lets none of them win a race until the normal cycle has seen
// every one catch up. Writing an empty /sync instead would forget who holds
// the acknowledged commits. The write is a compare-and-set on the version
// read.
func (d *decider) rewriteMalformedSync() {
	var members []string
	eligible := d.syncStandbys()
	for _, r := range d.pg.Replication {
		if (r.SyncState == "sync" || r.SyncState == "quorum") && containsFold(eligible, r.ApplicationName) && !containsFold(members, r.ApplicationName) {
			members = append(members, memberName(eligible, r.ApplicationName))
		}
	}
	a := Action{Kind: ActWriteSync, Members: members}
	if d.in.Config.SyncMode == SyncQuorum {
		a.Quorum = len(members)
	}
	d.add(a)
	d.note = "/sync is malformed: writing it again with synchronous standbys " + joinOrNone(members)
}

// leaderLabel names the leader in a reason: the holder of a leader key
// whose value is malformed has no name.
func (d *decider) leaderLabel() string {
	if d.c.IsMalformed(cluster.KeyLeader) {
		return "(unknown: malformed leader key)"
	}
	return d.c.LeaderName()
}
