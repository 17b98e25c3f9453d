package main

import (
	"fmt"
	"strings"

	"github.com/custos-ha/custos/core/cluster"
)

// replicationStreaming is the replication_state of a replica that streams
// from its upstream.
const replicationStreaming = "streaming"

// clusterHealth tells whether the demo cluster is what the demo promises:
// initialized, one leader running as primary and every other of the
// members expected running and streaming. The text says what is still
// missing, or sums up the healthy cluster.
func clusterHealth(c *cluster.Cluster, members int) (bool, string) {
	switch {
	case c.Initialize == nil:
		return false, "no member has started the bootstrap yet"
	case *c.Initialize == "":
		return false, "bootstrapping the cluster (initdb)"
	case c.LeaderName() == "":
		return false, "no leader yet"
	}
	leader := c.LeaderName()
	var waiting []string
	if len(c.Members) < members {
		waiting = append(waiting, fmt.Sprintf("%d of %d members registered", len(c.Members), members))
	}
	if c.Member(leader) == nil {
		waiting = append(waiting, leader+" holds the leader key but published no state")
	}
	streaming := 0
	for _, m := range c.Members {
		if m.Name == leader {
			if !cluster.IsPrimaryRole(m.Role) || !m.IsRunning() {
				waiting = append(waiting, fmt.Sprintf("leader %s is %s", m.Name, describeMember(m)))
			}
			continue
		}
		if m.IsRunning() && m.ReplicationState == replicationStreaming {
			streaming++
			continue
		}
		waiting = append(waiting, fmt.Sprintf("%s is %s", m.Name, describeMember(m)))
	}
	if len(waiting) > 0 {
		return false, strings.Join(waiting, "; ")
	}
	return true, fmt.Sprintf("leader %s, %d streaming replica(s)", leader, streaming)
}

// describeMember is a member's published state in a few words.
func describeMember(m cluster.Member) string {
	var parts []string
	if m.Role != "" {
		parts = append(parts, m.Role)
	}
	if m.State != "" {
		parts = append(parts, m.State)
	}
	if m.ReplicationState != "" {
		parts = append(parts, m.ReplicationState)
	}
	if len(parts) == 0 {
		return "without a published state"
	}
	return strings.Join(parts, ", ")
}
