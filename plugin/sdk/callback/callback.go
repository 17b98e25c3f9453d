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
	// as long as the agent runs. The host delivers an event again (same
	// Seq) when the plugin process died before it answered, so a plugin
	// that must act once per event skips a Seq it has handled.
	Seq uint64
	// Time is when the event happened.
	Time time.Time
}

// Receiver is what a callback plugin implements. Every method takes the
// caller's context first.
type Receiver interface {
	// Validate checks the plugin's configuration section ([callback.<name>]
	// as JSON) without acting on it, and returns a *sdk.ConfigError listing
	// every problem with its key path inside the section (an unknown key is
	// a problem).
	Validate(ctx context.Context, config []byte) error

	// Deliver handles one event. The host calls it for one event at a
	// time, in Seq order, with a deadline (the callback's timeout); it
	// returns nil once the event is handled. An error is the event's
	// failure: the host logs it and goes on with the next event, it does
	// not deliver the event again. When ctx ends, Deliver stops what it
	// started for the event and returns an error matching ctx.Err().
	Deliver(ctx context.Context, config []byte, ev Event) error
}
