//go:build integration

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-ha/custos/testkit/poll"
)

// Synchronous replication (on, strict and quorum), in the spirit of Patroni's
// basic_replication and priority_sync features.

// syncWait is how long a commit may wait for a synchronous standby before
// the tests cancel it: PostgreSQL then ends the wait with a warning saying
// so, which is what they look for. A commit that does not wait is done
// long before.
const syncWait = 3 * time.Second

// syncCancelled is the warning PostgreSQL sends when a commit's wait for
// the synchronous standbys is cancelled.
const syncCancelled = "canceling wait for synchronous replication"

// step runs one named part of a scenario as a subtest and stops the
// scenario at the first part that fails.
func step(t *testing.T, name string, f func(t *testing.T)) {
	t.Helper()
	if !t.Run(name, f) {
		t.FailNow()
	}
}

// TestSyncReplication: synchronous_mode on. The primary names a
// synchronous standby (synchronous_standby_names, pg_stat_replication,
// /sync, the REST API agree); a stuck one is swapped out past
// maximum_lag_on_syncnode; synchronous_node_count = 2 makes both replicas
// synchronous; with every replica gone, writes go on without
// synchronous_mode_strict and wait with it.
func TestSyncReplication(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{noStart: true, bootstrapDCS: []string{"synchronous_mode = true"}})
	primary := c.startLeaderFirst(t)
	c.guardSinglePrimary(t)
	primary.exec(t, "create table e2e (id serial primary key, note text)")
	var syncName string

	step(t, "a synchronous standby", func(t *testing.T) {
		syncName = c.waitSync(t, primary, 1)[0]
		sync := c.member(syncName)
		var async *member
		for _, m := range c.others(primary) {
			if m != sync {
				async = m
			}
		}
		// The REST API says the same, for load balancers.
		for _, probe := range []struct {
			m    *member
			path string
			code int
		}{
			{sync, "/sync", http.StatusOK}, {async, "/sync", http.StatusServiceUnavailable},
			{sync, "/async", http.StatusServiceUnavailable}, {async, "/async", http.StatusOK},
			{primary, "/sync", http.StatusServiceUnavailable},
			{sync, "/read-only-sync", http.StatusOK}, {async, "/read-only-sync", http.StatusServiceUnavailable},
		} {
			if code, body, err := probe.m.get(probe.path); err != nil || code != probe.code {
				t.Errorf("%s: GET %s = %d %v, want %d: %s", probe.m.name, probe.path, code, err, probe.code, body)
			}
		}
		if st := mustStatus(t, sync); !strings.Contains(st.raw, `"sync_standby":true`) {
			t.Errorf("%s: /patroni does not say sync_standby: %s", sync.name, st.raw)
		}
		if st := mustStatus(t, async); strings.Contains(st.raw, `"sync_standby":true`) {
			t.Errorf("%s: /patroni says sync_standby: %s", async.name, st.raw)
		}
		out, err := patronictl(t, c, "list")
		if err != nil {
			t.Fatalf("patronictl list: %v\n%s", err, out)
		}
		if !strings.Contains(out, "| "+syncName+" ") || !strings.Contains(out, "Sync Standby") {
			t.Errorf("patronictl list does not show %s as the sync standby:\n%s", syncName, out)
		}
		// A commit is acknowledged: the synchronous standby is there.
		primary.exec(t, "insert into e2e (note) values ('synchronous')")
		sync.waitRow(t, "synchronous", opTimeout)
	})

	step(t, "a stuck synchronous standby is swapped out", func(t *testing.T) {
		stuck := c.member(syncName)
		var other *member
		for _, m := range c.others(primary) {
			if m != stuck {
				other = m
			}
		}
		primary.patchConfig(t, map[string]any{"maximum_lag_on_syncnode": 1 << 20})
		wr, err := stuck.walReceiver()
		if err != nil {
			t.Fatal(err)
		}
		// The WAL receiver stops taking WAL: the standby's connection and
		// its agent look fine, its flush position stops.
		if err := syscall.Kill(wr.pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("stopping %s's WAL receiver %d: %v", stuck.name, wr.pid, err)
		}
		resumed := false
		resume := func() {
			if !resumed {
				resumed = true
				_ = syscall.Kill(wr.pid, syscall.SIGCONT)
			}
		}
		t.Cleanup(resume)
		// Several MB of WAL in one transaction, past the limit; its commit
		// waits for the stuck standby until the primary swaps it out.
		done := make(chan error, 1)
		go func() {
			_, err := primary.queryWithin(opTimeout, "insert into e2e (note) select 'bulk ' || repeat('x', 500) || g from generate_series(1, 8000) g")
			done <- err
		}()
		var inserted error
		finished := false
		poll.Eventually(t, opTimeout, fmt.Sprintf("%s to replace the stuck %s as the synchronous standby", other.name, stuck.name), func() error {
			if !finished {
				select {
				case inserted = <-done:
					finished = true

					if ssn, err := primary.query("show synchronous_standby_names"); err == nil && len(ssn) == 1 && ssn[0] == stuck.name {
						t.Errorf("the commit returned while synchronous_standby_names still named the stuck %s", stuck.name)
					}
				default:
				}
			}
			s, _, err := c.sync()
			if err != nil {
				return err
			}
			if got := s.standbys(); !slices.Equal(got, []string{other.name}) {
				return fmt.Errorf("/sync lists %v", got)
			}
			return nil
		})

		c.waitSync(t, primary, 1, other.name)
		if !finished {
			select {
			case inserted = <-done:
			case <-time.After(opTimeout):
				t.Fatalf("the bulk insert still waits after %s became the synchronous standby", other.name)
			}
		}
		if inserted != nil {
			t.Fatalf("the bulk insert: %v", inserted)
		}
		resume()
		primary.patchConfig(t, map[string]any{"maximum_lag_on_syncnode": nil})
		c.waitHealthy(t, opTimeout)
		// Caught up again, the former synchronous standby stays
		// asynchronous: the current one is preferred at equal priority.
		primary.exec(t, "insert into e2e (note) values ('after the swap')")
		stuck.waitRow(t, "after the swap", opTimeout)
		c.waitSync(t, primary, 1, other.name)
		syncName = other.name
	})

	step(t, "synchronous_node_count 2", func(t *testing.T) {
		primary.patchConfig(t, map[string]any{"synchronous_node_count": 2})
		var names []string
		for _, m := range c.others(primary) {
			names = append(names, m.name)
		}
		c.waitSync(t, primary, 2, names...)
	})

	// stopReplicas stops the replicas' agents (and so their PostgreSQL).
	stopReplicas := func(t *testing.T) {
		for _, m := range c.others(primary) {
			m.kill(t, agentOnly, syscall.SIGTERM)
		}
		for _, m := range c.others(primary) {
			m.waitExit(t, stopTimeout)
		}
	}
	startReplicas := func(t *testing.T) {
		for _, m := range c.others(primary) {
			m.restart(t)
		}
		if got := c.waitHealthy(t, formTimeout); got != primary {
			t.Fatalf("%s leads now", got.name)
		}
	}

	step(t, "without strict mode writes go on with no standby", func(t *testing.T) {
		stopReplicas(t)
		poll.Eventually(t, opTimeout, "the primary to drop its synchronous standbys", func() error {
			s, ok, err := c.sync()
			if err != nil {
				return err
			}
			if !ok || s.Leader != primary.name || len(s.standbys()) != 0 {
				return fmt.Errorf("/sync %+v", s)
			}
			ssn, err := primary.query("show synchronous_standby_names")
			if err != nil {
				return err
			}
			if len(ssn) != 1 || ssn[0] != "" {
				return fmt.Errorf("synchronous_standby_names %v", ssn)
			}
			return nil
		})

		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		notices, err := primary.execNotices(ctx, "insert into e2e (note) values ('alone')", syncWait)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range notices {
			if strings.Contains(n, syncCancelled) {
				t.Errorf("a commit waited for a synchronous standby without strict mode: %s", n)
			}
		}
		startReplicas(t)
		c.waitSync(t, primary, 2)
	})

	step(t, "strict mode keeps synchronous_standby_names", func(t *testing.T) {
		primary.patchConfig(t, map[string]any{"synchronous_mode_strict": true})
		poll.Eventually(t, opTimeout, "the agents to apply synchronous_mode_strict", func() error {
			a, err := primary.call(http.MethodGet, "/config", nil, "", "")
			if err != nil {
				return err
			}
			if !strings.Contains(a.body, `"synchronous_mode_strict": true`) && !strings.Contains(a.body, `"synchronous_mode_strict":true`) {
				return fmt.Errorf("/config %s", a.body)
			}
			return nil
		})

		before := c.waitSync(t, primary, 2)
		stopReplicas(t)
		// The primary sees its standbys go (their member keys say stopped)
		// and keeps waiting for them.
		for _, m := range c.others(primary) {
			poll.Eventually(t, opTimeout, m.name+"'s member key to say stopped", func() error {
				v, err := c.dcs()
				if err != nil {
					return err
				}
				if st, _ := memberData(t, v, m.name)["state"].(string); st == "running" {
					return fmt.Errorf("%s: state %q", m.name, st)
				}
				return nil
			})

		}
		offset := primary.logSize()
		poll.Eventually(t, opTimeout, "two more HA cycles on the primary", func() error {
			if n := len(primary.cyclesSince(offset)); n < 2 {
				return fmt.Errorf("%d cycles", n)
			}
			return nil
		})

		s, _, err := c.sync()
		if err != nil {
			t.Fatal(err)
		}
		if got := s.standbys(); s.Leader != primary.name || !slices.Equal(got, before) {
			t.Errorf("/sync %+v, want leader %s and standbys %v kept", s, primary.name, before)
		}
		if ssn, err := primary.query("show synchronous_standby_names"); err != nil || len(ssn) != 1 || ssn[0] != renderSSN(before) {
			t.Errorf("synchronous_standby_names %v (%v), want %q kept", ssn, err, renderSSN(before))
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		notices, err := primary.execNotices(ctx, "insert into e2e (note) values ('strict')", syncWait)
		if err != nil {
			t.Fatal(err)
		}
		waited := false
		for _, n := range notices {
			waited = waited || strings.Contains(n, syncCancelled)
		}
		if !waited {
			t.Errorf("the commit did not wait for a synchronous standby in strict mode; notices %q", notices)
		}
		startReplicas(t)
		// The standbys are back: commits are acknowledged again.
		ctx2, cancel2 := context.WithTimeout(context.Background(), opTimeout)
		defer cancel2()
		notices, err = primary.execNotices(ctx2, "insert into e2e (note) values ('strict, standbys back')", opTimeout/2)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range notices {
			if strings.Contains(n, syncCancelled) {
				t.Errorf("a commit still waits with the standbys back: %s", n)
			}
		}
		c.waitSync(t, primary, 2)
	})
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// TestPrioritySync: sync_priority 0 never makes a standby synchronous, even
// with room for two; a higher sync_priority (set live) takes the place of
// the current synchronous standby; and when the primary is killed, only the
// synchronous standby is promoted, though the other replica has the higher
// failover_priority and the same WAL.
func TestPrioritySync(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{noStart: true, bootstrapDCS: []string{"synchronous_mode = true"}, edit: func(m *member) {
		switch m.name {
		case "node2":
			m.tags = []string{"sync_priority = 0"}
		case "node3":
			m.tags = []string{"failover_priority = 3"}
		}
	}})
	primary := c.startLeaderFirst(t)
	c.guardSinglePrimary(t)
	node2, node3 := c.member("node2"), c.member("node3")

	step(t, "sync_priority 0 is never synchronous", func(t *testing.T) {
		c.waitSync(t, primary, 1, node3.name)
		primary.patchConfig(t, map[string]any{"synchronous_node_count": 2})
		// Room for two, and still only node3: the count is a maximum.
		offset := primary.logSize()
		poll.Eventually(t, opTimeout, "three HA cycles on the primary with synchronous_node_count 2", func() error {
			if n := len(primary.cyclesSince(offset)); n < 3 {
				return fmt.Errorf("%d cycles", n)
			}
			return nil
		})

		c.waitSync(t, primary, 1, node3.name)
		if rep, err := primary.replication(); err != nil || rep[node2.name].syncState != "async" {
			t.Errorf("pg_stat_replication of %s: %+v (%v), want async", node2.name, rep[node2.name], err)
		}
		primary.patchConfig(t, map[string]any{"synchronous_node_count": nil})
	})

	step(t, "a higher sync_priority is preferred", func(t *testing.T) {
		node2.setTags(t, map[string]any{"sync_priority": 5}, "sync_priority = 5")
		c.waitSync(t, primary, 1, node2.name)
	})

	step(t, "only the synchronous standby is promoted", func(t *testing.T) {
		primary.exec(t, "create table e2e (id serial primary key, note text)")
		primary.exec(t, "insert into e2e (note) values ('before the kill')")
		node3.waitRow(t, "before the kill", opTimeout)
		c.sameWAL(t)
		next := c.killPrimary(t, primary)
		if next != node2 {
			t.Fatalf("%s was promoted; only the synchronous standby %s may be", next.name, node2.name)
		}
		next.waitRow(t, "before the kill", opTimeout)
		// node3 is its synchronous standby now.
		c.waitSync(t, next, 1, node3.name)
		primary.restart(t)
		c.waitHealthy(t, formTimeout)
	})
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// TestQuorumCommit, in the spirit of Patroni's quorum_commit feature:
// synchronous_mode = "quorum" with synchronous_node_count 1 on three
// members. The primary waits for ANY 1 of both replicas, /sync names both
// as voters with quorum 1 in Patroni's format, and the REST API says
// quorum. The primary's agent and postmaster are SIGKILLed while a client
// commits: a voter takes over with every acknowledged commit, and once the
// former primary is back the quorum settles over the new pair. Then
// synchronous_node_count 2 waits for both (ANY 2, quorum 0), and a member
// tagged nosync leaves synchronous_standby_names and the voters.
func TestQuorumCommit(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{
		dcs:          newEtcdDCS(t),
		timings:      &timings{ttl: 6, loopWait: 1, retryTimeout: 2},
		bootstrapDCS: []string{`synchronous_mode = "quorum"`, "synchronous_node_count = 1"},
	})
	primary := c.waitHealthy(t, formTimeout)
	c.guardSinglePrimary(t)

	step(t, "ANY 1 of both replicas", func(t *testing.T) {
		c.waitQuorum(t, primary, 1, 1, c.others(primary)...)
		for _, r := range c.others(primary) {
			for _, probe := range []struct {
				path string
				code int
			}{
				{"/quorum", http.StatusOK}, {"/read-only-quorum", http.StatusOK},
				{"/async", http.StatusServiceUnavailable}, {"/replica", http.StatusOK},
			} {
				if code, body, err := r.get(probe.path); err != nil || code != probe.code {
					t.Errorf("%s: GET %s = %d %v, want %d: %s", r.name, probe.path, code, err, probe.code, body)
				}
			}
		}
		if code, body, err := primary.get("/quorum"); err != nil || code != http.StatusServiceUnavailable {
			t.Errorf("%s: GET /quorum = %d %v, want 503: %s", primary.name, code, err, body)
		}
	})

	primary.exec(t, "create table acks (id bigint primary key)")
	w := startWriter(c, 0)
	defer w.stop()
	step(t, "a voter takes over with every acknowledged commit", func(t *testing.T) {
		voters := c.others(primary)
		from := w.ackedCount()
		poll.Eventually(t, opTimeout, fmt.Sprintf("%d commits acknowledged", ackedBeforeKill), func() error {
			if n := w.ackedCount() - from; n < ackedBeforeKill {
				return fmt.Errorf("%d acknowledged; last error %v", n, w.lastError())
			}
			return nil
		})

		old := primary
		next := c.killPrimary(t, old)
		if !slices.Contains(voters, next) {
			t.Fatalf("%s was promoted; it is no voter", next.name)
		}
		acked := w.snapshot()
		missing, err := missingOn(next, acked)
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) > 0 {
			t.Errorf("%d of %d acknowledged commits are not on %s, e.g. %v", len(missing), len(acked), next.name, missing[:min(len(missing), 10)])
		}
		t.Logf("%s took over with all %d acknowledged commits", next.name, len(acked))
		old.restart(t)
		if got := c.waitHealthy(t, formTimeout); got != next {
			t.Fatalf("%s leads, not %s", got.name, next.name)
		}
		primary = next
		c.waitQuorum(t, primary, 1, 1, c.others(primary)...)
	})

	step(t, "synchronous_node_count 2", func(t *testing.T) {
		primary.patchConfig(t, map[string]any{"synchronous_node_count": 2})
		c.waitQuorum(t, primary, 2, 0, c.others(primary)...)
	})

	step(t, "a nosync member leaves the voters", func(t *testing.T) {
		replicas := c.others(primary)
		replicas[0].setTags(t, map[string]any{"nosync": true}, "nosync = true")
		c.waitQuorum(t, primary, 1, 0, replicas[1])
		replicas[0].setTags(t, map[string]any{})
		c.waitQuorum(t, primary, 2, 0, replicas...)
	})

	w.stop()
	acked := w.snapshot()
	missing, err := missingOn(primary, acked)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("quorum commit: acknowledged %d, present %d, lost %d", len(acked), len(acked)-len(missing), len(missing))
	if len(missing) > 0 {
		t.Errorf("%d acknowledged commits lost", len(missing))
	}
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// waitQuorum waits until primary runs quorum commit over standbys: /sync
// is Patroni's {"leader":...,"quorum":quorum,"sync_standby":"a,b"} byte for
// byte, synchronous_standby_names is ANY numsync (standbys), and
// pg_stat_replication shows each streaming as a quorum standby.
func (c *testCluster) waitQuorum(t testing.TB, primary *member, numsync, quorum int, standbys ...*member) {
	t.Helper()
	var names []string
	for _, m := range standbys {
		names = append(names, m.name)
	}
	slices.Sort(names)
	wantSync := fmt.Sprintf(`{"leader":%q,"quorum":%d,"sync_standby":%q}`, primary.name, quorum, strings.Join(names, ","))
	wantSSN := fmt.Sprintf("ANY %d (%s)", numsync, strings.Join(names, ","))
	poll.Eventually(t, opTimeout, fmt.Sprintf("%s to run quorum commit %s with /sync %s", primary.name, wantSSN, wantSync), func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		if kv := v.kv["sync"]; kv == nil || kv.Value != wantSync {
			return fmt.Errorf("/sync %+v", kv)
		}
		ssn, err := primary.query("show synchronous_standby_names")
		if err != nil {
			return err
		}
		if len(ssn) != 1 || ssn[0] != wantSSN {
			return fmt.Errorf("synchronous_standby_names %q", ssn)
		}
		rep, err := primary.replication()
		if err != nil {
			return err
		}
		for _, name := range names {
			if r := rep[name]; r.state != "streaming" || r.syncState != "quorum" {
				return fmt.Errorf("pg_stat_replication of %s: %+v", name, r)
			}
		}
		return nil
	})

}
