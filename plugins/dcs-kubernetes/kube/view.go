package kube

import (
	"sort"
	"strings"
	"time"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// snapshot is everything one read saw of a cluster.
type snapshot struct {
	// objects are the cluster's ConfigMaps or Endpoints by name.
	objects map[string]object
	// members are the objects holding member records (Pods, or member
	// ConfigMaps), by member name.
	members map[string]object
}

// viewer turns snapshots into the contract's Cluster, judging the leader
// and member records' liveness on the local clock.
type viewer struct {
	layout layout
	obs    *observations
}

// view builds the Cluster of a snapshot at now with this member's ttl (the
// fallback for a leader record without one, and the member records' TTL).
// next is the earliest time a record alive now expires, zero if none.
func (v *viewer) view(s snapshot, ttl time.Duration, now time.Time) (c *dcs.Cluster, next time.Time) {
	c = &dcs.Cluster{}
	earliest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for _, k := range dcs.Keys {
		name := v.layout.objectOf(k)
		o, exists := s.objects[name]
		data, ok := codecOf(k).decode(o.annotations, exists)
		if !ok {
			continue
		}
		version := o.rv
		if !ownsObject(k) {
			version = contentVersion(data)
		}
		c.Put(k, &dcs.Value{Data: data, Version: version})
	}

	if o, ok := s.objects[v.layout.leaderName()]; ok {
		record := leaderRecord(o.annotations)
		if record == "" {
			v.obs.forget(leaderID)
		} else {
			since := v.obs.observe(leaderID, o.rv, record, now)
			live, until := alive(since, recordTTL(o.annotations, ttl), now)
			if holder := o.annotations[annLeader]; holder != "" && live {
				c.Leader = &dcs.Leader{Name: holder, Version: o.rv}
				earliest(until)
			}
		}
	} else {
		v.obs.forget(leaderID)
	}

	names := make([]string, 0, len(s.members))
	for name := range s.members {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		o := s.members[name]
		data, ok := o.annotations[annStatus]
		if !ok {
			continue // a Pod of the cluster whose agent has not written yet
		}
		if _, renewed := o.annotations[annMemberRenewTime]; renewed {
			since := v.obs.observe(memberIDPrefix+name, o.rv, memberRecord(o.annotations), now)
			live, until := alive(since, ttl, now)
			if !live {
				continue
			}
			earliest(until)
		}
		// A record without renewTime was written by Patroni, which touches
		// its Pod only when the data changes: it lives as long as the Pod,
		// as Patroni reads it.
		c.Members = append(c.Members, dcs.Member{Name: name, Data: []byte(data), Version: o.rv})
	}
	v.obs.retain(memberIDPrefix, func(id string) bool {
		_, ok := s.members[strings.TrimPrefix(id, memberIDPrefix)]
		return ok
	})
	return c, next
}

// diff returns the events that lead from one view of a cluster to the next.
// A renewal that changes nothing but the liveness timestamps is no event;
// a leader or member record that expired is a delete.
func diff(prev, cur *dcs.Cluster) []dcs.Event {
	var events []dcs.Event
	switch {
	case cur.Leader == nil && prev.Leader != nil:
		events = append(events, dcs.Event{Type: dcs.EventDelete, Path: dcs.LeaderPath, Version: prev.Leader.Version})
	case cur.Leader != nil && (prev.Leader == nil || prev.Leader.Name != cur.Leader.Name):
		events = append(events, dcs.Event{Type: dcs.EventPut, Path: dcs.LeaderPath, Version: cur.Leader.Version})
	}
	for _, k := range dcs.Keys {
		p, c := prev.Get(k), cur.Get(k)
		switch {
		case c == nil && p != nil:
			events = append(events, dcs.Event{Type: dcs.EventDelete, Path: string(k), Version: p.Version})
		case c != nil && (p == nil || p.Version != c.Version):
			events = append(events, dcs.Event{Type: dcs.EventPut, Path: string(k), Version: c.Version})
		}
	}
	for _, m := range cur.Members {
		if p := prev.Member(m.Name); p == nil || string(p.Data) != string(m.Data) {
			events = append(events, dcs.Event{Type: dcs.EventPut, Path: dcs.MembersPath + m.Name, Version: m.Version})
		}
	}
	for _, m := range prev.Members {
		if cur.Member(m.Name) == nil {
			events = append(events, dcs.Event{Type: dcs.EventDelete, Path: dcs.MembersPath + m.Name, Version: m.Version})
		}
	}
	return events
}
