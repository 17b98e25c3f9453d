package ha

import (
	"fmt"
	"strings"
	"time"

	"github.com/custos-ha/custos/core/cluster"
)

// staleScheduleFactor: a scheduled switchover more than 1.5 loop_wait in
// the past is stale and cleared, not executed (Patroni's rule).
const staleScheduleFactor = 1.5

// Healthy reports whether a peer could take over: it answered, runs, may
// fail over and has a working watchdog.
func (p Peer) Healthy() bool {
	return p.Reachable && p.Running && !p.NoFailover && !p.WatchdogFailed
}

// FailoverPossible is Patroni's is_failover_possible: some other member
// (only candidate, when named) is healthy and not lagging more than
// maximum_lag_on_failover behind lsn. It explains a refusal.
func FailoverPossible(cfg Config, me string, lsn int64, peers []Peer, candidate string) (bool, string) {
	why := "no other member answered"
	for _, p := range peers {
		if p.Name == me || (candidate != "" && p.Name != candidate) {
			continue
		}
		switch {
		case !p.Healthy():
			why = fmt.Sprintf("%s is not healthy", p.Name)
		case lsn-p.LSN > cfg.MaximumLagOnFailover:
			why = fmt.Sprintf("%s lags %d bytes, more than maximum_lag_on_failover %d", p.Name, lsn-p.LSN, cfg.MaximumLagOnFailover)
		default:
			return true, ""
		}
	}
	if candidate != "" && why == "no other member answered" {
		why = fmt.Sprintf("candidate %s did not answer", candidate)
	}
	return false, why
}

// manualFailover runs the leader's part of a requested switchover or
// failover: a scheduled one waits until it is at most loop_wait away (and
// is cleared once stale), then the leader steps down gracefully if a
// member can take over; a request naming another leader, or none the
// leader can carry out, is cleared. It returns true when it decided the
// cycle.
func (d *decider) manualFailover(f *cluster.Failover) bool {
	cfg := d.in.Config
	if d.mem.HandOffFailed != "" {
		d.add(Action{Kind: ActClearFailover})
		d.say("switchover failed (%s): clearing /failover", d.mem.HandOffFailed)
		d.mem.HandOffFailed = ""
		return true
	}
	if f.ScheduledAt != nil {
		wait := f.ScheduledAt.Sub(d.in.Now)
		switch {
		case cfg.Paused:
			return false
		case wait > 0:
			// Not before its time: Patroni sleeps in the cycle until
			// then; the cycle at or after it acts, at most loop_wait late.
			return false
		case -wait > time.Duration(staleScheduleFactor*float64(cfg.LoopWait)):
			d.add(Action{Kind: ActClearFailover})
			d.say("found a stale switchover scheduled at %s: clearing it", cluster.FormatTime(*f.ScheduledAt))
			return true
		}
	}
	switch {
	case f.Candidate == d.in.Name:
		d.add(Action{Kind: ActClearFailover})
		d.say("cleared /failover: I, the candidate, am the leader")
		return true
	case f.Leader != "" && f.Leader != d.in.Name:
		d.add(Action{Kind: ActClearFailover})
		d.say("switchover requested from %s, but I am the leader: clearing it", f.Leader)
		return true
	case f.Candidate != "" && d.c.Member(f.Candidate) == nil:
		d.add(Action{Kind: ActClearFailover})
		d.say("switchover candidate %s has no member key: clearing /failover", f.Candidate)
		return true
	case f.Candidate != "" && d.c.IsMalformed(cluster.MemberKey(f.Candidate)):
		d.add(Action{Kind: ActClearFailover})
		d.say("switchover candidate %s has a malformed member key: clearing /failover", f.Candidate)
		return true
	case f.Candidate != "" && d.syncUnknown():
		d.add(Action{Kind: ActClearFailover})
		d.say("switchover candidate %s is not known to be a synchronous standby (/sync is malformed): clearing /failover", f.Candidate)
		return true
	case f.Candidate != "" && d.syncActive() && !d.syncEligible(f.Candidate):
		d.add(Action{Kind: ActClearFailover})
		d.say("switchover candidate %s is not a synchronous standby: clearing /failover", f.Candidate)
		return true
	case f.Candidate == "" && cfg.Paused:
		d.say("paused: a failover without a candidate is ignored")
		return false
	}
	if !d.in.PeersFetched {
		d.gather.Peers, d.waiting = true, true
		d.say("switchover requested: asking the peers")
		return true
	}
	// Peers report positions up to a loop old, as /status does: compare
	// like with like, as Patroni compares with the cluster's last LSN.
	lsn := d.pg.LSN
	if opt := d.c.Status.Optime; opt > 0 && opt < lsn {
		lsn = opt
	}
	// Only a member that would take the key counts (in synchronous mode
	// only one listed in /sync: the others may lack committed
	// transactions); else the leader would step down for nobody.
	peers := d.takeOverPeers(d.in.Peers)
	if ok, why := FailoverPossible(cfg, d.in.Name, lsn, peers, f.Candidate); !ok {
		d.add(Action{Kind: ActClearFailover})
		d.say("switchover impossible (%s): clearing /failover", why)
		return true
	}
	d.add(Action{Kind: ActDemote, Member: f.Candidate})
	if f.Candidate != "" {
		d.say("switchover to %s: demoting myself", f.Candidate)
	} else {
		d.say("switchover: demoting myself")
	}
	return true
}

// manualFailoverNoLeader is Patroni's manual_failover_process_no_leader:
// whether I should take the free leader key while /failover asks for a
// switchover or failover. ok=false with decided=false means "no opinion,
// run the normal race".
func (d *decider) manualFailoverNoLeader(f *cluster.Failover) (ok bool, why string) {
	cfg := d.in.Config
	switch why := d.watchdogBlocks(); {
	case why != "":
		return false, why
	case d.syncUnknown():
		return false, "/sync is malformed: nobody is known to be a synchronous standby"
	case d.syncActive() && !d.syncEligible(d.in.Name):
		return false, "I am not a synchronous standby"
	case !d.quorumVoter():
		return false, "I am not a quorum voter"
	case d.failsafeExcludes(d.in.Name):
		return false, "failsafe mode is on and /failsafe does not list me"
	case d.behindTimeline(d.pg.Timeline):
		return false, fmt.Sprintf("my timeline %d is behind the cluster's %d", d.pg.Timeline, d.c.Timeline())
	case f.Candidate == d.in.Name:
		return d.quorumRace(d.in.Peers)
	case cfg.Paused:
		return false, "paused: only the failover candidate may take over"
	}
	for _, p := range d.in.Peers {
		// A candidate that may not be promoted (not in /sync, no quorum
		// voter: /failover written past the API, or /sync changed since)
		// is passed over as an unhealthy one is; waiting for it would
		// leave the cluster without a leader for good.
		// (A quorum voter ahead of the candidate does not wait for it:
		// the candidate would not win the quorum race.)
		ahead := cfg.SyncMode == SyncQuorum && d.quorumVoter() && d.pg.LSN > p.LSN
		if p.Name == f.Candidate && p.Healthy() && d.mayTakeOver(p) && !ahead {
			return false, fmt.Sprintf("%s is the failover candidate", f.Candidate)
		}
	}
	if f.Leader == d.in.Name {
		// Only a member that would take over counts: else the former
		// leader, maybe the one left that may, would wait for the others
		// while they wait for it.
		others := d.takeOverPeers(d.peersExcept(f.Leader))
		if possible, _ := FailoverPossible(cfg, d.in.Name, d.pg.LSN, others, ""); possible {
			return false, "I was the leader being switched over, and another member can take over"
		}
		return true, ""
	}
	return d.healthiestAmong(d.peersExcept(f.Leader), false)
}

// mayTakeOver: nothing the member checks of itself before the leader
// race (healthiestAmong) keeps it out: synchronous mode lets it be
// promoted (it is in /sync, or a quorum voter that can win the quorum), failsafe mode lists it,
// and it is not behind the cluster's timeline.
func (d *decider) mayTakeOver(p Peer) bool {
	if d.syncActive() && !d.syncEligible(p.Name) || !d.isQuorumVoter(p.Name) {
		return false
	}
	if s := d.c.Sync; d.in.Config.SyncMode == SyncQuorum && s != nil && s.Leader != "" && len(s.SyncStandby) > 0 &&
		!strings.EqualFold(s.Leader, p.Name) {
		// A voter needs the votes of q others of the /sync leader and its
		// voters (quorumRace; the leader votes only when not ahead): with
		// fewer of them answering only the /sync leader can win.
		votes := func(name string, lsn int64) bool {
			if strings.EqualFold(name, p.Name) {
				return false
			}
			if strings.EqualFold(name, s.Leader) {
				return lsn <= p.LSN
			}
			return s.Matches(name)
		}
		answering := 0
		for _, o := range d.in.Peers {
			if o.Reachable && votes(o.Name, o.LSN) {
				answering++
			}
		}
		if d.pg.Running && d.pg.Ready && votes(d.in.Name, d.pg.LSN) {
			answering++ // this member answers too
		}
		if s.Quorum > len(s.SyncStandby) || answering < s.Quorum {
			return false
		}
	}
	return !d.failsafeExcludes(p.Name) && !d.behindTimeline(p.Timeline)
}

// failsafeExcludes: failsafe mode is on and /failsafe, naming members,
// does not name this one (the primary it keeps did not ask it).
func (d *decider) failsafeExcludes(name string) bool {
	f := d.c.Failsafe
	return d.in.Config.FailsafeMode && len(f) > 0 && f[name] == ""
}

// behindTimeline: check_timeline is on and tl is older than the cluster's
// (/history).
func (d *decider) behindTimeline(tl int) bool {
	cur := d.c.Timeline()
	return d.in.Config.CheckTimeline && cur > 0 && tl < cur
}

// takeOverPeers keeps the peers that may take over (mayTakeOver).
func (d *decider) takeOverPeers(peers []Peer) []Peer {
	out := make([]Peer, 0, len(peers))
	for _, p := range peers {
		if d.mayTakeOver(p) {
			out = append(out, p)
		}
	}
	return out
}

// peersExcept drops a member from the peers.
func (d *decider) peersExcept(name string) []Peer {
	out := make([]Peer, 0, len(d.in.Peers))
	for _, p := range d.in.Peers {
		if p.Name != name {
			out = append(out, p)
		}
	}
	return out
}
