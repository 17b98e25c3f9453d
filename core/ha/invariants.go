package ha

import (
	"errors"
	"fmt"
	"strings"

	"github.com/custos-ha/custos/core/cluster"
)

// CheckInvariants returns the safety rules a decision breaks, nil when it
// keeps them all. Tests check it on every scenario and on random inputs;
// the controller may check it too before executing.
func CheckInvariants(in Input, d Decision) error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	held := in.Cluster != nil && in.Cluster.LeaderName() == in.Name
	otherLeader := in.Cluster != nil && in.Cluster.Leader != nil && !held

	lockSecured := false // a leader-key write precedes this point
	promotes := 0
	stops := false
	// A watchdog that can be armed must be before a promotion or a start
	// as primary; one that is required must be armed for them at all.
	wd := in.Watchdog
	needArmed := (wd.Required || wd.Available) && !in.Config.Paused
	armed := wd.Armed
	for i, a := range d.Actions {
		switch a.Kind {
		case ActArmWatchdog:
			armed = true
		case ActPromote, ActStart, ActRestart:
			if (a.Kind == ActPromote || a.AsPrimary) && needArmed && !armed {
				fail("action %d: %s without the watchdog armed", i, a.Kind)
			}
		}
		switch a.Kind {
		case ActAcquireLeader:
			if wd.Required && !wd.Available && !in.Config.Paused {
				fail("action %d: acquire_leader with the required watchdog not usable", i)
			}
			if in.Cluster == nil {
				fail("action %d: %s while the DCS is not accessible", i, a.Kind)
			}
			if otherLeader {
				fail("action %d: acquire_leader while %s holds the key", i, in.Cluster.LeaderName())
			}
			lockSecured = true
		case ActRenewLeader:
			if !held {
				fail("action %d: renew_leader without holding the key", i)
			}
			lockSecured = true
		case ActPromote:
			promotes++
			if !lockSecured {
				fail("action %d: promote without holding the leader key", i)
			}
		case ActStart:
			if a.AsPrimary && !lockSecured {
				fail("action %d: start as primary without holding the leader key", i)
			}
			if stops {
				fail("action %d: start after stop in the same decision", i)
			}
		case ActStop:
			stops = true
		case ActRestart:
			if a.AsPrimary && !lockSecured {
				fail("action %d: restart as primary without holding the leader key", i)
			}
		case ActReinitialize:
			if held {
				fail("action %d: reinitialize of the leader", i)
			}
		case ActDemote:
			if !lockSecured {
				fail("action %d: demote for a switchover without holding the leader key", i)
			}
			stops = true
		case ActRemoveDataDir:
			if in.Postgres.Running && !stops {
				fail("action %d: remove_data_dir while postgres runs", i)
			}
		case ActDisarmWatchdog:
			// A leader whose PostgreSQL may run (or be about to run) as a
			// primary keeps it armed unless it stops or lets go.
			busy := in.Busy != nil && (in.Busy.Kind == ActStart || in.Busy.Kind == ActPromote || in.Busy.Kind == ActRestart)
			if held && wd.Available && !in.Config.Paused && !stops && !releases(d.Actions) && (in.Postgres.MayBePrimary() || busy) {
				fail("action %d: disarm_watchdog while the leader's postgres may run as a primary", i)
			}
		case ActReleaseLeader:
			// Another member may take the key at once. (An empty or
			// unusable data directory under a running postmaster is a
			// world of its own, left out.)
			if in.Postgres.Primary() && in.Postgres.DataDir == DataDirInitialized && !stops {
				fail("action %d: release_leader while postgres runs as a primary", i)
			}
		}
	}
	if promotes > 0 && !held && in.Cluster != nil && (in.Config.SyncMode == SyncOn || in.Config.SyncMode == SyncQuorum) && in.Cluster.IsMalformed(cluster.KeySync) {
		fail("promote of %s in synchronous mode while /sync is malformed", in.Name)
	}
	if promotes > 0 && !held && in.Cluster != nil && in.Config.SyncMode == SyncOn {
		if s := in.Cluster.Sync; s != nil && s.Leader != "" && !s.Matches(in.Name) && !strings.EqualFold(s.Leader, in.Name) {
			fail("promote of %s, which /sync does not list, in synchronous mode", in.Name)
		}
	}
	if promotes > 0 && !held && in.Cluster != nil && in.Config.SyncMode == SyncQuorum {
		if s := in.Cluster.Sync; s != nil && s.Leader != "" && !s.Matches(in.Name) && !strings.EqualFold(s.Leader, in.Name) {
			fail("promote of %s, which is no quorum voter", in.Name)
		}
	}
	if promotes > 1 {
		fail("%d promotes in one decision", promotes)
	}
	if lapsed := !ActBy(in.LeaderExpiry, in.Config.TTL).IsZero() && !in.Now.Before(ActBy(in.LeaderExpiry, in.Config.TTL)); (lapsed || in.RenewFailed != "") &&
		in.Postgres.MayBePrimary() && !in.Config.Paused && !stops && !(d.Waiting && d.Gather.Failsafe && !lapsed) && !failsafeAcknowledged(in) {
		fail("postgres may run as a primary while the leader key may be gone (lease run out: %v, renewal failed: %q), and no stop", lapsed, in.RenewFailed)
	}
	if lockSecured && wd.Required && !wd.Available && !armed && in.Postgres.Primary() && !stops && !releases(d.Actions) && !in.Config.Paused {
		fail("a primary keeps the leader key without the required watchdog")
	}
	if otherLeader && in.Postgres.Primary() && !stops && !in.Config.Paused {
		fail("running primary while %s holds the leader key, and no stop", in.Cluster.LeaderName())
	}
	return errors.Join(errs...)
}

// failsafeAcknowledged: failsafe mode is on and every other member of
// /failsafe acknowledged this primary in this cycle, before its key could
// expire.
func failsafeAcknowledged(in Input) bool {
	if !in.Config.FailsafeMode || !in.FailsafeChecked || len(in.LastFailsafe) == 0 || in.KeyLost {
		return false
	}
	if by := ActBy(in.LeaderExpiry, in.Config.TTL); !by.IsZero() && !in.Now.Before(by) {
		// Acknowledged past the lease's stop margin: too late.
		return false
	}
	for name := range in.LastFailsafe {
		if name != in.Name && !in.FailsafeAcks[name] {
			return false
		}
	}
	return true
}

// releases reports whether the actions release the leader key.
func releases(actions []Action) bool {
	for _, a := range actions {
		if a.Kind == ActReleaseLeader {
			return true
		}
	}
	return false
}
