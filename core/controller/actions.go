package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/dcs"
	"github.com/custos-ha/custos/core/ha"
)

// run executes one action.
func (c *Controller) run(ctx context.Context, in ha.Input, a ha.Action, obs Observation) error {
	clu := in.Cluster
	switch a.Kind {
	case ha.ActAcquireLeader:
		// The key's lifetime counts from before the request: etcd may
		// refresh the lease anywhere in the round trip, and the key must
		// never be believed to live longer than it does.
		at := c.now()
		if err := c.store.AcquireLeader(ctx); err != nil {
			return err
		}
		c.leaseExpiry = at.Add(c.ttl)
		c.feedWatchdog()
		return nil
	case ha.ActRenewLeader:
		at := c.now() // as for ActAcquireLeader
		if err := c.store.RenewLeader(ctx); err != nil {
			// The next cycle, at once, decides on it (ha: fence).
			c.renewFailed, c.keyLost, c.urgent = err.Error(), dcs.KeyLost(err), true
			return err
		}
		c.leaseExpiry = at.Add(c.ttl)
		c.feedWatchdog()
		if a.Status == nil {
			return nil
		}
		return c.store.WriteStatus(ctx, *a.Status)
	case ha.ActReleaseLeader:
		if err := c.store.ReleaseLeader(ctx); err != nil {
			return err
		}
		c.leaseExpiry = time.Time{}
		return nil
	case ha.ActRaceInitialize:
		return c.store.RaceInitialize(ctx)
	case ha.ActWriteInitialize:
		version := ""
		if clu != nil && clu.Initialize != nil {
			version = clu.InitializeVersion
		}
		return c.store.WriteInitialize(ctx, obs.HA.SysID, version)
	case ha.ActCancelInitialize:
		return c.store.CancelInitialize(ctx)
	case ha.ActWriteConfig:
		data, err := c.opts.Bootstrap.MarshalJSON()
		if err != nil {
			return fmt.Errorf("encoding bootstrap.dcs: %w", err)
		}
		return c.store.WriteConfig(ctx, data)
	case ha.ActWriteHistory:
		return c.writeHistory(ctx, clu, obs)
	case ha.ActStop:
		err := c.stopPostgres(ctx, a.Mode)
		// The exit of a postmaster we stopped is no crash.
		c.seenExit = c.local.Exited()
		return err
	case ha.ActFollow:
		return c.local.Follow(ctx, memberOf(clu, a.Member))
	case ha.ActRemoveDataDir:
		return c.local.RemoveDataDir(ctx)
	case ha.ActSyncSlots:
		if a.Slots == nil {
			return nil
		}
		return c.local.SyncSlots(ctx, *a.Slots)
	case ha.ActTouchMember:
		return c.store.TouchMember(ctx, c.member(in, obs))
	case ha.ActCancel:
		if b := c.busy; b != nil {
			b.cancel()
			<-b.done
			c.finishAsync(<-c.asyncDone)
		}
		return nil
	case ha.ActRestart:
		upstream := memberOf(clu, a.Member)
		return c.startAsync(a.Kind, func(ctx context.Context) error {
			if err := c.local.Stop(ctx, ha.StopFast); err != nil {
				return err
			}
			if a.Timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, a.Timeout)
				defer cancel()
			}
			return c.local.Start(ctx, a.AsPrimary, upstream)
		})
	case ha.ActReinitialize:
		src := memberOf(clu, a.Member)
		if src == nil {
			return fmt.Errorf("clone source %s has no member key", a.Member)
		}
		return c.startAsync(a.Kind, func(ctx context.Context) error {
			if err := c.local.Stop(ctx, ha.StopImmediate); err != nil {
				return err
			}
			if err := c.local.RemoveDataDir(ctx); err != nil {
				return err
			}
			return c.local.CreateReplica(ctx, *src)
		})
	case ha.ActBootstrap:
		return c.startAsync(a.Kind, c.local.Bootstrap)
	case ha.ActCreateReplica:
		src := memberOf(clu, a.Member)
		if src == nil {
			return fmt.Errorf("clone source %s has no member key", a.Member)
		}
		return c.startAsync(a.Kind, func(ctx context.Context) error { return c.local.CreateReplica(ctx, *src) })
	case ha.ActStart:
		upstream := memberOf(clu, a.Member)
		return c.startAsync(a.Kind, func(ctx context.Context) error { return c.local.Start(ctx, a.AsPrimary, upstream) })
	case ha.ActPromote:
		return c.startAsync(a.Kind, c.local.Promote)
	case ha.ActSetSyncStandbyNames:
		return c.local.SetSyncStandbyNames(ctx, a.Value)
	case ha.ActWriteSync:
		version := ""
		if clu != nil && clu.Sync != nil {
			version = clu.Sync.Version
		}
		return c.store.WriteSync(ctx, a.SyncValue(c.opts.Name), version)
	case ha.ActDeleteSync:
		if clu == nil || clu.Sync == nil {
			return nil
		}
		return c.store.DeleteSync(ctx, clu.Sync.Version)
	case ha.ActSetFailsafe:
		if err := c.store.SetFailsafe(ctx, a.Failsafe); err != nil {
			return err
		}
		// What this leader wrote is /failsafe from now on, read back or
		// not: the DCS may go away before the next read, and failsafe mode
		// must then ask the members it just listed (Patroni keeps its
		// last written value the same way).
		c.lastFailsafe = maps.Clone(a.Failsafe)
		return nil
	case ha.ActArmWatchdog:
		if c.opts.Watchdog == nil {
			return nil
		}
		return c.opts.Watchdog.Arm(c.dyn.TTL.Duration(), c.dyn.LoopWait.Duration())
	case ha.ActDisarmWatchdog:
		if c.opts.Watchdog == nil {
			return nil
		}
		return c.opts.Watchdog.Disarm()
	case ha.ActClearFailover:
		if clu == nil || clu.Failover == nil {
			return nil
		}
		return c.store.ClearFailover(ctx, clu.Failover.Version)
	case ha.ActDemote:
		candidate := memberOf(clu, a.Member)
		return c.startAsync(a.Kind, func(ctx context.Context) error { return c.demoteGraceful(ctx, candidate) })
	case ha.ActRewind:
		src := memberOf(clu, a.Member)
		if src == nil {
			return fmt.Errorf("rewind source %s has no member key", a.Member)
		}
		return c.startAsync(a.Kind, func(ctx context.Context) error { return c.local.Rewind(ctx, *src) })
	}
	return fmt.Errorf("unknown action %q", a.Kind)
}

// stopPostgres stops PostgreSQL. The stop is not bound by the cycle's
// lease deadline (it is what must happen when the deadline comes), but a
// fast stop that has not ended by then becomes an immediate one: the
// server must be down before the leader key can expire.
func (c *Controller) stopPostgres(ctx context.Context, mode string) error {
	base := context.WithoutCancel(ctx)
	if by := ha.ActBy(c.leaseExpiry, c.ttl); mode != ha.StopImmediate && !by.IsZero() {
		sctx, cancel := context.WithDeadline(base, by)
		err := c.local.Stop(sctx, mode)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		c.logger.Warn("postgres did not stop before the leader key's stop margin: stopping it immediately", "mode", mode, "error", err)
		mode = ha.StopImmediate
	}
	return c.local.Stop(base, mode)
}

// memberOf returns the named member, nil for "" or an unknown name.
func memberOf(clu *cluster.Cluster, name string) *cluster.Member {
	if clu == nil || name == "" {
		return nil
	}
	if m := clu.Member(name); m != nil {
		cp := *m
		return &cp
	}
	return nil
}

// startAsync runs a long action in the background; its outcome wakes the
// loop.
func (c *Controller) startAsync(kind ha.Kind, fn func(context.Context) error) error {
	if c.busy != nil {
		return fmt.Errorf("%s still in progress", c.busy.kind)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{kind: kind, since: c.now(), cancel: cancel, done: make(chan struct{})}
	c.busy = r
	go func() {
		defer close(r.done)
		defer cancel()
		err := fn(ctx)
		o := ha.Outcome{Kind: kind, At: c.now()}
		if err != nil {
			o.Err = err.Error()
		}
		c.asyncDone <- o
	}()
	return nil
}

// writeHistory publishes /history from the local timeline history: lines
// already in the DCS keep their timestamps; new ones get now and my name.
func (c *Controller) writeHistory(ctx context.Context, clu *cluster.Cluster, obs Observation) error {
	local, err := c.local.History(ctx, obs.HA.Timeline)
	if err != nil {
		return fmt.Errorf("reading the local timeline history: %w", err)
	}
	known := map[int]cluster.HistoryLine{}
	if clu != nil {
		for _, l := range clu.History {
			known[l.Timeline] = l
		}
	}
	out := make(cluster.History, 0, len(local))
	for i, l := range local {
		if k, ok := known[l.Timeline]; ok && k.LSN == l.LSN {
			out = append(out, k)
			continue
		}
		if i == len(local)-1 {
			l.Timestamp = cluster.FormatTime(c.now())
			l.NewLeader = c.opts.Name
		}
		out = append(out, l)
	}
	return c.store.SetHistory(ctx, out)
}

// handOffWait bounds how long a switchover's demote waits for the
// candidate to report the shutdown checkpoint; a connected standby gets it
// before the shutdown ends, so this is only a safety net.
const handOffWait = 5 * time.Second

// handOffPoll is how often the candidate is asked meanwhile.
const handOffPoll = 50 * time.Millisecond

// demoteGraceful is the switchover's demote: CHECKPOINT, fast shutdown, and
// a short wait for the candidate to have received the shutdown checkpoint.
// The leader key is released by the next decision, right after.
func (c *Controller) demoteGraceful(ctx context.Context, candidate *cluster.Member) error {
	if err := c.local.Checkpoint(ctx); err != nil {
		c.logger.Warn("checkpoint before the switchover", "error", err)
	}
	if err := c.local.Stop(ctx, ha.StopFast); err != nil {
		return err
	}
	if candidate == nil {
		return nil
	}
	checkpoint := c.local.Observe(ctx).HA.CheckpointLSN
	deadline := time.Now().Add(handOffWait)
	for {
		p, err := c.peers.Status(ctx, *candidate)
		if err == nil && p.LSN >= checkpoint {
			return nil
		}
		if time.Now().After(deadline) {
			c.logger.Warn("the switchover candidate did not report the shutdown checkpoint in time; handing over anyway",
				"member", candidate.Name, "checkpoint", checkpoint, "candidate_lsn", p.LSN, "error", err)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(handOffPoll):
		}
	}
}
