package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/dcs"
	"github.com/custos-ha/custos/core/ha"
)

// step is one action of a decision with what it was decided on.
type step struct {
	in  ha.Input
	a   ha.Action
	obs Observation
}

// clu is the DCS view the action was decided on (nil: DCS unreadable).
func (s step) clu() *cluster.Cluster { return s.in.Cluster }

// executors maps each action onto the method that executes it.
var executors = map[ha.Kind]func(*Controller, context.Context, step) error{
	ha.ActAcquireLeader:       (*Controller).acquireLeader,
	ha.ActRenewLeader:         (*Controller).renewLeader,
	ha.ActReleaseLeader:       (*Controller).releaseLeader,
	ha.ActRaceInitialize:      (*Controller).raceInitialize,
	ha.ActWriteInitialize:     (*Controller).writeInitialize,
	ha.ActCancelInitialize:    (*Controller).cancelInitialize,
	ha.ActWriteConfig:         (*Controller).writeConfig,
	ha.ActWriteHistory:        (*Controller).writeHistory,
	ha.ActStop:                (*Controller).stop,
	ha.ActFollow:              (*Controller).follow,
	ha.ActRemoveDataDir:       (*Controller).removeDataDir,
	ha.ActSyncSlots:           (*Controller).syncSlots,
	ha.ActTouchMember:         (*Controller).touchMember,
	ha.ActCancel:              (*Controller).cancelBusy,
	ha.ActRestart:             (*Controller).restart,
	ha.ActReinitialize:        (*Controller).reinitialize,
	ha.ActBootstrap:           (*Controller).bootstrap,
	ha.ActCreateReplica:       (*Controller).createReplica,
	ha.ActStart:               (*Controller).start,
	ha.ActPromote:             (*Controller).promote,
	ha.ActSetSyncStandbyNames: (*Controller).setSyncStandbyNames,
	ha.ActWriteSync:           (*Controller).writeSync,
	ha.ActDeleteSync:          (*Controller).deleteSync,
	ha.ActSetFailsafe:         (*Controller).setFailsafe,
	ha.ActArmWatchdog:         (*Controller).armWatchdog,
	ha.ActDisarmWatchdog:      (*Controller).disarmWatchdog,
	ha.ActClearFailover:       (*Controller).clearFailover,
	ha.ActDemote:              (*Controller).demote,
	ha.ActRewind:              (*Controller).rewind,
}

// run executes one action.
func (c *Controller) run(ctx context.Context, in ha.Input, a ha.Action, obs Observation) error {
	exec, ok := executors[a.Kind]
	if !ok {
		return fmt.Errorf("unknown action %q", a.Kind)
	}
	return exec(c, ctx, step{in: in, a: a, obs: obs})
}

// acquireLeader creates the leader key. Its lifetime counts from before
// the request: etcd may refresh the lease anywhere in the round trip, and
// the key must never be believed to live longer than it does.
func (c *Controller) acquireLeader(ctx context.Context, _ step) error {
	at := c.now()
	if err := c.store.AcquireLeader(ctx); err != nil {
		return err
	}
	c.leaseExpiry = at.Add(c.ttl)
	c.feedWatchdog(c.leaseExpiry)
	return nil
}

// renewLeader renews the leader key (counted as acquireLeader) and writes
// the decision's /status. A failed renewal is decided on by the next cycle,
// at once (ha: fence).
func (c *Controller) renewLeader(ctx context.Context, s step) error {
	at := c.now()
	if err := c.store.RenewLeader(ctx); err != nil {
		c.renewFailed, c.keyLost, c.urgent = err.Error(), dcs.KeyLost(err), true
		return err
	}
	c.leaseExpiry = at.Add(c.ttl)
	c.feedWatchdog(c.leaseExpiry)
	if s.a.Status == nil {
		return nil
	}
	return c.store.WriteStatus(ctx, *s.a.Status)
}

func (c *Controller) releaseLeader(ctx context.Context, s step) error {
	if err := c.store.ReleaseLeader(ctx); err != nil {
		return err
	}
	c.leaseExpiry = time.Time{}
	if !s.obs.HA.Running {
		// A primary that did not start gives the key up: it is demoted.
		c.life.failedToStartAsLeader()
	}
	return nil
}

func (c *Controller) raceInitialize(ctx context.Context, _ step) error {
	return c.store.RaceInitialize(ctx)
}

func (c *Controller) writeInitialize(ctx context.Context, s step) error {
	version := ""
	if clu := s.clu(); clu != nil && clu.Initialize != nil {
		version = clu.InitializeVersion
	}
	return c.store.WriteInitialize(ctx, s.obs.HA.SysID, version)
}

func (c *Controller) cancelInitialize(ctx context.Context, _ step) error {
	return c.store.CancelInitialize(ctx)
}

func (c *Controller) writeConfig(ctx context.Context, _ step) error {
	data, err := c.opts.Bootstrap.MarshalJSON()
	if err != nil {
		return fmt.Errorf("encoding bootstrap.dcs: %w", err)
	}
	return c.store.WriteConfig(ctx, data)
}

func (c *Controller) stop(ctx context.Context, s step) error {
	err := c.stopPostgres(ctx, s.a.Mode)
	// The exit of a postmaster we stopped is no crash.
	c.seenExit = c.local.Exited()
	if err == nil {
		c.life.stopped(s.obs.HA.Running)
	}
	return err
}

func (c *Controller) follow(ctx context.Context, s step) error {
	restarted, err := c.local.Follow(ctx, memberOf(s.clu(), s.a.Member))
	if err == nil {
		c.life.followed(restarted)
	}
	return err
}

func (c *Controller) removeDataDir(ctx context.Context, _ step) error {
	return c.local.RemoveDataDir(ctx)
}

func (c *Controller) syncSlots(ctx context.Context, s step) error {
	if s.a.Slots == nil {
		return nil
	}
	return c.local.SyncSlots(ctx, *s.a.Slots)
}

func (c *Controller) touchMember(ctx context.Context, s step) error {
	return c.store.TouchMember(ctx, c.member(s.in, s.obs))
}

// cancelBusy cancels the background action in progress and takes in its
// outcome.
func (c *Controller) cancelBusy(context.Context, step) error {
	if b := c.busy; b != nil {
		b.cancel()
		<-b.done
		c.finishAsync(<-c.asyncDone)
	}
	return nil
}

// restart stops PostgreSQL (fast) and starts it again in the same role, in
// the background; the action's timeout bounds the start.
func (c *Controller) restart(_ context.Context, s step) error {
	upstream := memberOf(s.clu(), s.a.Member)
	return c.startAsync(s.a.Kind, func(ctx context.Context) error {
		c.beforeStop(ctx, ha.StopFast)
		if err := c.local.Stop(ctx, ha.StopFast); err != nil {
			return err
		}
		if s.a.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.a.Timeout)
			defer cancel()
		}
		if err := c.local.Start(ctx, s.a.AsPrimary, upstream); err != nil {
			return err
		}
		c.life.startedAs(s.a.AsPrimary, upstream != nil, true)
		return nil
	})
}

// reinitialize stops PostgreSQL and clones it again, in the background:
// the replica methods wipe the old data first or restore over it.
func (c *Controller) reinitialize(_ context.Context, s step) error {
	src := memberOf(s.clu(), s.a.Member)
	if src == nil {
		return fmt.Errorf("clone source %s has no member key", s.a.Member)
	}
	running := s.obs.HA.Running
	return c.startAsync(s.a.Kind, func(ctx context.Context) error {
		if running {
			c.beforeStop(ctx, ha.StopImmediate)
		}
		if err := c.local.Stop(ctx, ha.StopImmediate); err != nil {
			return err
		}
		c.life.stopped(running)
		// The replica methods remove the old data first, unless one
		// restores over it (keep_data).
		return c.local.CreateReplica(ctx, src)
	})
}

func (c *Controller) bootstrap(_ context.Context, s step) error {
	return c.startAsync(s.a.Kind, func(ctx context.Context) error {
		if err := c.local.Bootstrap(ctx); err != nil {
			return err
		}
		c.life.bootstrapped()
		return nil
	})
}

// createReplica fills the empty data directory from the action's member,
// or, with none named, with the replica methods that need no source.
func (c *Controller) createReplica(_ context.Context, s step) error {
	src := memberOf(s.clu(), s.a.Member)
	if src == nil && s.a.Member != "" {
		return fmt.Errorf("clone source %s has no member key", s.a.Member)
	}
	return c.startAsync(s.a.Kind, func(ctx context.Context) error { return c.local.CreateReplica(ctx, src) })
}

func (c *Controller) start(_ context.Context, s step) error {
	upstream := memberOf(s.clu(), s.a.Member)
	return c.startAsync(s.a.Kind, func(ctx context.Context) error {
		if err := c.local.Start(ctx, s.a.AsPrimary, upstream); err != nil {
			return err
		}
		c.life.startedAs(s.a.AsPrimary, upstream != nil, false)
		return nil
	})
}

// promote runs pre_promote, then promotes; a pre_promote that fails
// cancels the promotion (the decision then releases the key).
func (c *Controller) promote(_ context.Context, s step) error {
	return c.startAsync(s.a.Kind, func(ctx context.Context) error {
		if h := c.opts.Hooks; h != nil {
			if err := h.PrePromote(ctx); err != nil {
				return &hookRefusal{hook: "pre_promote", err: err}
			}
		}
		if err := c.local.Promote(ctx); err != nil {
			return err
		}
		c.life.promoted()
		return nil
	})
}

// hookRefusal is a hook script that refused an action before it began.
type hookRefusal struct {
	hook string
	err  error
}

func (e *hookRefusal) Error() string { return e.hook + " refused: " + e.err.Error() }
func (e *hookRefusal) Unwrap() error { return e.err }

// beforeStop runs before_stop ahead of a stop; its failure is logged. An
// immediate stop (a fence at the lease's margin, a re-clone) does not wait
// for it: that stop must not be held up.
func (c *Controller) beforeStop(ctx context.Context, mode string) {
	h := c.opts.Hooks
	if h == nil {
		return
	}
	if mode == ha.StopImmediate {
		c.logger.Info("before_stop skipped: an immediate stop does not wait for it")
		return
	}
	if by := ha.ActBy(c.leaseExpiry, c.ttl); !by.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, by)
		defer cancel()
	}
	if err := h.BeforeStop(ctx); err != nil {
		c.logger.Warn("before_stop failed; stopping anyway", "error", err)
	}
}

func (c *Controller) setSyncStandbyNames(ctx context.Context, s step) error {
	reloaded, err := c.local.SetSyncStandbyNames(ctx, s.a.Value)
	if reloaded {
		c.life.reloaded()
	}
	return err
}

func (c *Controller) writeSync(ctx context.Context, s step) error {
	version := ""
	if clu := s.clu(); clu != nil && clu.Sync != nil {
		version = clu.Sync.Version
	}
	return c.store.WriteSync(ctx, s.a.SyncValue(c.opts.Name), version)
}

func (c *Controller) deleteSync(ctx context.Context, s step) error {
	clu := s.clu()
	if clu == nil || clu.Sync == nil {
		return nil
	}
	return c.store.DeleteSync(ctx, clu.Sync.Version)
}

// setFailsafe writes /failsafe. What this leader wrote is /failsafe from
// then on, read back or not: the DCS may go away before the next read,
// and failsafe mode must then ask the members it just listed (Patroni
// keeps its last written value the same way).
func (c *Controller) setFailsafe(ctx context.Context, s step) error {
	if err := c.store.SetFailsafe(ctx, s.a.Failsafe); err != nil {
		// The write may have landed (a timeout): a member it named
		// counts on being asked before this primary is kept, so ask the
		// members of both.
		merged := maps.Clone(c.lastFailsafe)
		if merged == nil {
			merged = cluster.Failsafe{}
		}
		maps.Copy(merged, s.a.Failsafe)
		c.lastFailsafe = merged
		return err
	}
	c.lastFailsafe = maps.Clone(s.a.Failsafe)
	return nil
}

func (c *Controller) armWatchdog(context.Context, step) error {
	if c.opts.Watchdog == nil {
		return nil
	}
	if err := c.opts.Watchdog.Arm(c.dyn.TTL.Duration(), c.dyn.LoopWait.Duration()); err != nil {
		return err
	}
	if !c.leaseExpiry.IsZero() {
		// Armed for a lease already counted (a primary kept by failsafe
		// mode, or one whose key is held): it runs out before it does.
		c.feedWatchdog(c.leaseExpiry)
	}
	return nil
}

func (c *Controller) disarmWatchdog(context.Context, step) error {
	if c.opts.Watchdog == nil {
		return nil
	}
	return c.opts.Watchdog.Disarm()
}

func (c *Controller) clearFailover(ctx context.Context, s step) error {
	clu := s.clu()
	if clu == nil || clu.Failover == nil {
		return nil
	}
	return c.store.ClearFailover(ctx, clu.Failover.Version)
}

// demote is a switchover's graceful demote, in the background.
func (c *Controller) demote(_ context.Context, s step) error {
	candidate := memberOf(s.clu(), s.a.Member)
	return c.startAsync(s.a.Kind, func(ctx context.Context) error { return c.demoteGraceful(ctx, candidate) })
}

func (c *Controller) rewind(_ context.Context, s step) error {
	src := memberOf(s.clu(), s.a.Member)
	if src == nil {
		return fmt.Errorf("rewind source %s has no member key", s.a.Member)
	}
	return c.startAsync(s.a.Kind, func(ctx context.Context) error { return c.local.Rewind(ctx, *src) })
}

// stopPostgres stops PostgreSQL. The stop is not bound by the cycle's
// lease deadline (it is what must happen when the deadline comes), but a
// fast stop that has not ended by then becomes an immediate one: the
// server must be down before the leader key can expire.
func (c *Controller) stopPostgres(ctx context.Context, mode string) error {
	base := context.WithoutCancel(ctx)
	c.beforeStop(base, mode)
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
			if r := (*hookRefusal)(nil); errors.As(err, &r) {
				o.Hook = r.hook
			}
		}
		c.asyncDone <- o
	}()
	return nil
}

// writeHistory publishes /history from the local timeline history: lines
// already in the DCS keep their timestamps; new ones get now and my name.
func (c *Controller) writeHistory(ctx context.Context, s step) error {
	clu, obs := s.clu(), s.obs
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
			l = k
		} else if i == len(local)-1 {
			l.Timestamp = cluster.FormatTime(c.now())
			l.NewLeader = c.opts.Name
		}
		out = append(out, l)
	}
	return c.store.SetHistory(ctx, namePromoter(out, s.a, c.logger))
}

// namePromoter makes /history's line for the switch onto the timeline
// this member's data ran on before its promotion name the member that
// started it, as this member remembers (ha.Memory.FormerTimeline): a
// line kept from /history may name another member that promoted onto
// the same number at the same point.
func namePromoter(h cluster.History, a ha.Action, logger hclog.Logger) cluster.History {
	if a.Timeline <= 1 || a.Member == "" {
		return h
	}
	for i := range h {
		if h[i].Timeline == a.Timeline-1 && !strings.EqualFold(h[i].NewLeader, a.Member) {
			if h[i].NewLeader != "" {
				logger.Warn("/history named another member as the one that started my former timeline: correcting it",
					"timeline", a.Timeline, "named", h[i].NewLeader, "started_by", a.Member)
			}
			h[i].NewLeader = a.Member
		}
	}
	return h
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
	c.beforeStop(ctx, ha.StopFast)
	if err := c.local.Stop(ctx, ha.StopFast); err != nil {
		return err
	}
	c.life.stopped(true)
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
