package ha

import (
	"maps"
	"strings"
	"time"

	"github.com/custos-ha/custos/core/cluster"
)

// history takes in what happened to PostgreSQL since the last cycle for
// the member's published state: a postmaster that exited unasked is a
// crash until the next start; a failed start is published as such until
// one succeeds. A postmaster this member stopped (a demote, a restart, a
// re-initialization) did not crash.
func (d *decider) history() {
	if d.in.PostmasterExited {
		d.mem.Crashed = true
	}
	o := d.in.Outcome
	if o == nil {
		return
	}
	switch o.Kind {
	case ActDemote, ActRestart, ActReinitialize:
		d.mem.Crashed = false
	case ActStart:
		d.mem.StartFailed = o.Err != ""
		if o.Err == "" {
			d.mem.Crashed = false
		}
	}
}

// settle updates the memory the decision's actions imply once they are
// chosen: a start ends the crash; a DCS that answered ends failsafe mode
// unless this decision kept the primary on its members' acknowledgement
// (the renewal failed); the role seen in this cycle.
func (d *decider) settle() {
	for _, a := range d.actions {
		if a.Kind == ActStart {
			d.mem.Crashed = false
		}
	}
	for i := range d.actions {
		if d.actions[i].Kind == ActRenewLeader {
			st := d.status()
			d.actions[i].Status = &st
		}
	}
	if d.c != nil && !d.failsafeKept {
		d.mem.FailsafeKept = timeZero
	}
	d.mem.Role = RoleName(d.pg, d.mem)
	switch {
	case d.pg.DataDir != DataDirInitialized || d.pg.BackupLabel:
		d.mem.DataTimeline, d.mem.DataTimelineOf = 0, ""
		d.mem.FormerTimeline, d.mem.FormerTimelineOf = 0, ""
	case d.pg.Primary():
		if tl := d.mem.DataTimeline; tl > 0 && tl < d.pg.Timeline {
			d.mem.FormerTimeline, d.mem.FormerTimelineOf = tl, d.mem.DataTimelineOf
		}
		d.mem.DataTimeline, d.mem.DataTimelineOf = d.pg.Timeline, d.in.Name
	case !d.pg.Running && d.wasPrimary():
		d.mem.DataTimeline, d.mem.DataTimelineOf = d.pg.ControlTimeline, d.in.Name
	case d.c != nil && d.pg.InRecovery && d.pg.Streaming && d.pg.Timeline > 0 && strings.EqualFold(d.pg.Upstream, d.c.LeaderName()) &&
		d.leaderRunsAsPrimary() && d.leaderTimeline() == d.pg.Timeline:
		d.mem.DataTimeline, d.mem.DataTimelineOf = d.pg.Timeline, d.c.LeaderName()
	}
	for _, a := range d.actions {
		if a.Kind == ActRemoveDataDir || a.Kind == ActReinitialize || a.Kind == ActRewind {
			d.mem.DataTimeline, d.mem.DataTimelineOf = 0, ""
			d.mem.FormerTimeline, d.mem.FormerTimelineOf = 0, ""
		}
	}
}

// status is the /status a leader publishes with its renewal: a running
// primary its WAL position and the positions of its slots (and, when every
// replica keeps a slot for every member, one for itself at its own
// position, as Patroni publishes the leader's own slot: the replicas
// advance theirs to it, else that slot would hold WAL back on every replica
// until the next failover); otherwise /status as read, unchanged.
func (d *decider) status() cluster.Status {
	if !d.pg.Primary() {
		if d.c != nil {
			return d.c.Status
		}
		return cluster.Status{}
	}
	st := cluster.Status{Optime: d.pg.LSN}
	if len(d.pg.Slots) > 0 {
		st.Slots = maps.Clone(d.pg.Slots)
	}
	if cfg := d.in.Config; cfg.UseSlots && cfg.KeepMemberSlots {
		if st.Slots == nil {
			st.Slots = map[string]int64{}
		}
		st.Slots[cluster.SlotName(d.in.Name)] = d.pg.LSN
	}
	return st
}

// StateName is the member's "state" as Patroni publishes it (member key,
// GET /patroni): what runs in the background, else what PostgreSQL does,
// else what became of it.
func StateName(busy *Busy, pg Postgres, mem Memory) string {
	if busy != nil {
		switch busy.Kind {
		case ActBootstrap:
			return "initializing new cluster"
		case ActCreateReplica, ActReinitialize:
			return "creating replica"
		case ActStart:
			return "starting"
		case ActRewind:
			return "stopped"
		case ActRestart:
			return "restarting"
		}
	}
	switch {
	case pg.Running && pg.Ready:
		return "running"
	case pg.Running:
		return "starting"
	case mem.StartFailed:
		return "start failed"
	case mem.Crashed:
		return "crashed"
	}
	return "stopped"
}

// RoleName is the member's "role" as Patroni publishes it; a stopped
// member keeps the role it last had (mem.Role), or is "demoted" after
// this member stopped its primary.
func RoleName(pg Postgres, mem Memory) string {
	switch {
	case pg.DataDir == DataDirEmpty:
		return cluster.RoleUninitialized
	case pg.Running && pg.Ready && pg.InRecovery:
		return cluster.RoleReplica
	case pg.Running && pg.Ready:
		return cluster.RolePrimary
	case mem.Demoted:
		return cluster.RoleDemoted
	case mem.Role == "":
		return cluster.RoleReplica
	}
	return mem.Role
}

// FailsafeActive is Patroni's failsafe_mode_is_active: this primary stays
// primary in failsafe mode, or a primary reached this replica with POST
// /failsafe (heartbeat), within the last ttl.
func FailsafeActive(now, heartbeat time.Time, mem Memory, ttl time.Duration) bool {
	last := heartbeat
	if mem.FailsafeKept.After(last) {
		last = mem.FailsafeKept
	}
	return !last.IsZero() && now.Sub(last) < ttl
}
