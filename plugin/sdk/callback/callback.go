package callback

import (
	"context"
	"time"
)

// Actions an event carries: Patroni's callback names.
const (
	ActionStart      = "on_start"
	ActionStop       = "on_stop"
	ActionRestart    = "on_restart"
	ActionReload     = "on_reload"
	ActionRoleChange = "on_role_change"
)

// Roles an event names, as the member key and GET /patroni spell them.
const (
	RolePrimary       = "primary"
	RoleReplica       = "replica"
	RoleStandbyLeader = "standby_leader"
	RoleDemoted       = "demoted"
	RoleUninitialized = "uninitialized"
)

// Event is one lifecycle event of a member, delivered to every enabled
// callback in the order the member saw them.
type Event struct {
	// Action is one of the Action constants.
	Action string
	// Role is the member's role after the event (for on_role_change, the
	// new one).
	Role string
	// Scope is the cluster name.
	Scope string
	// Member is the name of the member the event happened on.
	Member string
	// Seq numbers the member's events from 1, one higher each event, for
	// as long as the agent runs; it starts over at 1 when the agent
	// restarts. A redelivered event keeps its Seq (see Receiver.Deliver).
	Seq uint64
	// Time is when the event happened. It crosses the wire in nanoseconds
	// since the Unix epoch: a plugin sees the same instant, in UTC and
	// without a monotonic clock reading (compare with Time.Equal).
	Time time.Time
}

// Receiver is what a callback plugin implements. Every method takes the
// caller's context first.
type Receiver interface {
	// Validate checks the plugin's configuration section ([callback.<name>]
	// as JSON) without acting on it, and returns a *sdk.ConfigError
	// listing every problem with its key path inside the section (an
	// unknown key is a problem, and so is input that is not a JSON table).
	Validate(ctx context.Context, config []byte) error

	// Deliver handles one event under the section Validate accepted. The
	// contract:
	//
	//   - The host calls it for one event at a time, in Seq order, with a
	//     deadline (the callback's timeout). It returns nil once the event
	//     is handled: what the plugin does for it is done, not merely
	//     started.
	//   - An error is the event's failure: the host logs it and goes on
	//     with the next event; it does not deliver the event again.
	//   - Delivery is at least once: when the plugin process died (or its
	//     connection broke) before it answered, the host delivers the same
	//     event again, same Seq and fields, to the restarted plugin. A
	//     Receiver remembers the Seqs it handled (returned nil for) as
	//     long as it lives, and a Deliver of one of them returns nil
	//     without acting again. The host redelivers only the last event it
	//     sent, so keeping the highest Seq handled is enough. A plugin that
	//     must act once across its own restarts keeps that record outside
	//     the process, keyed by Seq and Time (Seq starts over with the
	//     agent).
	//   - A section Validate refuses is refused here too, with the same
	//     *sdk.ConfigError, and nothing is done.
	//   - When ctx ends, Deliver stops what it started for the event and
	//     returns an error matching ctx.Err() (errors.Is); with ctx already
	//     ended it starts nothing.
	Deliver(ctx context.Context, config []byte, ev Event) error
}
