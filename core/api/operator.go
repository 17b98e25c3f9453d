package api

import (
	"context"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/ha"
)

// Operator carries out what the mutating endpoints ask (restart,
// reinitialize, reload, switchover, failover, /config changes,
// /failsafe).
// The agent implements it on top of the HA loop, the DCS and the peers'
// REST API; tests use a fake.
//
// The DCS writes report a compare-and-set conflict with the SDK's
// sentinels (dcs.ErrVersionMismatch, dcs.ErrNotFound, dcs.ErrExists),
// which the handlers match with errors.Is.
type Operator interface {
	// Request hands a restart, the cancellation of a scheduled restart or
	// a reinitialize to the HA loop and returns its reply. With wait, a
	// request that starts a restart is answered when the restart has
	// ended. ctx bounds the wait.
	Request(ctx context.Context, r ha.Request, wait bool) (ha.Reply, error)
	// Reload schedules a reload of the local configuration (as SIGHUP);
	// it does not wait for it.
	Reload()
	// ReadCluster reads the cluster from the DCS now, not from the
	// snapshot of the last cycle.
	ReadCluster(ctx context.Context) (*cluster.Cluster, error)
	// WriteFailover writes /failover over version; an empty version
	// writes unconditionally.
	WriteFailover(ctx context.Context, f cluster.Failover, version string) error
	// WriteConfig writes /config over version; an empty version writes
	// unconditionally.
	WriteConfig(ctx context.Context, data []byte, version string) error
	// PeerStatus asks a member for its status (GET /patroni), as the
	// leader race does.
	PeerStatus(ctx context.Context, m cluster.Member) (ha.Peer, error)
	// Wake asks the HA loop for a cycle now.
	Wake()
	// FailsafeHeartbeat records that the primary named leader reached this
	// member with POST /failsafe while the DCS is down.
	FailsafeHeartbeat(leader string)
}
