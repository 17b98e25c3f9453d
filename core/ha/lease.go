package ha

import (
	"time"
)

// stopMargin is how long before its leader key expires a leader stops a
// primary it could not renew the key for. An immediate stop of PostgreSQL
// takes milliseconds (SIGQUIT to the postmaster, the backends exit at
// once); two seconds leave room for a loaded machine and a slow process
// exit while keeping a short ttl usable. The DCS deletes an expired key no
// sooner than the expiry counted by the leader (it counts from before the
// renewal request was sent), so a stop that ends inside the margin ends
// before any other member can take the key.
const stopMargin = 2 * time.Second

// StopMargin is the stop margin for a ttl: stopMargin, but at most a
// quarter of a short ttl so that three quarters of it stay for the loop.
func StopMargin(ttl time.Duration) time.Duration {
	return min(stopMargin, ttl/4)
}

// ActBy is the moment by which a leader whose key expires at expiry must
// have renewed it or stopped its primary: expiry minus the stop margin.
// Zero for a zero expiry (no key held by this member's count). The
// controller gives every DCS call and action of a leader's cycle this
// deadline.
func ActBy(expiry time.Time, ttl time.Duration) time.Time {
	if expiry.IsZero() {
		return time.Time{}
	}
	return expiry.Add(-StopMargin(ttl))
}

// LeaseStillCounts reports whether a leader goes on counting its key's
// lease after a cycle: not once there is nothing left for it to protect,
// that is PostgreSQL was stopped (stopped), or the lease ran out while no
// background action runs and PostgreSQL is known not to run as a primary
// or the cluster is paused (nothing is stopped then). A running primary
// past its lease keeps it counted: every DCS call then fails at once and
// the next decision stops the server.
func LeaseStillCounts(expiry time.Time, ttl time.Duration, now time.Time, stopped bool, pg Postgres, paused, busy bool) bool {
	if expiry.IsZero() || stopped {
		return false
	}
	by := ActBy(expiry, ttl)
	return now.Before(by) || (pg.MayBePrimary() && !paused) || busy
}

// leaseRunOut: this member's leader key, by its own count, expires within
// the stop margin (or has expired) and was not renewed in time.
func (d *decider) leaseRunOut() bool {
	by := ActBy(d.in.LeaderExpiry, d.in.Config.TTL)
	return !by.IsZero() && !d.in.Now.Before(by)
}

// MayBePrimary: PostgreSQL runs and is not known to be a replica (a
// server that does not answer may be a primary).
func (p Postgres) MayBePrimary() bool { return p.Running && !(p.Ready && p.InRecovery) }

// failsafeMayKeep: failsafe mode could keep this primary although its key
// cannot be renewed: the mode is on, /failsafe lists members to ask, and
// the key was not found taken or deleted (by the renewal, or by a read that
// shows it gone or someone else's: failsafe mode covers a DCS that cannot
// be reached, not a key that is known lost).
func (d *decider) failsafeMayKeep() bool {
	return d.in.Config.FailsafeMode && len(d.in.LastFailsafe) > 0 && d.pg.Primary() && !d.in.KeyLost && (d.c == nil || d.held())
}

// fence stops a PostgreSQL that may run as a primary while this member
// cannot be sure it still holds the leader key: the last renewal failed
// (Patroni: "demoted self because failed to update leader lock"), or the
// key expires, by this member's count, within the stop margin. It runs
// before anything else of the cycle, whatever the DCS read showed: a
// renewal that failed is never followed by acquiring the lapsed key "as the
// running primary". Paused, nothing is stopped (Patroni keeps a paused
// primary running). In failsafe mode the members decide, as when the DCS
// cannot be read. It reports whether it decided the cycle.
func (d *decider) fence() bool {
	renewFailed := d.in.RenewFailed != ""
	runOut := d.leaseRunOut()
	if (!renewFailed && !runOut) || d.in.Config.Paused {
		return false
	}
	promoting := d.in.Busy != nil && d.in.Busy.Kind == ActPromote
	if !d.pg.MayBePrimary() && !promoting {
		return false
	}
	if d.failsafeMayKeep() {
		if d.c == nil {
			// DCS down: dcsDown asks the /failsafe members.
			return false
		}
		// The DCS answers reads but not the renewal: as Patroni, a DCS
		// error while updating the key is the DCS not being accessible.
		d.failsafe("failed to update leader lock ("+d.in.RenewFailed+")", d.in.RenewFailed)
		return true
	}
	if promoting {
		d.add(Action{Kind: ActCancel})
	}
	why := "the leader key expires at " + d.in.LeaderExpiry.UTC().Format("15:04:05.000") + " and was not renewed in time"
	mode := StopImmediate
	switch {
	case d.in.KeyLost:
		why = "the leader key is not mine any more (" + d.in.RenewFailed + ")"
	case renewFailed && !runOut && !d.in.LeaderExpiry.IsZero():
		// The key lives until the expiry counted from the last renewal: a
		// fast stop lets the replicas receive everything written, and the
		// controller turns it into an immediate one at the stop margin.
		mode = StopFast
		why = "failed to update leader lock (" + d.in.RenewFailed + ")"
	case renewFailed:
		why = "failed to update leader lock (" + d.in.RenewFailed + ")"
	}
	if d.pg.Running {
		d.add(Action{Kind: ActStop, Mode: mode})
	}
	d.mem.Demoted = true
	d.say("demoting self because %s", why)
	return true
}

// demoteMode is the stop mode of a demotion that the DCS forces (it
// cannot be reached, or the members did not acknowledge failsafe mode):
// fast (Patroni's "offline") while the leader key surely lives past the
// stop margin, immediate once it may be gone.
func (d *decider) demoteMode() string {
	if d.in.KeyLost || d.leaseRunOut() {
		return StopImmediate
	}
	return StopFast
}
