package ha

import (
	"strconv"
	"time"

	"github.com/custos-ha/custos/core/cluster"
)

// request takes in an operator's request. It returns true when the
// request's action is this cycle's work; a refusal or a scheduling lets the
// ordinary cycle run.
func (d *decider) request() bool {
	r := d.in.Request
	switch r.Kind {
	case RequestRestart:
		return d.requestRestart(r)
	case RequestCancelRestart:
		if d.mem.ScheduledRestart == nil {
			d.reply(ReplyNotFound, "no restarts are scheduled")
			return false
		}
		d.mem.ScheduledRestart = nil
		d.reply(ReplyDone, "scheduled restart deleted")
		return false
	case RequestReinitialize:
		return d.requestReinitialize(r)
	}
	d.reply(ReplyRefused, "unknown request "+string(r.Kind))
	return false
}

func (d *decider) reply(status ReplyStatus, msg string) {
	d.replyTo = &Reply{Status: status, Message: msg}
}

func (d *decider) requestRestart(r *Request) bool {
	switch {
	case d.in.Busy != nil:
		d.reply(ReplyConflict, string(d.in.Busy.Kind)+" already in progress")
		return false
	case r.Schedule != nil && d.in.Config.Paused:
		d.reply(ReplyRefused, "Can't schedule restart in the paused state")
		return false
	case r.Schedule != nil && d.mem.ScheduledRestart != nil:
		d.reply(ReplyConflict, "Another restart is already scheduled")
		return false
	case r.Schedule != nil:
		d.mem.ScheduledRestart = &ScheduledRestart{At: *r.Schedule, Role: r.Role, PostgresVersion: r.PostgresVersion, RestartPending: r.RestartPending, Timeout: r.Timeout}
		d.reply(ReplyScheduled, "Restart scheduled")
		return false
	case !d.pg.Running || !d.pg.Ready:
		d.reply(ReplyRefused, "postgres is not running")
		return false
	}
	if ok, why := d.restartConditions(r.Role, r.PostgresVersion, r.RestartPending); !ok {
		d.reply(ReplyRefused, "restart conditions are not satisfied: "+why)
		return false
	}
	d.restart(r.Timeout)
	d.reply(ReplyStarted, "restarting")
	d.say("restarting postgres on request")
	return true
}

// restart adds the restart of the running server in its current role.
func (d *decider) restart(timeout time.Duration) {
	if d.held() {
		d.add(Action{Kind: ActRenewLeader})
	}
	a := Action{Kind: ActRestart, AsPrimary: !d.pg.InRecovery, Timeout: timeout}
	if d.pg.InRecovery {
		a.Member = d.pg.Upstream
	}
	d.add(a)
}

// restartConditions checks a restart's filters against the running server.
func (d *decider) restartConditions(role string, version int, pending bool) (bool, string) {
	switch role {
	case "", "any":
	case cluster.RolePrimary, cluster.RoleMaster:
		if !d.pg.Primary() {
			return false, "not a primary"
		}
	case cluster.RoleReplica:
		if !d.pg.InRecovery {
			return false, "not a replica"
		}
	case cluster.RoleStandbyLeader:
		return false, "not a standby leader"
	default:
		return false, "unknown role " + strconv.Quote(role)
	}
	if version > 0 && d.pg.ServerVersion >= version {
		return false, "postgres version " + strconv.Itoa(d.pg.ServerVersion) + " is not below " + strconv.Itoa(version)
	}
	if pending && !d.pg.PendingRestart {
		return false, "no restart pending"
	}
	return true, ""
}

// scheduledRestart runs a planned restart whose time has come; it
// returns true when that is this cycle's work.
func (d *decider) scheduledRestart() bool {
	sr := d.mem.ScheduledRestart
	if sr == nil || d.in.Now.Before(sr.At) || d.in.Config.Paused {
		return false
	}
	d.mem.ScheduledRestart = nil
	if ok, why := d.restartConditions(sr.Role, sr.PostgresVersion, sr.RestartPending); !ok {
		d.note = "scheduled restart skipped: " + why
		return false
	}
	d.restart(sr.Timeout)
	d.say("restarting postgres as scheduled")
	return true
}

func (d *decider) requestReinitialize(r *Request) bool {
	switch {
	case d.held():
		d.reply(ReplyRefused, "I am the leader, can not reinitialize")
		return false
	case d.c.Leader == nil:
		d.reply(ReplyRefused, "Cluster has no leader, can not reinitialize")
		return false
	case d.in.Busy != nil && !r.Force:
		d.reply(ReplyConflict, string(d.in.Busy.Kind)+" already in progress")
		return false
	}
	src := d.c.LeaderName()
	if !r.FromLeader {
		if s := d.cloneSource(); s != "" {
			src = s
		}
	}
	if d.in.Busy != nil {
		d.add(Action{Kind: ActCancel})
	}
	d.add(Action{Kind: ActReinitialize, Member: src})
	d.reply(ReplyStarted, "reinitialize started")
	d.say("reinitializing from %s on request", src)
	return true
}
