//go:build integration

package e2e

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-ha/custos/testkit/poll"
)

// TestKillPrimary: SIGKILL of the primary's agent and postmaster. A replica
// takes over once the leader lease expires, woken by the DCS watch rather
// than its next loop; the old primary, started again, rewinds and streams
// from the new primary on the new timeline.
func TestKillPrimary(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{})
	old := c.waitHealthy(t, formTimeout)
	c.guardSinglePrimary(t)
	old.exec(t, "create table e2e (id serial primary key, note text)")
	old.exec(t, "insert into e2e (note) values ('before the crash')")
	for _, r := range c.others(old) {
		r.waitRow(t, "before the crash", formTimeout)
	}
	oldTL := mustStatus(t, old).Timeline
	offsets := map[string]int64{}
	for _, r := range c.others(old) {
		offsets[r.name] = r.logSize()
	}
	before := c.mustDCS(t)
	w := c.watchLeader(t, before.rev+1, nil)

	old.kill(t, agentAndPostmaster, syscall.SIGKILL)
	killedAt := time.Now()

	next := c.waitWritableLeader(t, old)
	t.Logf("%s promoted %v after the kill", next.name, time.Since(killedAt).Round(time.Millisecond))

	// The key was not released: it expired with the old primary's lease.
	if ttl, err := leaseTTL(before.kv["leader"].Lease); err != nil || ttl >= 0 {
		t.Errorf("the old leader lease still lives (ttl %v, %v): the key went away some other way", ttl, err)
	}
	// The winning cycle: it acquired the key, and the watch woke it.
	expiredAt := w.firstDelete()
	if expiredAt.IsZero() {
		t.Errorf("the leader key never went away: %+v", w.snapshot())
	}
	if cy := assertWatchWon(t, next, offsets[next.name], expiredAt); cy.line != "" && !cy.has("promote") {
		t.Errorf("%s: the cycle that took the leader key did not promote:\n%s", next.name, cy.line)
	}

	next.exec(t, "insert into e2e (note) values ('after the failover')")
	// /patroni answers from the last cycle: wait for the promotion there.
	newTL := 0
	poll.Eventually(t, formTimeout, next.name+" to report a primary on a new timeline", func() error {
		st, err := next.status()
		if err != nil {
			return err
		}
		if st.Role != "primary" || st.Timeline <= oldTL {
			return fmt.Errorf("role %q timeline %d, the old primary's was %d", st.Role, st.Timeline, oldTL)
		}
		newTL = st.Timeline
		return nil
	})

	c.waitHealthy(t, failoverTimeout) // the third member follows the new primary

	// The old primary comes back as a replica of the new one.
	oldOffset := old.logSize()
	old.restart(t)
	poll.Eventually(t, formTimeout, old.name+" to stream from "+next.name+" on the new timeline", func() error {
		st, err := old.status()
		if err != nil {
			return err
		}
		if st.Role != "replica" || st.State != "running" || st.ReplicationState != "streaming" || st.Timeline != newTL {
			return fmt.Errorf("role %q state %q replication %q timeline %d", st.Role, st.State, st.ReplicationState, st.Timeline)
		}
		return nil
	})

	old.waitRow(t, "after the failover", formTimeout)
	rewound := false
	for _, cy := range old.cyclesSince(oldOffset) {
		if cy.has("rewind") && cy.err == "" {
			rewound = true
		}
	}
	if !rewound {
		t.Errorf("%s: rejoined without a logged pg_rewind:\n%s", old.name, strings.Join(old.logSince(oldOffset), "\n"))
	}
	if got, err := old.query("select slot_name from pg_stat_wal_receiver"); err != nil || len(got) != 1 || got[0] != old.name {
		t.Errorf("%s: streams through slot %v (%v), want its member slot", old.name, got, err)
	}

	// The DCS history, through Patroni's own tool.
	out, err := patronictl(t, c, "history")
	if err != nil {
		t.Fatalf("patronictl history: %v\n%s", err, out)
	}
	t.Logf("patronictl history:\n%s", out)
	if !strings.Contains(out, fmt.Sprintf("| %2d |", oldTL)) || !strings.Contains(out, next.name) {
		t.Errorf("patronictl history lacks timeline %d and new leader %s:\n%s", oldTL, next.name, out)
	}
	poll.Eventually(t, formTimeout, "patronictl list to show the new leader and two streaming replicas", func() error {
		rows, err := patronictlList(t, c)
		if err != nil {
			return err
		}
		return checkList(rows, c, next, newTL)
	})

	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

func mustStatus(t testing.TB, m *member) status {
	t.Helper()
	st, err := m.status()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestKillPostmaster: SIGKILL of the primary's postmaster alone. The agent
// notices at once and starts it again in place: same leader (the key never
// changed hands), same timeline.
func TestKillPostmaster(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{members: 2})
	primary := c.waitHealthy(t, formTimeout)
	c.guardSinglePrimary(t)
	primary.exec(t, "create table e2e (id serial primary key, note text)")
	tl := mustStatus(t, primary).Timeline
	before := c.mustDCS(t)
	oldPID := primary.postmasterPID()
	offset := primary.logSize()

	primary.kill(t, postmasterOnly, syscall.SIGKILL)

	poll.Eventually(t, formTimeout, "the postmaster to run again", func() error {
		pid := primary.postmasterPID()
		if pid == 0 || pid == oldPID {
			return fmt.Errorf("postmaster pid %d", pid)
		}
		if ok, err := primary.writable(); err != nil || !ok {
			return fmt.Errorf("writable %v %v", ok, err)
		}
		return nil
	})

	after := c.mustDCS(t)
	if b, a := before.kv["leader"], after.kv["leader"]; a == nil || a.Value != b.Value || a.CreateRevision != b.CreateRevision {
		t.Errorf("the leader key changed hands: before %+v, after %+v", b, a)
	}
	if b, a := before.kv["history"], after.kv["history"]; (b == nil) != (a == nil) || b != nil && a.Value != b.Value {
		t.Errorf("/history changed with the restart in place: before %+v, after %+v", b, a)
	}
	// /patroni answers from the last cycle: wait until it saw the restart.
	poll.Eventually(t, formTimeout, "/patroni to report the restarted primary", func() error {
		st, err := primary.status()
		if err != nil {
			return err
		}
		if st.Role != "primary" || st.State != "running" {
			return fmt.Errorf("role %q state %q", st.Role, st.State)
		}
		if st.Timeline != tl {
			t.Fatalf("timeline %d after the restart, %d before: it was not restarted in place", st.Timeline, tl)
		}
		return nil
	})

	// The exit woke a cycle, and that cycle started the postmaster again
	// (unless a loop_wait cycle that began in the same instant already
	// had).
	exitAt, startAt := -1, -1
	for i, cy := range primary.cyclesSince(offset) {
		if exitAt < 0 && cy.trigger == "postmaster_exit" {
			exitAt = i
		}
		if startAt < 0 && cy.has("start") {
			startAt = i
		}
	}
	if exitAt < 0 || startAt < 0 || startAt > exitAt {
		t.Errorf("want a cycle woken by the postmaster's exit that starts it (exit cycle #%d, start cycle #%d):\n%s",
			exitAt, startAt, strings.Join(primary.logSince(offset), "\n"))
	}
	primary.exec(t, "insert into e2e (note) values ('after the restart')")
	c.member(c.others(primary)[0].name).waitRow(t, "after the restart", formTimeout)
	primary.assertNoCrash(t)
}

// TestPrimaryStartTimeout: the primary's postmaster dies and cannot start
// again (its port is taken); after primary_start_timeout the agent gives up
// the leader key and the replica takes over.
func TestPrimaryStartTimeout(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{members: 2, bootstrapDCS: []string{"primary_start_timeout = 5"}})
	old := c.waitHealthy(t, formTimeout)
	replica := c.others(old)[0]
	c.guardSinglePrimary(t)
	oldTL := mustStatus(t, old).Timeline
	offset := old.logSize()

	// The agent is stopped while its postmaster dies and the port is taken,
	// so that it cannot start the postmaster again before the port is gone.
	old.kill(t, agentOnly, syscall.SIGSTOP)
	stopped := true
	defer func() {
		if stopped {
			_ = old.current().cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	old.kill(t, postmasterOnly, syscall.SIGKILL)
	var l net.Listener
	poll.Eventually(t, stopTimeout, "the primary's port to be free", func() error {
		var err error
		l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", old.pgPort))
		return err
	})

	defer l.Close()
	old.kill(t, agentOnly, syscall.SIGCONT)
	stopped = false

	poll.Eventually(t, failoverTimeout+10*time.Second, replica.name+" to take over", func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		if v.leader() != replica.name {
			return fmt.Errorf("leader key %q", v.leader())
		}
		if ok, err := replica.writable(); err != nil || !ok {
			return fmt.Errorf("writable %v %v", ok, err)
		}
		return nil
	})

	cycles := old.cyclesSince(offset)
	var notice, gaveUp *cycle
	for i := range cycles {
		cy := &cycles[i]
		if notice == nil && cy.trigger == "postmaster_exit" {
			notice = cy
		}
		if gaveUp == nil && cy.has("release_leader") {
			gaveUp = cy
		}
	}
	if notice == nil {
		t.Errorf("%s: no cycle was woken by the postmaster's exit", old.name)
	}
	if gaveUp == nil || !strings.Contains(gaveUp.reason, "primary_start_timeout") {
		t.Errorf("%s: no cycle released the leader key for primary_start_timeout:\n%s", old.name, strings.Join(old.logSince(offset), "\n"))
	}
	// What the stopped former primary publishes must not make it look like
	// a running primary to the others' leader race.
	if st := mustStatus(t, old); st.Role == "primary" || st.State == "running" {
		t.Errorf("%s: publishes role %q state %q after giving up the leader key", old.name, st.Role, st.State)
	}
	// The port is free again: the crashed former primary comes back as a
	// replica of the new one (crash recovery, then pg_rewind when needed).
	_ = l.Close()
	replica.exec(t, "create table e2e (id serial primary key, note text)")
	replica.exec(t, "insert into e2e (note) values ('after the failover')")
	poll.Eventually(t, formTimeout, old.name+" to stream from "+replica.name+" on its new timeline", func() error {

		ps, err := replica.status()
		if err != nil {
			return err
		}
		st, err := old.status()
		if err != nil {
			return err
		}
		if st.Role != "replica" || st.State != "running" || st.ReplicationState != "streaming" || st.Timeline != ps.Timeline || st.Timeline <= oldTL {
			return fmt.Errorf("role %q state %q replication %q timeline %d; %s on timeline %d, was %d", st.Role, st.State, st.ReplicationState, st.Timeline, replica.name, ps.Timeline, oldTL)
		}
		return nil
	})

	old.waitRow(t, "after the failover", formTimeout)
	// Its data directory was left by a SIGKILL: when pg_rewind ran,
	// single-user crash recovery brought it to a clean shutdown first. (When
	// the key was released before another member led, it started as a
	// standby without a leader, which replays its own WAL; pg_rewind then
	// runs only if its timeline diverged.)
	recovered, rewound := -1, -1
	rejoin := old.logSince(offset)
	for i, line := range rejoin {
		if recovered < 0 && strings.Contains(line, "running single-user crash recovery:") {
			recovered = i
		}
		if rewound < 0 && strings.Contains(line, "running pg_rewind:") {
			rewound = i
		}
	}
	if rewound >= 0 && (recovered < 0 || recovered > rewound) {
		t.Errorf("%s: want single-user crash recovery (line %d), then pg_rewind (line %d):\n%s", old.name, recovered, rewound, strings.Join(rejoin, "\n"))
	}
	old.assertNoCrash(t)
}

// TestPrimaryStartTimeoutZero, as Patroni's "check immediate failover when
// master_start_timeout=0": the primary's postmaster dies and the agent gives
// the leader key up at once instead of starting it again, so that a
// replica takes over through the DCS watch without waiting for a lease to
// expire. The former primary rejoins as a replica.
func TestPrimaryStartTimeoutZero(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{members: 2, bootstrapDCS: []string{"primary_start_timeout = 0"}})
	old := c.waitHealthy(t, formTimeout)
	replica := c.others(old)[0]
	c.guardSinglePrimary(t)
	old.exec(t, "create table e2e (id serial primary key, note text)")
	old.exec(t, "insert into e2e (note) values ('before the crash')")
	replica.waitRow(t, "before the crash", formTimeout)
	tl := mustStatus(t, old).Timeline
	offset, replicaOffset := old.logSize(), replica.logSize()
	before := c.mustDCS(t)
	w := c.watchLeader(t, before.rev+1, nil)

	old.kill(t, postmasterOnly, syscall.SIGKILL)

	if next := c.waitWritableLeader(t, old); next != replica {
		t.Fatalf("%s leads", next.name)
	}
	var released *cycle
	cycles := old.cyclesSince(offset)
	for i := range cycles {
		if cycles[i].has("release_leader") {
			released = &cycles[i]
			break
		}
		if cycles[i].has("start") {
			t.Errorf("%s started its postmaster again before giving up the key:\n%s", old.name, cycles[i].line)
		}
	}
	if released == nil || !strings.Contains(released.reason, "primary_start_timeout is 0") {
		t.Errorf("%s: no cycle released the leader key for primary_start_timeout 0:\n%s", old.name, strings.Join(old.logSince(offset), "\n"))
	}
	deletedAt := w.firstDelete()
	if deletedAt.IsZero() {
		t.Errorf("the leader key was never deleted: %+v", w.snapshot())
	}
	assertWatchWon(t, replica, replicaOffset, deletedAt)

	replica.exec(t, "insert into e2e (note) values ('after the failover')")
	poll.Eventually(t, formTimeout, old.name+" to stream from "+replica.name+" on a new timeline", func() error {
		st, err := old.status()
		if err != nil {
			return err
		}
		if st.Role != "replica" || st.State != "running" || st.ReplicationState != "streaming" || st.Timeline <= tl {
			return fmt.Errorf("role %q state %q replication %q timeline %d (was %d)", st.Role, st.State, st.ReplicationState, st.Timeline, tl)
		}
		return nil
	})

	old.waitRow(t, "after the failover", formTimeout)
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// TestStopPrimaryAgent: SIGTERM of the primary's agent. It stops
// PostgreSQL, then deletes the leader key (the lease is still valid), and
// a replica takes over at once instead of after a TTL.
func TestStopPrimaryAgent(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{})
	old := c.waitHealthy(t, formTimeout)
	c.guardSinglePrimary(t)
	old.exec(t, "create table e2e (id serial primary key, note text)")
	old.exec(t, "insert into e2e (note) values ('before the stop')")
	for _, r := range c.others(old) {
		r.waitRow(t, "before the stop", formTimeout)
	}
	offsets := map[string]int64{}
	for _, r := range c.others(old) {
		offsets[r.name] = r.logSize()
	}
	before := c.mustDCS(t)
	lease := before.kv["leader"].Lease
	pm := old.postmasterPID()
	// At the moment the key goes: is the postmaster gone, and the lease
	// still valid (deleted, not expired)?
	w := c.watchLeader(t, before.rev+1, func(e leaderEvent) string {
		if !e.deleted {
			return ""
		}
		ttl, err := leaseTTL(e.prevLease)
		return fmt.Sprintf("postmaster alive %v, lease ttl %v %v", processAlive(pm), ttl, err)
	})

	old.kill(t, agentOnly, syscall.SIGTERM)
	stoppedAt := time.Now()

	next := c.waitWritableLeader(t, old)
	t.Logf("%s promoted %v after SIGTERM", next.name, time.Since(stoppedAt).Round(time.Millisecond))
	if st := old.waitExit(t, stopTimeout); st.ExitCode() != 0 {
		t.Errorf("%s: the agent exited with %v after SIGTERM", old.name, st)
	}

	events := w.snapshot()
	if len(events) < 2 || !events[0].deleted || events[1].deleted || events[1].value != next.name {
		t.Fatalf("leader key events %+v: want the delete, then %s's create", events, next.name)
	}
	del, put := events[0], events[1]
	if del.prevLease != lease {
		t.Errorf("the deleted key had lease %x, the leader's was %x", del.prevLease, lease)
	}
	if !strings.HasPrefix(del.hook, "postmaster alive false, lease ttl ") || strings.HasPrefix(del.hook, "postmaster alive false, lease ttl -") {
		t.Errorf("when the leader key was deleted: %s; want the postmaster stopped and the lease still valid", del.hook)
	}
	// The new leader took the key while the old lease would still have
	// held it: before that lease's TTL could have run out.
	if remaining, err := leaseTTL(lease); err != nil || remaining <= 0 {
		t.Errorf("the old lease is gone already (%v, %v): cannot show the key was taken before it expired", remaining, err)
	} else {
		t.Logf("new leader key %v after the delete; the old lease still had %v", put.at.Sub(del.at).Round(time.Millisecond), remaining)
	}
	assertWatchWon(t, next, offsets[next.name], del.at)
	next.exec(t, "insert into e2e (note) values ('after the stop')")
	for _, r := range c.others(old) {
		if r != next {
			poll.Eventually(t, failoverTimeout, r.name+" to follow "+next.name, func() error {
				st, err := r.status()
				if err != nil {
					return err
				}
				if st.ReplicationState != "streaming" || st.Timeline != mustStatus(t, next).Timeline {
					return fmt.Errorf("replication %q timeline %d", st.ReplicationState, st.Timeline)
				}
				return nil
			})

			r.waitRow(t, "after the stop", formTimeout)
		}
	}
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}
