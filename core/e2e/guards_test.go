//go:build integration

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-ha/custos/testkit/poll"
)

// Failover guards (nofailover, failover_priority, maximum_lag_on_failover),
// in the spirit of Patroni's priority_failover feature: who may win the
// leader race.

// raceHold is how long, after the leader's lease can have expired, the
// tests that expect no failover watch for one: several loop_waits in which
// every member races again.
func (c *testCluster) raceHold() time.Duration {
	tm := c.timings()
	return tm.ttlDuration() + 6*tm.loopWaitDuration()
}

// TestPriorityFailover: at equal WAL the replica with the higher
// failover_priority wins the leader race; members with failover_priority 0
// or nofailover never take the leader key, so with only them left the
// cluster stays without a primary until the eligible member is back.
func TestPriorityFailover(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{dcs: newEtcdDCS(t), timings: shortTimings, noStart: true, edit: func(m *member) {
		if m.name == "node3" {
			m.tags = []string{"failover_priority = 2"}
		}
	}})
	primary := c.startLeaderFirst(t)
	c.guardSinglePrimary(t)
	node1, node2, node3 := primary, c.member("node2"), c.member("node3")

	step(t, "higher failover_priority wins at equal WAL", func(t *testing.T) {
		c.sameWAL(t)
		if next := c.killPrimary(t, node1); next != node3 {
			t.Fatalf("%s won the race; %s has the higher failover_priority at the same WAL position", next.name, node3.name)
		}
		node1.restart(t)
		if got := c.waitHealthy(t, formTimeout); got != node3 {
			t.Fatalf("%s leads", got.name)
		}
	})

	step(t, "failover_priority 0 and nofailover never lead", func(t *testing.T) {
		node1.setTags(t, map[string]any{"nofailover": true}, "nofailover = true")
		node2.setTags(t, map[string]any{"failover_priority": 0}, "failover_priority = 0")
		c.sameWAL(t)
		node3.kill(t, agentAndPostmaster, syscall.SIGKILL)
		c.assertNoFailover(t, node3)
		// The only eligible member comes back and leads again.
		node3.restart(t)
		if got := c.waitHealthy(t, formTimeout); got != node3 {
			t.Fatalf("%s leads; only %s may", got.name, node3.name)
		}
	})
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// assertNoFailover checks, for raceHold past the lease expiry of the
// killed leader old, that nobody takes the leader key and that no
// PostgreSQL accepts writes.
func (c *testCluster) assertNoFailover(t testing.TB, old *member) {
	t.Helper()
	poll.Eventually(t, failoverTimeout, old.name+"'s leader key to expire", func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		if l := v.leader(); l != "" {
			if l != old.name {
				t.Fatalf("%s took the leader key", l)
			}
			return fmt.Errorf("leader key %q", l)
		}
		return nil
	})

	holdsFor(t, "no leader", c.raceHold(), func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		if l := v.leader(); l != "" {
			return fmt.Errorf("%s took the leader key", l)
		}
		for _, m := range c.m {
			if ok, err := m.writable(); err == nil && ok {
				return fmt.Errorf("%s accepts writes", m.name)
			}
		}
		return nil
	})
}

// TestFailoverLagGuard: maximum_lag_on_failover. The only replica is more
// than the limit behind the WAL position the leader last published when
// the primary dies, so it does not take over: a failover would lose those
// commits. The old primary, back, leads again and the replica catches up.
func TestFailoverLagGuard(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{members: 2, dcs: newEtcdDCS(t), timings: shortTimings})
	primary := c.waitHealthy(t, formTimeout)
	replica := c.others(primary)[0]
	c.guardSinglePrimary(t)
	primary.exec(t, "create table e2e (id serial primary key, note text)")
	wr, err := replica.walReceiver()
	if err != nil {
		t.Fatal(err)
	}
	// The WAL receiver stops reading: the replica falls behind while its
	// agent and PostgreSQL look fine. It stays stopped until the test is
	// done with the race, so that WAL still in the socket's buffers cannot
	// reach the replica after the primary died.
	if err := syscall.Kill(wr.pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("stopping %s's WAL receiver %d: %v", replica.name, wr.pid, err)
	}
	stopped := true
	resume := func() {
		if stopped {
			stopped = false
			_ = syscall.Kill(wr.pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	// 16 MB of WAL: far past the 1 MB limit and past what socket buffers
	// hold.
	primary.exec(t, "insert into e2e (note) select 'bulk ' || repeat('x', 1000) || g from generate_series(1, 16000) g")
	var lag int64
	poll.Eventually(t, opTimeout, "the leader to publish a WAL position past the replica's by more than maximum_lag_on_failover", func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		var st struct {
			Optime int64 `json:"optime"`
		}
		if kv := v.kv["status"]; kv == nil || json.Unmarshal([]byte(kv.Value), &st) != nil {
			return fmt.Errorf("no /status")
		}
		rs, err := replica.query("select (pg_last_wal_receive_lsn() - '0/0'::pg_lsn)::bigint")
		if err != nil || len(rs) != 1 {
			return fmt.Errorf("replica position %v %v", rs, err)
		}
		var pos int64
		fmt.Sscan(rs[0], &pos)
		if lag = st.Optime - pos; lag <= 2<<20 {
			return fmt.Errorf("lag %d", lag)
		}
		return nil
	})

	t.Logf("%s is %d bytes behind the published position", replica.name, lag)
	offset := replica.logSize()
	primary.kill(t, agentAndPostmaster, syscall.SIGKILL)
	c.assertNoFailover(t, primary)
	// It stayed out of the race because of its lag, not for some other
	// reason.
	var said []string
	guarded := false
	for _, cy := range replica.cyclesSince(offset) {
		said = append(said, cy.reason)
		guarded = guarded || strings.Contains(cy.reason, "maximum_lag_on_failover")
	}
	if !guarded {
		t.Errorf("%s never said its lag kept it from taking over:\n%s", replica.name, strings.Join(said, "\n"))
	}
	resume()
	primary.restart(t)
	if got := c.waitHealthy(t, formTimeout); got != primary {
		t.Fatalf("%s leads", got.name)
	}
	poll.Eventually(t, opTimeout, replica.name+" to catch up", func() error {
		v, err := replica.query("select count(*) from e2e")
		if err != nil {
			return err
		}
		if len(v) != 1 || v[0] != "16000" {
			return fmt.Errorf("%v rows", v)
		}
		return nil
	})

	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}
