package ha

import (
	"sort"

	"github.com/custos-ha/custos/core/cluster"
)

// leaderSlots is the primary's slot plan: a physical slot
// for every member streaming from it (not nostream, not cascading from
// another replica: a cascading member whose upstream is not a running
// replica falls back to the leader, and its slot with it) and every
// permanent slot; everything else not ignored is dropped.
func (d *decider) leaderSlots() *cluster.SlotPlan {
	plan := &cluster.SlotPlan{Permanent: d.in.Config.PermanentSlots, Ignore: d.in.Config.IgnoreSlots}
	if d.in.Config.UseSlots {
		for _, m := range d.c.Members {
			if m.Name == d.in.Name || m.Tags.NoStream {
				continue
			}
			if d.upstreamOf(d.in.Name, m.Name, m.Tags.ReplicateFrom) != d.in.Name {
				continue
			}
			plan.Members = append(plan.Members, cluster.SlotName(m.Name))
		}
		sort.Strings(plan.Members)
	}
	return plan
}

// replicaSlots is a replica's slot plan: slots for the members cascading
// from it; with KeepMemberSlots, when it may fail over, slots for every
// other member too; the permanent physical slots, and the permanent
// logical ones when it keeps them (copied from the leader); all advanced
// to the positions the leader publishes in /status.
func (d *decider) replicaSlots() *cluster.SlotPlan {
	cfg := d.in.Config
	plan := &cluster.SlotPlan{Ignore: cfg.IgnoreSlots, Advance: map[string]int64{}}
	logical := d.keepsLogicalSlots()
	for _, s := range cfg.PermanentSlots {
		switch {
		case s.Type == cluster.SlotPhysical || s.Type == "":
			plan.Permanent = append(plan.Permanent, s)
		case s.Type == cluster.SlotLogical && logical:
			plan.Permanent = append(plan.Permanent, s)
			if plan.CopyFrom == nil {
				m := d.c.Leader.Member
				plan.CopyFrom = &m
			}
		}
	}
	if cfg.UseSlots {
		keepAll := cfg.KeepMemberSlots && cfg.Tags.CanFailover()
		for _, m := range d.c.Members {
			if m.Name == d.in.Name || m.Tags.NoStream {
				continue
			}
			if m.Tags.ReplicateFrom == d.in.Name || keepAll {
				plan.Members = append(plan.Members, cluster.SlotName(m.Name))
			}
		}
		sort.Strings(plan.Members)
	}
	for name, lsn := range d.c.Status.Slots {
		plan.Advance[name] = lsn
	}
	return plan
}

// minLogicalCopyVersion is the first PostgreSQL version that advances a
// logical slot on a standby (pg_replication_slot_advance, 11).
const minLogicalCopyVersion = 110000

// keepsLogicalSlots: a replica keeps the permanent logical slots, copied
// from the leader, when it streams from the leader through its own slot
// there (use_slots, not nostream, not cascading), so that its
// hot_standby_feedback holds the catalog rows the slots need on the
// primary (Patroni's rule).
func (d *decider) keepsLogicalSlots() bool {
	cfg := d.in.Config
	leader := d.c.LeaderName()
	switch {
	case !cfg.UseSlots || cfg.Tags.NoStream || leader == "" || leader == d.in.Name:
		return false
	case d.pg.ServerVersion != 0 && d.pg.ServerVersion < minLogicalCopyVersion:
		return false
	}
	return d.upstream() == leader
}
