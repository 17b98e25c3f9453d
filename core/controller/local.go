package controller

import (
	"context"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/ha"
)

// Local is what the controller needs of the local PostgreSQL. The agent
// provides it on top of core/postgres and the replica plugins; tests use a
// fake.
type Local interface {
	// Observe looks at the data directory and, when PostgreSQL runs, asks
	// it about itself. It never fails: problems go into the observation.
	Observe(ctx context.Context) Observation
	// Exited returns a channel closed when the current postmaster exits;
	// nil when there is none. A new postmaster gets a new channel.
	Exited() <-chan struct{}

	// Bootstrap creates a new cluster (initdb), starts it as a primary
	// and creates the agent's roles.
	Bootstrap(ctx context.Context) error
	// CreateReplica fills the empty data directory from the source member,
	// trying the configured replica methods in order; with no source, only
	// the methods that need none.
	CreateReplica(ctx context.Context, source *cluster.Member) error
	// Start starts PostgreSQL as a primary, or as a replica following
	// upstream (nil: no upstream), and returns once it accepts
	// connections.
	Start(ctx context.Context, asPrimary bool, upstream *cluster.Member) error
	// Stop stops PostgreSQL with the mode (smart, fast, immediate).
	Stop(ctx context.Context, mode string) error
	// Promote promotes the replica and returns once it runs as primary.
	Promote(ctx context.Context) error
	// SetSyncStandbyNames sets synchronous_standby_names on the primary
	// and reloads (reloaded says it did); nil gives the setting back to
	// the configuration.
	SetSyncStandbyNames(ctx context.Context, value *string) (reloaded bool, err error)
	// Checkpoint runs CHECKPOINT (before a switchover's shutdown, so the
	// shutdown checkpoint is short).
	Checkpoint(ctx context.Context) error
	// Follow points the running replica at upstream (nil: none);
	// restarted says it took a restart rather than a reload.
	Follow(ctx context.Context, upstream *cluster.Member) (restarted bool, err error)
	// Rewind runs pg_rewind against the source member.
	Rewind(ctx context.Context, source cluster.Member) error
	// RemoveDataDir wipes the data directory.
	RemoveDataDir(ctx context.Context) error
	// SyncSlots makes the replication slots match the plan.
	SyncSlots(ctx context.Context, plan cluster.SlotPlan) error
	// History returns the timeline history of the given timeline from the
	// local timeline history file, as /history lines.
	History(ctx context.Context, timeline int) (cluster.History, error)
}

// Observation is one look at the local PostgreSQL.
type Observation struct {
	// HA is what the decision needs.
	HA ha.Postgres
	// For publishing (member key, /patroni, /metrics):
	ReceiveLSN       *int64
	ReplayLSN        *int64
	ReplayPaused     bool
	ReplayedAt       *time.Time
	ReplicationState string
	// LatestEndLSN is the walreceiver's latest_end_lsn: the primary's
	// position as last reported to this replica.
	LatestEndLSN    int64
	ServerVersion   int
	PostmasterStart time.Time
	PendingRestart  bool
	PendingReasons  map[string]cluster.ParamChange
	Replication     []cluster.Replication
}

// Peers asks another member about itself (GET /patroni), and, while the
// DCS is down in failsafe mode, whether it still takes this member for the
// primary (POST /failsafe; nil means "Accepted").
type Peers interface {
	Status(ctx context.Context, m cluster.Member) (ha.Peer, error)
	Failsafe(ctx context.Context, name, apiURL string, me cluster.Member) error
}

// Watchdog is the watchdog as the loop sees it: core/watchdog against the
// running postmaster, put together by the agent. Nil in Options means mode
// off.
type Watchdog interface {
	// State checks the watchdog for this ttl and loop_wait (starting the
	// fencing process when it is not running) and says what the decision
	// needs.
	State(ttl, loopWait time.Duration) ha.Watchdog
	// Arm arms it against the running postmaster (before a promotion or a
	// start as primary, or for a primary found unarmed).
	Arm(ttl, loopWait time.Duration) error
	// Feed restarts its countdown when armed (after each renewal of the
	// leader key, and each acknowledgement in failsafe mode), following a
	// postmaster that was restarted. After a renewal expiry is when the key
	// expires, counted from before the request was sent: the countdown
	// then runs out no later than the safety margin before it, however
	// late the answer came. Zero for a feed tied to no renewal.
	Feed(expiry time.Time) error
	// Disarm stops it (the magic close).
	Disarm() error
}
