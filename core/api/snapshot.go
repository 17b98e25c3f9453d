package api

import (
	"sync/atomic"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
)

// Source gives the server the agent's current state.
type Source interface {
	// Snapshot returns the state published after the last HA cycle, or nil
	// before the first one. It must not block: it is called on every
	// request.
	Snapshot() *Snapshot
}

// Snapshot is what the API knows of the agent: an immutable value published
// by the controller after each HA cycle. Once published it must not be
// modified (the server reads it from many goroutines without locks and
// caches its encoded status document per Snapshot pointer); publish a new
// one instead.
type Snapshot struct {
	// Status is the status document, served verbatim by /patroni and the
	// health checks.
	Status Status
	// Cluster is the last DCS view; nil if the DCS was never read. /cluster,
	// /history and /config are answered from it.
	Cluster *cluster.Cluster
	// DCSReachable: the last DCS read succeeded (or failed for less than
	// retry_timeout). Patroni's checks that need the DCS (/sync, /async,
	// /quorum, the read-only variants) fail while it is false.
	DCSReachable bool
	// LeaderExpiry is when the leader key this member holds expires: the
	// time of its last successful acquire or renewal plus ttl. Zero when it
	// does not hold the key. The member is leader while now is before it
	// (Patroni's ha.is_leader), even while the DCS is unreachable.
	LeaderExpiry time.Time
	// LastLoop is when the last HA cycle ended (for /liveness).
	LastLoop time.Time
	// Dynamic is the dynamic configuration the agent runs with (ttl,
	// loop_wait, maximum_lag_on_failover, standby_cluster,
	// synchronous_mode, failsafe_mode...): /config as the HA loop read it.
	Dynamic config.Dynamic
	// LatestEndLSN is the walreceiver's latest_end_lsn on a replica (the
	// last position the primary reported), 0 when unknown. Health checks
	// take the leader's position as the larger of it and /status optime.
	LatestEndLSN int64
	// Failsafe is the last /failsafe value seen, kept while the DCS is
	// unreachable; nil when failsafe mode is off. GET /failsafe answers 502
	// when it is nil.
	Failsafe cluster.Failsafe
}

// Latest is a Source holding the newest Snapshot behind an atomic pointer:
// the controller calls Publish after each cycle, requests read without
// locks. The zero value is ready to use and holds no snapshot.
type Latest struct {
	p atomic.Pointer[Snapshot]
}

// Publish makes s the current snapshot. s must not be modified afterwards.
func (l *Latest) Publish(s *Snapshot) { l.p.Store(s) }

// Snapshot implements Source.
func (l *Latest) Snapshot() *Snapshot { return l.p.Load() }

// leaderOK is Patroni's leader_ok: this member holds the leader key.
func (s *Snapshot) leaderOK(now time.Time) bool {
	return !s.LeaderExpiry.IsZero() && now.Before(s.LeaderExpiry)
}

// view is the DCS view when the DCS is reachable, else nil (Patroni's
// dcs.cluster, which is None once the cached view is no longer valid).
func (s *Snapshot) view() *cluster.Cluster {
	if !s.DCSReachable {
		return nil
	}
	return s.Cluster
}

// leaderOptime is the leader's WAL position as this member knows it:
// max(/status optime, walreceiver latest_end_lsn).
func (s *Snapshot) leaderOptime() int64 {
	var optime int64
	if c := s.view(); c != nil {
		optime = c.Status.Optime
	}
	return max(optime, s.LatestEndLSN)
}
