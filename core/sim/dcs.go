package sim

import (
	"slices"
	"strconv"
	"time"

	"github.com/custos-ha/custos/core/cluster"
)

// dynamic is the simulated /config: the settings the operator changes.
type dynamic struct {
	Paused       bool
	SyncMode     string
	SyncStrict   bool
	FailsafeMode bool
}

type lease struct {
	name    string
	ver     int64
	expires time.Time
}

type memberKey struct {
	m       cluster.Member
	ver     int64
	expires time.Time
}

// store is the simulated DCS: the keys of one cluster with a revision
// counter, create-only and compare-and-set writes, and keys that expire
// (the leader key and the member keys live ttl after their last write).
type store struct {
	rev int64

	initialize *string
	initVer    int64
	config     *dynamic
	configVer  int64
	leader     *lease
	members    map[string]*memberKey
	failover   *cluster.Failover
	failVer    int64
	sync       *cluster.SyncState
	syncVer    int64
	history    cluster.History
	hasHistory bool
	status     cluster.Status
	failsafe   cluster.Failsafe
}

func newStore() *store { return &store{members: map[string]*memberKey{}} }

func (s *store) next() int64 {
	s.rev++
	return s.rev
}

func ver(v int64) string { return strconv.FormatInt(v, 10) }

// watched sums up the keys whose changes wake the members' loops (the
// leader key, /failover, /config, /initialize, /sync): it changes when
// any of them does.
func (s *store) watched() [5]int64 {
	var v [5]int64
	if s.leader != nil {
		v[0] = s.leader.ver
	}
	if s.failover != nil {
		v[1] = s.failVer
	}
	if s.config != nil {
		v[2] = s.configVer
	}
	if s.initialize != nil {
		v[3] = s.initVer
	}
	if s.sync != nil {
		v[4] = s.syncVer
	}
	return v
}

// expire deletes the keys whose time ran out; it reports whether the
// leader key did.
func (s *store) expire(now time.Time) bool {
	changed := false
	if s.leader != nil && !now.Before(s.leader.expires) {
		s.leader = nil
		s.next()
		changed = true
	}
	for name, m := range s.members {
		if !now.Before(m.expires) {
			delete(s.members, name)
			s.next()
		}
	}
	return changed
}

// read is what a member reads: a cluster.Cluster as of now.
func (s *store) read() *cluster.Cluster {
	c := &cluster.Cluster{
		History:    append(cluster.History(nil), s.history...),
		HasHistory: s.hasHistory,
		Status:     s.status,
	}
	if s.initialize != nil {
		v := *s.initialize
		c.Initialize, c.InitializeVersion = &v, ver(s.initVer)
	}
	if s.config != nil {
		c.Config = &cluster.Raw{Data: []byte("{}"), Version: ver(s.configVer)}
	}
	names := make([]string, 0, len(s.members))
	for n := range s.members {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		m := s.members[n].m
		m.Name, m.Version = n, ver(s.members[n].ver)
		c.Members = append(c.Members, m)
	}
	if s.leader != nil {
		c.Leader = &cluster.Leader{Name: s.leader.name, Version: ver(s.leader.ver)}
		if m := c.Member(s.leader.name); m != nil {
			c.Leader.Member = *m
		}
	}
	if s.failover != nil {
		f := *s.failover
		f.Version = ver(s.failVer)
		c.Failover = &f
	}
	if s.sync != nil {
		y := *s.sync
		y.SyncStandby = append([]string(nil), y.SyncStandby...)
		y.Version = ver(s.syncVer)
		c.Sync = &y
	}
	if s.failsafe != nil {
		c.Failsafe = cluster.Failsafe{}
		for k, v := range s.failsafe {
			c.Failsafe[k] = v
		}
	}
	return c
}

// matches: a compare-and-set on version v (as read) finds the key at cur;
// an empty v is create-only.
func matches(v string, cur int64, exists bool) bool {
	if v == "" {
		return !exists
	}
	return exists && v == ver(cur)
}
