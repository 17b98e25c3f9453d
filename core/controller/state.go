package controller

import (
	"slices"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/ha"
)

// State is what the controller publishes after each cycle for the REST API
// and metrics. A published State is never modified.
type State struct {
	// At is when the cycle ended.
	At     time.Time
	Reason string
	// Error is the failure of the cycle's actions, if any.
	Error string
	// Member is the member value as published (or as it would be, when the
	// DCS is down).
	Member cluster.Member
	// Cluster is the last DCS view (nil before the first read).
	Cluster      *cluster.Cluster
	DCSReachable bool
	DCSLastSeen  time.Time
	Observation  Observation
	// DCSProblems are the malformed values of the last DCS read and the
	// values of /config rejected; each names its key and how it was read
	// (the safe way, see cluster.FromDCS and config.ParseDynamicOver).
	DCSProblems []string
	// Dynamic is the dynamic configuration in effect.
	Dynamic config.Dynamic
	// HoldsLeader: this member held the leader key at the last read.
	HoldsLeader bool
	// LeaderExpiry is when the leader key held by this member expires
	// without another renewal; zero when it does not hold it.
	LeaderExpiry time.Time
	Busy         ha.Kind
	// FailsafeActive: this primary runs on in failsafe mode with the DCS
	// down, or a primary reached this replica with POST /failsafe, within
	// the last ttl (/patroni failsafe_mode_is_active).
	FailsafeActive bool
}

func (c *Controller) publish(in ha.Input, dec ha.Decision, obs Observation, m cluster.Member, failed error) {
	prev := c.state.Load()
	s := &State{
		At:           c.now(),
		Reason:       dec.Reason,
		Member:       m,
		Cluster:      in.Cluster,
		DCSReachable: in.Cluster != nil,
		DCSLastSeen:  c.dcsLastSeen,
		Observation:  obs,
		Dynamic:      c.dyn,
		HoldsLeader:  in.Cluster != nil && in.Cluster.LeaderName() == c.opts.Name,
		DCSProblems:  append(slices.Clip(c.dcsProblems), c.configProblems...),
	}
	s.FailsafeActive = c.failsafeActive(s.At)
	if in.Cluster == nil && prev != nil {
		// Keep serving the last view, marked unreachable.
		s.Cluster = prev.Cluster
	}
	if failed != nil {
		s.Error = failed.Error()
	}
	if c.busy != nil {
		s.Busy = c.busy.kind
	}
	s.LeaderExpiry = c.leaseExpiry
	if kept := c.mem.FailsafeKept; !kept.IsZero() && obs.HA.Primary() {
		// A primary kept by failsafe mode is the leader (Patroni answers
		// 200 on /primary then): for a ttl after the members last
		// acknowledged it.
		if e := kept.Add(c.dyn.TTL.Duration()); e.After(s.LeaderExpiry) {
			s.LeaderExpiry = e
		}
	}
	c.state.Store(s)
	if c.opts.Publish != nil {
		c.opts.Publish(s)
	}
}
