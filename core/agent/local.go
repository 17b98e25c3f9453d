package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/callbacks"
	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/controller"
	"github.com/custos-ha/custos/core/ha"
	"github.com/custos-ha/custos/core/plugins"
	"github.com/custos-ha/custos/core/postgres"
)

// observeTimeout bounds the SQL observation of one cycle.
const observeTimeout = 5 * time.Second

// ReplicaCreator creates a replica's data directory from a source member
// with the configured replica methods, in order.
type ReplicaCreator interface {
	CreateReplica(ctx context.Context, dataDir string, source *cluster.Member) error
}

// local is controller.Local on top of core/postgres and the replica
// plugins.
type local struct {
	pg       *postgres.Postgres
	replicas ReplicaCreator
	logger   hclog.Logger
	// startTimeout bounds a start (pg_ctl_timeout).
	startTimeout time.Duration
	// hooks runs post_bootstrap; nil when no hook is configured.
	hooks *callbacks.HookRunner
	// scope and bootstrap are the cluster's name and the [bootstrap]
	// section (its method), as the agent started.
	scope     string
	member    string
	binDir    string
	bootstrap config.Bootstrap
	// plugins finds bootstrap plugins.
	plugins *plugins.Host

	mu sync.Mutex
	// sysid caches the system identifier of the data directory.
	sysid string
	// upstream is the member the server was last configured to follow.
	upstream string
	// ssn is the synchronous_standby_names the HA loop manages (nil: the
	// configured one); it survives restarts as primary.
	ssn *string
}

var _ controller.Local = (*local)(nil)

func (l *local) Exited() <-chan struct{} { return l.pg.Exited() }

// Observe implements controller.Local.
func (l *local) Observe(ctx context.Context) controller.Observation {
	var o controller.Observation
	state, err := l.pg.DataDirState()
	switch {
	case err != nil:
		o.HA.DataDir, o.HA.Problem = ha.DataDirBroken, err.Error()
		return o
	case state == postgres.DirAbsent || state == postgres.DirEmpty:
		o.HA.DataDir = ha.DataDirEmpty
		l.mu.Lock()
		l.sysid = ""
		l.mu.Unlock()
		return o
	case state != postgres.DirInitialized:
		o.HA.DataDir, o.HA.Problem = ha.DataDirBroken, fmt.Sprintf("data directory %s is %s", l.pg.DataDir(), state)
		return o
	}
	if err := l.pg.CheckDataDir(); err != nil {
		o.HA.DataDir, o.HA.Problem = ha.DataDirBroken, err.Error()
		return o
	}
	o.HA.DataDir = ha.DataDirInitialized
	running := l.pg.IsRunning()
	if !running {
		// An agent restarted while PostgreSQL kept running adopts it.
		if adopted, err := l.pg.Adopt(ctx); err != nil {
			o.HA.Problem = err.Error()
		} else {
			running = adopted
		}
	}
	l.mu.Lock()
	sysid, upstream := l.sysid, l.upstream
	l.mu.Unlock()
	if !running || sysid == "" {
		cd, err := l.pg.ControlData(ctx)
		if err != nil {
			o.HA.Problem = err.Error()
		} else {
			sysid = fmt.Sprint(cd.SystemIdentifier)
			l.mu.Lock()
			l.sysid = sysid
			l.mu.Unlock()
			o.HA.ControlState = cd.ClusterState
			o.HA.CheckpointLSN = int64(cd.CheckpointLSN)
			o.HA.MinRecoveryEnd = int64(cd.MinRecoveryLSN)
			o.HA.ControlTimeline = max(cd.Timeline, cd.MinRecoveryTimeline)
			if !running {
				o.HA.History = l.localHistory(o.HA.ControlTimeline)
			}
		}
		o.HA.BackupLabel = l.pg.HasBackupLabel()
	}
	o.HA.SysID = sysid
	o.HA.Running = running
	o.HA.Upstream = upstream
	if !running {
		return o
	}
	octx, cancel := context.WithTimeout(ctx, observeTimeout)
	defer cancel()
	obs, err := l.pg.Observe(octx)
	if err != nil {
		o.HA.Problem = err.Error()
		return o
	}
	o.HA.Ready = true
	o.HA.InRecovery = obs.InRecovery
	o.HA.Timeline = obs.Timeline
	o.ServerVersion = obs.ServerVersion
	o.HA.ServerVersion = obs.ServerVersion
	o.HA.PendingRestart = len(obs.PendingRestart) > 0
	o.PostmasterStart = obs.PostmasterStartTime
	if obs.InRecovery {
		received, replayed := int64(obs.ReceivedLSN), int64(obs.ReplayedLSN)
		o.HA.LSN = max(received, replayed)
		o.ReceiveLSN, o.ReplayLSN = &received, &replayed
		o.ReplayPaused = obs.ReplayPaused
		o.ReplayedAt = obs.ReplayedTimestamp
		o.ReplicationState = "in archive recovery"
		if w := obs.WALReceiver; w != nil && w.Status == "streaming" {
			o.HA.Streaming = true
			o.ReplicationState = "streaming"
			o.LatestEndLSN = int64(w.LatestEndLSN)
		} else {
			o.HA.History = l.localHistory(obs.Timeline)
		}
	} else {
		o.HA.LSN = int64(obs.WALLSN)
		o.HA.Upstream = ""
	}
	o.HA.SyncStandbyNames = obs.SyncStandbyNames
	for _, sl := range obs.Slots {
		if sl.Temporary {
			continue
		}
		if o.HA.Slots == nil {
			o.HA.Slots = map[string]int64{}
		}
		pos := sl.RestartLSN
		if sl.Type == postgres.SlotLogical {
			pos = sl.ConfirmedFlushLSN
		}
		o.HA.Slots[sl.Name] = int64(pos)
	}
	for _, r := range obs.Replication {
		o.HA.Replication = append(o.HA.Replication, ha.Replication{
			ApplicationName: r.ApplicationName, State: r.State, SyncState: r.SyncState, FlushLSN: int64(r.FlushLSN),
		})
		rep := cluster.Replication{
			Usename: r.Usename, ApplicationName: r.ApplicationName,
			State: r.State, SyncState: r.SyncState, SyncPriority: r.SyncPriority,
		}
		if r.ClientAddr != "" {
			addr := r.ClientAddr
			rep.ClientAddr = &addr
		}
		o.Replication = append(o.Replication, rep)
	}
	if len(obs.PendingRestart) > 0 {
		o.PendingRestart = true
		o.PendingReasons = map[string]cluster.ParamChange{}
		for _, s := range obs.PendingRestart {
			o.PendingReasons[s.Name] = cluster.ParamChange{OldValue: s.Old, NewValue: s.New}
		}
	}
	return o
}

// upstreamOf turns a member into the server to stream from, with this
// member's slot on it.
func (l *local) upstreamOf(m *cluster.Member) (*postgres.Upstream, error) {
	if m == nil {
		return nil, nil
	}
	u, err := postgres.UpstreamFromConnURL(m.ConnURL)
	if err != nil {
		return nil, fmt.Errorf("member %s: %w", m.Name, err)
	}
	u.SlotName = l.pg.MemberSlot()
	return &u, nil
}

func (l *local) setUpstream(m *cluster.Member) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.upstream = ""
	if m != nil {
		l.upstream = m.Name
	}
}

// Bootstrap implements controller.Local: initdb (or the configured custom
// bootstrap method), start as primary, roles, post_bootstrap.
func (l *local) Bootstrap(ctx context.Context) error {
	if name := l.bootstrap.Method; name != "" && name != config.DefaultBootstrapMethod {
		m := l.bootstrap.Methods[name]
		if m.Command == "" {
			return l.pluginBootstrap(ctx, name, m)
		}
		return l.customBootstrap(ctx, name, m)
	}
	if err := l.pg.Bootstrap(ctx); err != nil {
		return err
	}
	if err := l.pg.Configure(postgres.Setup{}); err != nil {
		return err
	}
	if err := l.pg.Start(ctx, l.startTimeout); err != nil {
		return err
	}
	l.setUpstream(nil)
	if err := l.pg.CreateRoles(ctx); err != nil {
		return err
	}
	return l.postBootstrap(ctx)
}

// postBootstrap runs post_bootstrap, when configured, with a connection
// string to the new cluster without the password (in the pgpass file);
// its failure fails the bootstrap, which removes the data directory.
func (l *local) postBootstrap(ctx context.Context) error {
	if l.hooks == nil || !l.hooks.Configured(callbacks.HookPostBootstrap) {
		return nil
	}
	u, err := postgres.UpstreamFromConnURL(l.pg.ConnURL())
	if err != nil {
		return err
	}
	if err := l.hooks.PostBootstrap(ctx, l.pg.SuperuserDSN(u), l.pg.PgpassPath()); err != nil {
		return fmt.Errorf("post_bootstrap: %w", err)
	}
	return nil
}

// CreateReplica implements controller.Local.
func (l *local) CreateReplica(ctx context.Context, source *cluster.Member) error {
	if l.replicas == nil {
		return errors.New("no replica creation method is available")
	}
	// The old data, if any, goes (or is restored over): forget its
	// system identifier.
	l.mu.Lock()
	l.sysid = ""
	l.mu.Unlock()
	return l.replicas.CreateReplica(ctx, l.pg.DataDir(), source)
}

// Start implements controller.Local.
func (l *local) Start(ctx context.Context, asPrimary bool, upstream *cluster.Member) error {
	u, err := l.upstreamOf(upstream)
	if err != nil {
		return err
	}
	setup := postgres.Setup{Standby: !asPrimary, Upstream: u}
	if asPrimary {
		l.mu.Lock()
		setup.SyncStandbyNames = l.ssn
		l.mu.Unlock()
	}
	if err := l.pg.Configure(setup); err != nil {
		return err
	}
	l.setUpstream(upstream)
	return l.pg.Start(ctx, l.startTimeout)
}

// Stop implements controller.Local.
func (l *local) Stop(ctx context.Context, mode string) error {
	m := postgres.StopFast
	switch mode {
	case ha.StopSmart:
		m = postgres.StopSmart
	case ha.StopImmediate:
		m = postgres.StopImmediate
	}
	return l.pg.Stop(ctx, postgres.StopOptions{Mode: m, KillOnTimeout: mode == ha.StopImmediate})
}

// Promote implements controller.Local: promote, wait for read-write, and
// checkpoint so that pg_rewind on the former primary sees the new timeline
// (Patroni's checkpoint_after_promote).
func (l *local) Promote(ctx context.Context) error {
	if err := l.pg.Promote(ctx, true, l.startTimeout); err != nil {
		return err
	}
	l.setUpstream(nil)
	l.mu.Lock()
	ssn := l.ssn
	l.mu.Unlock()
	if err := l.pg.Configure(postgres.Setup{SyncStandbyNames: ssn}); err != nil {
		return err
	}
	if ssn != nil {
		// synchronous_standby_names set before the promotion (quorum
		// commit) takes effect now.
		if err := l.pg.Reload(ctx); err != nil {
			return err
		}
	}
	if err := l.pg.Checkpoint(ctx); err != nil {
		l.logger.Warn("checkpoint after promote", "error", err)
	}
	return nil
}

// SetSyncStandbyNames implements controller.Local.
func (l *local) SetSyncStandbyNames(ctx context.Context, value *string) (reloaded bool, err error) {
	l.mu.Lock()
	l.ssn = value
	l.mu.Unlock()
	setup, ok := l.pg.LastSetup()
	if !ok || setup.Standby {
		return false, nil
	}
	setup.SyncStandbyNames = value
	if err := l.pg.Configure(setup); err != nil {
		return false, err
	}
	if err := l.pg.Reload(ctx); err != nil {
		return false, err
	}
	return true, nil
}

// Checkpoint implements controller.Local.
func (l *local) Checkpoint(ctx context.Context) error { return l.pg.Checkpoint(ctx) }

// Follow implements controller.Local.
func (l *local) Follow(ctx context.Context, upstream *cluster.Member) (restarted bool, err error) {
	u, err := l.upstreamOf(upstream)
	if err != nil {
		return false, err
	}
	err = l.pg.Follow(ctx, u)
	if errors.Is(err, postgres.ErrRestartRequired) {
		restarted = true
		err = l.pg.Restart(ctx, postgres.StopOptions{Mode: postgres.StopFast}, l.startTimeout)
	}
	if err != nil {
		return restarted, err
	}
	l.setUpstream(upstream)
	return restarted, nil
}

// Rewind implements controller.Local.
func (l *local) Rewind(ctx context.Context, source cluster.Member) error {
	u, err := l.upstreamOf(&source)
	if err != nil {
		return err
	}
	if err := l.pg.CanRewind(ctx); err != nil {
		return err
	}
	return l.pg.Rewind(ctx, *u)
}

// RemoveDataDir implements controller.Local.
func (l *local) RemoveDataDir(ctx context.Context) error {
	_, err := l.pg.RemoveDataDir(ctx, false)
	l.mu.Lock()
	l.sysid = ""
	l.mu.Unlock()
	return err
}

// SyncSlots implements controller.Local.
func (l *local) SyncSlots(ctx context.Context, plan cluster.SlotPlan) error {
	pp := postgres.SlotPlan{Ignore: plan.Ignore, Advance: map[string]postgres.LSN{}}
	for _, name := range plan.Members {
		pp.Wanted = append(pp.Wanted, cluster.SlotSpec{Name: name, Type: cluster.SlotPhysical})
	}
	pp.Wanted = append(pp.Wanted, plan.Permanent...)
	for name, lsn := range plan.Advance {
		pp.Advance[name] = postgres.LSN(lsn)
	}
	ch, err := l.pg.SyncSlots(ctx, pp)
	if err != nil || len(ch.Copy) == 0 {
		return err
	}
	// Permanent logical slots missing on this replica are copied from the
	// primary (a restart). A copy that cannot be made now is retried next
	// cycle; only PostgreSQL not running again fails the action.
	src, err := l.upstreamOf(plan.CopyFrom)
	if err == nil && src == nil {
		err = errors.New("no primary to copy them from")
	}
	if err == nil {
		_, err = l.pg.CopyLogicalSlots(ctx, *src, ch.Copy, l.startTimeout)
	}
	if err != nil {
		if !l.pg.IsRunning() {
			return err
		}
		l.logger.Warn("copying logical replication slots from the primary", "error", err)
	}
	return nil
}

// localHistory is the local history of timeline for the decision; nil
// when it cannot be read (the decision then goes by timeline numbers).
func (l *local) localHistory(timeline int) []ha.TimelineSwitch {
	entries, err := l.pg.LocalHistory(timeline)
	if err != nil {
		l.logger.Debug("reading the local timeline history", "timeline", timeline, "error", err)
		return nil
	}
	out := make([]ha.TimelineSwitch, 0, len(entries))
	for _, e := range entries {
		out = append(out, ha.TimelineSwitch{Timeline: e.Timeline, LSN: int64(e.SwitchPoint)})
	}
	return out
}

// History implements controller.Local.
func (l *local) History(_ context.Context, timeline int) (cluster.History, error) {
	entries, err := l.pg.LocalHistory(timeline)
	if err != nil {
		return nil, err
	}
	h := make(cluster.History, 0, len(entries))
	for _, e := range entries {
		h = append(h, cluster.HistoryLine{Timeline: e.Timeline, LSN: int64(e.SwitchPoint), Reason: e.Reason})
	}
	return h, nil
}
