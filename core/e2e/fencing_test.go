//go:build integration

package e2e

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-ha/custos/testkit/poll"
	"github.com/custos-ha/custos/testkit/servers"
)

// Fencing: a primary never outlives its leader key. A writer commits on the
// primary, a sampler asks every member whether it takes a write (both at a
// pace: finePace or coarsePace), and a watch on etcd records when the
// leader key goes and comes; each test logs what they saw.

// frozenHold is how long the frozen agent stays stopped after a replica
// took over: long enough to see whether its PostgreSQL still takes writes
// then (without fencing it does, for as long as the agent stays frozen).
const frozenHold = 2 * time.Second

// lostPrimary is what the fencing tests measure around one primary that
// lost its leader key to a fault.
type lostPrimary struct {
	old *member
	// fault is when the fault began.
	fault time.Time
	// postmasterGone is when the old primary's postmaster was seen gone,
	// zero if it was not; watched says whether it was watched.
	postmasterGone time.Time
	watched        bool
	// deleted is the old primary's leader key going away (etcd's watch),
	// created the next leader's key.
	deleted, created           leaderEvent
	wasDeleted, wasCreated     bool
	newWrite                   time.Time
	newPrimary                 string
	oldLastWrite               time.Time
	overlaps                   []overlap
	acknowledged, failedWrites int
}

// measure reads the instruments once the writer and the sampler stopped.
// waitTakeover waits for another member to take writes, seen by the
// instruments too (so that a write old took meanwhile would show as an
// overlap), and for old to stop taking them; it returns the new primary.
func (c *testCluster) waitTakeover(t *testing.T, old *member, in instruments) *member {
	t.Helper()
	next := c.waitWritableLeader(t, old)
	waitWrites(t, in.w, in.s, next, 20)
	poll.Eventually(t, failoverTimeout, old.name+" to stop taking writes", func() error {
		if ok, err := old.writableWithin(probeTimeout); err == nil && ok {
			return fmt.Errorf("%s takes writes", old.name)
		}
		return nil
	})
	return next
}

func measure(c *testCluster, old *member, fault time.Time, in instruments, pm *exitWatch) lostPrimary {
	w, s, lw := in.w, in.s, in.lw
	acks := w.acks()
	l := lostPrimary{old: old, fault: fault, acknowledged: len(acks), failedWrites: w.failures()}
	if pm != nil {
		l.postmasterGone, l.watched = pm.goneAt(), true
	}
	l.deleted, l.wasDeleted = lw.deletedFrom(old.name, fault)
	l.created, l.wasCreated = lw.createdAfter(old.name, fault)
	l.newWrite, l.newPrimary = s.firstWriteAfter(old.name, fault)
	l.oldLastWrite = later(s.lastWrite(old.name), lastAckFrom(acks, old.name))
	l.overlaps = s.overlaps(c)
	return l
}

// margin is how long before its leader key was deleted the old primary
// last took a write (negative: after).
func (l lostPrimary) margin() time.Duration { return l.deleted.at.Sub(l.oldLastWrite) }

// log writes the measurements, relative to the fault, in one line.
func (l lostPrimary) log(t testing.TB, what string) {
	t.Helper()
	margin := "no deletion seen"
	if l.wasDeleted {
		margin = beforeOrAfter(l.margin()) + " the key's deletion"
	}
	postmaster := ""
	if l.watched {
		postmaster = fmt.Sprintf("%s's postmaster gone %s, ", l.old.name, since(l.fault, l.postmasterGone))
	}
	window := "none"
	if len(l.overlaps) > 0 {
		window = fmt.Sprintf("%v in all (%s)", totalLength(l.overlaps).Round(time.Millisecond), describeOverlaps(l.overlaps, l.fault))
	}
	t.Logf("%s: relative to the fault: %s%s's leader key deleted %s, next key (%s) created %s, first write on another member (%s) %s, %s's last accepted write %s; margin: that write came %s; two members writable: %s; %d commits acknowledged, %d failed",
		what, postmaster, l.old.name, since(l.fault, l.deleted.at), l.created.value, since(l.fault, l.created.at),
		l.newPrimary, since(l.fault, l.newWrite), l.old.name, since(l.fault, l.oldLastWrite), margin, window, l.acknowledged, l.failedWrites)
}

// assertFenced checks what fencing promises: the old primary took its last
// write, and its postmaster was gone when postmasterGone is checked, more
// than etcd's lease sweep before its key was deleted; and no two members
// took writes at the same time.
func (l lostPrimary) assertFenced(t testing.TB, postmasterGone bool) {
	t.Helper()
	if !l.wasDeleted {
		t.Errorf("%s's leader key was never deleted", l.old.name)
	} else {
		if l.oldLastWrite.IsZero() || l.margin() <= leaseSweep {
			t.Errorf("%s took its last write %s its leader key was deleted; fenced, it comes more than etcd's lease sweep (%v) before", l.old.name, beforeOrAfter(l.margin()), leaseSweep)
		}
		if postmasterGone {
			if l.postmasterGone.IsZero() {
				t.Errorf("%s's postmaster still ran when its leader key was deleted", l.old.name)
			} else if d := l.deleted.at.Sub(l.postmasterGone); d <= leaseSweep {
				t.Errorf("%s's postmaster was gone %s its leader key was deleted; fenced, it is gone more than etcd's lease sweep (%v) before", l.old.name, beforeOrAfter(d), leaseSweep)
			}
		}
	}
	if len(l.overlaps) > 0 {
		t.Errorf("two members took writes at the same time for %v: %s", totalLength(l.overlaps).Round(time.Millisecond), describeOverlaps(l.overlaps, l.fault))
	}
}

// beforeOrAfter renders a margin: "1.2s before", "300ms after".
func beforeOrAfter(d time.Duration) string {
	if d < 0 {
		return (-d).Round(time.Millisecond).String() + " after"
	}
	return d.Round(time.Millisecond).String() + " before"
}

// TestFencingFrozenAgent: the primary's agent alone is frozen (SIGSTOP;
// its PostgreSQL and its fencing process run on) while a writer commits and
// a sampler asks every member for a write. With the `process` watchdog
// required, the frozen member's postmaster is killed before its leader key
// expires, a replica takes over, and no two members ever take writes at
// once. With the watchdog off, nothing stops the frozen member's
// PostgreSQL: the test only measures the window in which two members take
// writes. Thawed, the old primary rejoins as a replica.
func TestFencingFrozenAgent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		watchdog []string
		fenced   bool
	}{
		{"watchdog_required", []string{`mode = "required"`, `driver = "process"`, "safety_margin = 3"}, true},
		{"watchdog_off", []string{`mode = "off"`}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := startCluster(t, clusterOpts{timings: shortTimings, pgParameters: fencingParameters, edit: func(m *member) {
				m.extra = append([]string{"[watchdog]"}, tc.watchdog...)
			}})
			old := c.waitFormed(t)
			in := c.instrument(t, old, finePace)
			pid := old.postmasterPID()
			if pid == 0 {
				t.Fatalf("%s: no postmaster", old.name)
			}
			pm := watchExit(t, pid)

			old.kill(t, agentOnly, syscall.SIGSTOP)
			frozen := time.Now()
			var thawed time.Time
			// Measured at the end, also when a wait below fails.
			defer func() {
				in.stop()
				l := measure(c, old, frozen, in, pm)
				l.log(t, fmt.Sprintf("frozen agent, %s (thawed %s)", tc.name, since(frozen, thawed)))
				if tc.fenced {
					l.assertFenced(t, true)
				}
			}()
			c.waitWritableLeader(t, old)
			// Frozen a little longer: does the old primary still take
			// writes?
			time.Sleep(frozenHold)
			old.kill(t, agentOnly, syscall.SIGCONT)
			thawed = time.Now()

			healed := c.waitHealthy(t, formTimeout)
			if healed == old {
				t.Errorf("%s leads again after the thaw", old.name)
			}
			if st := mustStatus(t, old); st.Role != "replica" {
				t.Errorf("%s: role %q after the thaw, want replica", old.name, st.Role)
			}
			// The sampler keeps watching while the writer moves on.
			waitWrites(t, in.w, in.s, healed, 50)
			for _, m := range c.m {
				m.assertNoCrash(t)
			}
		})
	}
}

// TestPrimaryCutFromDCS: the primary alone loses the DCS the way a network
// that drops packets loses it: a proxy between its agent's DCS plugin and
// etcd stops forwarding, with every connection left open, so that calls
// hang instead of failing. For each of three timings, the primary takes its
// last write more than etcd's lease sweep before etcd deletes its key, and
// a replica takes over.
func TestPrimaryCutFromDCS(t *testing.T) {
	t.Parallel()
	for _, tm := range []timings{
		{ttl: 30, loopWait: 10, retryTimeout: 10},
		{ttl: 25, loopWait: 5, retryTimeout: 10},
		{ttl: 12, loopWait: 2, retryTimeout: 5},
	} {
		t.Run(fmt.Sprintf("ttl%d_loop%d_retry%d", tm.ttl, tm.loopWait, tm.retryTimeout), func(t *testing.T) {
			t.Parallel()
			// Two members are enough: the primary, and a replica to take
			// over. Each agent reaches etcd through a proxy of its own,
			// started before the cluster so that it outlives the agents.
			const members = 2
			proxies := map[string]*servers.Proxy{}
			for i := range members {
				p, err := servers.StartProxy("127.0.0.1:0", env.etcd.Endpoint)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(p.Close)
				proxies[fmt.Sprintf("node%d", i+1)] = p
			}
			c := startCluster(t, clusterOpts{members: members, timings: &tm, pgParameters: fencingParameters, edit: func(m *member) {
				p := proxies[m.name]
				if p == nil {
					t.Fatalf("no proxy for %s", m.name)
				}
				m.dcsHosts = []string{p.Addr}
			}})
			// The agents stop against a reachable DCS (this clean-up runs
			// before startCluster's).
			t.Cleanup(func() {
				for _, p := range proxies {
					p.Resume()
				}
			})
			old := c.waitFormed(t)
			in := c.instrument(t, old, coarsePace)

			proxies[old.name].Stall()
			cut := time.Now()
			// Measured at the end, also when a wait below fails.
			defer func() {
				in.stop()
				l := measure(c, old, cut, in, nil)
				l.log(t, fmt.Sprintf("primary cut from the DCS at ttl %d, loop_wait %d, retry_timeout %d", tm.ttl, tm.loopWait, tm.retryTimeout))
				l.assertFenced(t, false)
			}()
			c.waitTakeover(t, old, in)

			for _, m := range c.m {
				m.assertNoCrash(t)
			}
		})
	}
}

// TestWatchdogRequiredWithoutDevice: a member whose required watchdog has
// no device never takes the leader key, and says why. node2 joins as a
// replica; when node1 (agent and PostgreSQL) is killed, node2 does not
// promote, and its GET /patroni shows watchdog_failed with the reason.
func TestWatchdogRequiredWithoutDevice(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{members: 2, timings: shortTimings, edit: func(m *member) {
		if m.name == "node2" {
			m.extra = []string{"[watchdog]", `mode = "required"`, `device = "/dev/custos-e2e-no-such-watchdog"`}
		}
	}})
	leader := c.waitFormed(t)
	if leader.name != "node1" {
		t.Fatalf("%s leads: a member whose required watchdog has no device took the leader key", leader.name)
	}
	node2 := c.member("node2")
	leader.kill(t, agentAndPostmaster, syscall.SIGKILL)
	holdsFor(t, "node2 not to promote", 3*c.timings().ttlDuration(), func() error {
		if ok, err := node2.writable(); err == nil && ok {
			return fmt.Errorf("node2 accepts writes without its required watchdog")
		}
		return nil
	})
	st := mustStatus(t, node2)
	if !strings.Contains(st.raw, `"watchdog_failed":true`) {
		t.Errorf("node2: /patroni does not show watchdog_failed: %s", st.raw)
	}
	if st.Custos == nil || !strings.Contains(st.Custos.Reason, "the watchdog is required but not usable") || !strings.Contains(st.Custos.Reason, "custos-e2e-no-such-watchdog") {
		t.Errorf("node2: the reason does not say why it does not lead: %s", st.raw)
	}
}
