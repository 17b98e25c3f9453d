package controller

import (
	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/ha"
)

// parseConfig reads /config over the dynamic configuration in effect and
// returns the problems to publish; logged when the value is new.
func (c *Controller) parseConfig(data []byte, changed bool) (config.Dynamic, []string) {
	dyn, problems := config.ParseDynamicOver(data, c.dyn)
	if len(problems) == 0 {
		return dyn, nil
	}
	if changed {
		c.logger.Warn("rejected values in /config; the values in effect stay for them", "problems", problems.Error())
	}
	out := make([]string, len(problems))
	for i, p := range problems {
		out[i] = "/config: " + p.String()
	}
	return dyn, out
}

// effective is the configuration in effect: the dynamic one merged with
// the member's own (config.Merge decides which wins).
func (c *Controller) effective() config.Effective {
	return config.Merge(c.dyn, c.localSettings().Config)
}

// haConfig converts the configuration in effect into the decision's.
func (c *Controller) haConfig() ha.Config {
	local := c.localSettings()
	e := config.Merge(c.dyn, local.Config)
	d, l := e.Dynamic, e.Local.PostgreSQL
	return ha.Config{
		TTL:                                    d.TTL.Duration(),
		LoopWait:                               d.LoopWait.Duration(),
		RetryTimeout:                           d.RetryTimeout.Duration(),
		MaximumLagOnFailover:                   int64(d.MaximumLagOnFailover),
		PrimaryStartTimeout:                    d.PrimaryStartTimeout.Duration(),
		CheckTimeline:                          d.CheckTimeline,
		Paused:                                 d.Pause,
		UseSlots:                               e.PostgreSQL.UseSlots,
		UsePgRewind:                            e.PostgreSQL.UsePgRewind,
		RemoveDataDirectoryOnRewindFailure:     l.RemoveDataDirectoryOnRewindFailure,
		RemoveDataDirectoryOnDivergedTimelines: l.RemoveDataDirectoryOnDivergedTimelines,
		Tags:                                   local.Tags,
		FailsafeMode:                           d.FailsafeMode,
		PermanentSlots:                         permanentSlots(d),
		IgnoreSlots:                            ignoreSlots(d.IgnoreSlots),
		KeepMemberSlots:                        d.MemberSlotsTTL > 0,
		SyncMode:                               syncMode(d.SynchronousMode),
		SyncStrict:                             d.SynchronousStrict,
		SyncNodeCount:                          d.SynchronousNodeCount,
		MaximumLagOnSyncNode:                   int64(d.MaximumLagOnSyncnode),
		CloneWithoutLeader:                     c.opts.CloneWithoutLeader,
		StandbyCluster:                         d.StandbyCluster != nil,
	}
}

// syncMode maps the configured synchronous_mode onto the decision's.
func syncMode(m config.SyncMode) string {
	switch m {
	case config.SyncOn:
		return ha.SyncOn
	case config.SyncQuorum:
		return ha.SyncQuorum
	}
	return ha.SyncOff
}

func permanentSlots(d config.Dynamic) []cluster.SlotSpec {
	var out []cluster.SlotSpec
	for _, s := range d.PermanentSlots() {
		out = append(out, cluster.SlotSpec{Name: s.Name, Type: string(s.Type), Database: s.Database, Plugin: s.Plugin})
	}
	return out
}

func ignoreSlots(list []config.IgnoreSlot) []cluster.SlotMatcher {
	var out []cluster.SlotMatcher
	for _, m := range list {
		out = append(out, cluster.SlotMatcher{Name: m.Name, Type: m.Type, Database: m.Database, Plugin: m.Plugin})
	}
	return out
}
