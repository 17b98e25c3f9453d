//go:build integration

package e2e

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	tkcluster "github.com/custos-ha/custos/testkit/cluster"
	"github.com/custos-ha/custos/testkit/poll"
)

// How often and how long TestPluginKill kills the primary's DCS plugin.
// make test runs the short form; the long runs of the issue are
//
//	go test -tags integration -timeout 30m -run TestPluginKill ./core/e2e/ -args -e2e.pluginkill-every=3s -e2e.pluginkill-for=60s
//	go test -tags integration -timeout 30m -run TestPluginKill ./core/e2e/ -args -e2e.pluginkill-every=5s -e2e.pluginkill-for=10m
var (
	pluginKillEvery = flag.Duration("e2e.pluginkill-every", 3*time.Second, "TestPluginKill: kill the primary's DCS plugin this often")
	pluginKillFor   = flag.Duration("e2e.pluginkill-for", 30*time.Second, "TestPluginKill: for this long")
)

// dcsPluginBinary is the file name of the DCS plugin the agents under test
// run.
const dcsPluginBinary = "custos-plugin-dcs-etcd3"

// TestPluginKill: a crash of the DCS plugin alone costs no leadership when
// the plugin comes back in time. At ttl 10 s and retry_timeout 4 s, the
// primary's DCS plugin process is SIGKILLed every pluginKillEvery for
// pluginKillFor while a client commits a row every 25 ms. What a user
// checks: the leader key never leaves the primary, the primary never
// demotes (its role and timeline as its REST API reports them, its
// postmaster, its logged HA actions), every commit succeeds and every
// acknowledged row is there at the end. The test logs the kills, the leader
// changes, the demotions and the longest gap between two acknowledged
// commits.
func TestPluginKill(t *testing.T) {
	t.Parallel()
	every, dur := *pluginKillEvery, *pluginKillFor
	c := startCluster(t, clusterOpts{timings: shortTimings, pgParameters: fencingParameters})
	primary := c.waitFormed(t)
	primary.exec(t, "create table acks (id bigint primary key)")
	before := mustStatus(t, primary)
	starts := postmasterStarts(t, primary)
	leaders := c.watchLeader(t, c.mustDCS(t).rev+1, nil)
	rest := pollREST(t, primary, "/patroni", 250*time.Millisecond)
	w := startWriter(c, coarseWriteEvery)
	t.Cleanup(w.stop)
	poll.Eventually(t, opTimeout, "commits acknowledged on "+primary.name, func() error {
		if n := w.ackedCount(); n < 50 {
			return fmt.Errorf("%d acknowledged; last error %v", n, w.lastError())
		}
		return nil
	})
	logFrom := primary.logSize()

	var kills []time.Time
	killed := map[int]bool{}
	began := time.Now()
	tick := time.NewTicker(every)
	defer tick.Stop()
	for time.Since(began) < dur {
		// The plugin the last kill left is back (a new process), or the
		// wait fails the test.
		pid := primary.dcsPluginPID(t, killed)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("%s: kill -9 of its DCS plugin %d: %v", primary.name, pid, err)
		}
		kills = append(kills, time.Now())
		killed[pid] = true
		<-tick.C
	}
	// The plugin comes back after the last kill, and a ttl passes: a
	// lease lost to the kills would show by then.
	primary.dcsPluginPID(t, killed)
	time.Sleep(shortTimings.ttlDuration()) // see above
	rest.stop()
	w.stop()
	leaders.stop()

	// What happened, for the log.
	acks := w.acks()
	var changes, moves []leaderEvent
	for _, e := range leaders.snapshot() {
		if e.deleted || e.value != primary.name {
			changes = append(changes, e)
		} else {
			moves = append(moves, e)
		}
	}
	cycles := primary.cyclesSince(logFrom)
	var demotions []string
	for _, cy := range cycles {
		if cy.has("stop") || cy.has("demote") || strings.Contains(cy.reason, "demot") {
			demotions = append(demotions, cy.line)
		}
	}
	restarts, longestDown := pluginRestarts(primary.logSince(logFrom))
	gap, gapAt := longestGap(acks, kills[0])
	t.Logf("plugin kill every %v for %v: %d kills, %d plugin restarts (longest down %v), %d leader changes, %d demotions, leader key moved to a new lease %d times; %d commits acknowledged, %d failed; longest gap between acknowledged commits %v (ending %s after the first kill)",
		every, dur, len(kills), restarts, longestDown, len(changes), len(demotions), len(moves), len(acks), w.failures(),
		gap.Round(time.Millisecond), since(kills[0], gapAt))

	if len(kills) < 2 {
		t.Errorf("%d kills: the test killed too little to prove anything", len(kills))
	}
	for _, e := range changes {
		t.Errorf("the leader key changed at %s: deleted %v, value %q (was %q)", since(kills[0], e.at), e.deleted, e.value, e.prevValue)
	}
	for _, l := range demotions {
		t.Errorf("%s demoted: %s", primary.name, l)
	}
	if v := c.mustDCS(t); v.leader() != primary.name {
		t.Errorf("leader key %q at the end, want %s", v.leader(), primary.name)
	}
	after := mustStatus(t, primary)
	if after.Role != before.Role || after.Timeline != before.Timeline {
		t.Errorf("%s: role %q on timeline %d at the end, was %q on %d", primary.name, after.Role, after.Timeline, before.Role, before.Timeline)
	}
	for _, a := range rest.snapshot() {
		var st status
		if a.err != nil || a.code != 200 || json.Unmarshal([]byte(a.body), &st) != nil {
			// Not an answer about the role (a busy machine).
			continue
		}
		if st.Role != before.Role || st.Timeline != before.Timeline {
			t.Errorf("%s: GET /patroni at %s said role %q on timeline %d, want %q on %d", primary.name, since(kills[0], a.at), st.Role, st.Timeline, before.Role, before.Timeline)
			break
		}
	}
	if now := postmasterStarts(t, primary); !mapsEqual(now, starts) {
		t.Errorf("%s's postmaster was restarted: started %v, now %v", primary.name, starts, now)
	}
	if n := w.failures(); n > 0 {
		t.Errorf("%d commits failed; the last: %v", n, w.lastError())
	}
	var elsewhere int
	for _, a := range acks {
		if a.member != primary.name {
			elsewhere++
		}
	}
	if elsewhere > 0 {
		t.Errorf("%d commits were acknowledged by another member than %s", elsewhere, primary.name)
	}
	if len(acks) == 0 || !acks[len(acks)-1].at.After(kills[len(kills)-1]) {
		t.Errorf("no commit acknowledged after the last kill")
	}
	ids := make([]int64, len(acks))
	for i, a := range acks {
		ids[i] = a.id
	}
	missing, err := missingOn(primary, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Errorf("%d of %d acknowledged commits are not on %s, e.g. %v", len(missing), len(ids), primary.name, missing[:min(len(missing), 10)])
	}
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// dcsPluginPID waits for the member's agent to run a DCS plugin process
// that is not one of dead, and returns its pid.
func (m *member) dcsPluginPID(t testing.TB, dead map[int]bool) int {
	t.Helper()
	pid := 0
	poll.Eventually(t, failoverTimeout, m.name+"'s DCS plugin process", func() error {
		agent := m.h.PID()
		if !m.running() || agent == 0 {
			t.Fatalf("%s: the agent is not running", m.name)
		}
		for _, p := range dcsPlugins(agent) {
			if !dead[p] && tkcluster.ProcessAlive(p) {
				pid = p
				return nil
			}
		}
		return fmt.Errorf("no %s among the children of agent %d", dcsPluginBinary, agent)
	})

	return pid
}

// dcsPlugins are the pids of the DCS plugin processes among agent's
// children, read from each of its threads' children lists: quick enough
// to look every few milliseconds.
func dcsPlugins(agent int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", agent))
	var out []int
	for _, f := range tasks {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, field := range strings.Fields(string(data)) {
			p, err := strconv.Atoi(field)
			if err != nil {
				continue
			}
			cmdline, err := os.ReadFile("/proc/" + field + "/cmdline")
			if err != nil {
				continue
			}
			if argv0, _, _ := bytes.Cut(cmdline, []byte{0}); filepath.Base(string(argv0)) == dcsPluginBinary {
				out = append(out, p)
			}
		}
	}
	return out
}

// TestPluginStaysDown: fail closed. The primary's DCS plugin is killed, and
// so is every process started to replace it, the moment it appears, as a
// plugin that crashes at start would be. The primary must stop taking
// writes more than etcd's lease sweep before its leader key is deleted, a
// replica takes over, and no two members take writes at once. With the
// plugin back, the old primary rejoins as a replica.
func TestPluginStaysDown(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{timings: shortTimings, pgParameters: fencingParameters})
	old := c.waitFormed(t)
	in := c.instrument(t, old, coarsePace)

	agent := old.h.PID()
	stopKiller := make(chan struct{})
	killerDone := make(chan int)
	go func() {
		kills := 0
		// Every few milliseconds: a plugin process needs longer than
		// that to start serving.
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, p := range dcsPlugins(agent) {
				if syscall.Kill(p, syscall.SIGKILL) == nil {
					kills++
				}
			}
			select {
			case <-stopKiller:
				killerDone <- kills
				return
			case <-tick.C:
			}
		}
	}()
	killed := 0
	stop := func() {
		if stopKiller != nil {
			close(stopKiller)
			killed = <-killerDone
			stopKiller = nil
		}
	}
	t.Cleanup(stop)
	down := time.Now()
	// Measured at the end, also when a wait below fails.
	defer func() {
		stop()
		in.stop()
		l := measure(c, old, down, in, nil)
		l.log(t, fmt.Sprintf("DCS plugin kept down (%d processes killed)", killed))
		l.assertFenced(t, false)
	}()
	c.waitTakeover(t, old, in)

	stop()
	if healed := c.waitHealthy(t, formTimeout); healed == old {
		t.Errorf("%s leads again once its plugin is back", old.name)
	}
	if st := mustStatus(t, old); st.Role != "replica" {
		t.Errorf("%s: role %q once its plugin is back, want replica", old.name, st.Role)
	}
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// pluginRestarts counts the agent's "plugin restarted" log lines and
// returns the longest down_for they report.
func pluginRestarts(lines []string) (int, time.Duration) {
	n := 0
	var longest time.Duration
	for _, l := range lines {
		_, rest, ok := strings.Cut(l, "plugin restarted: ")
		if !ok {
			continue
		}
		n++
		if d, err := time.ParseDuration(parseKV(rest)["down_for"]); err == nil {
			longest = max(longest, d)
		}
	}
	return n, longest
}

// longestGap is the longest time without an acknowledged commit from
// since on (counting from since to the first acknowledgement after it),
// and when it ended.
func longestGap(acks []ack, since time.Time) (time.Duration, time.Time) {
	var gap time.Duration
	var end time.Time
	prev := since
	for _, a := range acks {
		if a.at.Before(since) {
			continue
		}
		if d := a.at.Sub(prev); d > gap {
			gap, end = d, a.at
		}
		prev = a.at
	}
	return gap, end
}
