package agent

import (
	"github.com/custos-ha/custos/core/api"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/controller"
)

// snapshotOf turns the controller's published state into what the REST
// API serves.
func snapshotOf(st *controller.State, scope, name string, problems []string) *api.Snapshot {
	obs := st.Observation
	m := st.Member
	dyn := st.Dynamic
	s := api.Status{
		State:         m.State,
		Role:          m.Role,
		ServerVersion: obs.ServerVersion,
		Timeline:      m.Timeline,
		Pause:         m.Pause,
		Tags:          m.Tags,
		Patroni:       api.Agent{Version: WireVersion, Scope: scope, Name: name},
		Custos:        &api.Extension{Version: Version, Reason: st.Reason, Problems: problems},
	}
	if !st.DCSLastSeen.IsZero() {
		s.DCSLastSeen = st.DCSLastSeen.Unix()
	}
	if !obs.PostmasterStart.IsZero() && obs.HA.Running {
		s.PostmasterStartTime = api.NewTimestamp(obs.PostmasterStart)
	}
	if obs.HA.SysID != "" {
		s.DatabaseSystemIdentifier = obs.HA.SysID
	}
	if obs.HA.Running && obs.HA.Ready {
		if obs.HA.InRecovery {
			x := &api.XLog{ReceivedLocation: obs.ReceiveLSN, ReplayedLocation: obs.ReplayLSN, Paused: obs.ReplayPaused}
			if obs.ReplayedAt != nil {
				x.ReplayedTimestamp = api.NewTimestamp(*obs.ReplayedAt)
			}
			s.XLog = x
			s.ReplicationState = obs.ReplicationState
		} else {
			lsn := obs.HA.LSN
			s.XLog = &api.XLog{Location: &lsn}
		}
	}
	s.Replication = obs.Replication
	if obs.PendingRestart {
		s.PendingRestart = true
		s.PendingRestartReason = obs.PendingReasons
	}
	if st.Cluster != nil {
		s.ClusterUnlocked = !st.Cluster.IsLocked()
		if st.Cluster.IsSync(name) {
			if dyn.SynchronousMode == config.SyncQuorum {
				s.QuorumStandby = true
			} else {
				s.SyncStandby = true
			}
		}
	}
	if st.Error != "" {
		s.Custos.Problems = append(s.Custos.Problems, st.Error)
	}
	s.FailsafeModeIsActive = st.FailsafeActive
	snap := &api.Snapshot{
		Status:       s,
		Cluster:      st.Cluster,
		DCSReachable: st.DCSReachable,
		LeaderExpiry: st.LeaderExpiry,
		LastLoop:     st.At,
		Dynamic:      dyn,
		LatestEndLSN: obs.LatestEndLSN,
	}
	if dyn.FailsafeMode && st.Cluster != nil {
		snap.Failsafe = st.Cluster.Failsafe
	}
	return snap
}
