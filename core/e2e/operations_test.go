//go:build integration

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/custos-ha/custos/testkit/poll"
)

// Day-2 operations against a three-member cluster with REST API
// authentication: through Patroni's own patronictl 3.0.2 and through the
// REST API directly.

const (
	// scheduleAhead is how far ahead of the command each scheduled
	// operation is set: room for the patronictl call that schedules it
	// (8 s seen on a loaded CI run) and for the checks made before its
	// time.
	scheduleAhead = 30 * time.Second
	// scheduleSlack bounds, past the one loop_wait the agent may sleep
	// before it notices the time has come, how long after a scheduled
	// action's time its first step may be logged (one cycle's work).
	scheduleSlack = time.Second
	// scheduleMargin is how long a scheduled action may take once begun:
	// a graceful demote (checkpoint, fast stop) and a promotion, or a
	// restart.
	scheduleMargin = 10 * time.Second
	// opTimeout bounds one operation's visible effect (a switchover, a
	// restart, a re-clone) on a busy machine.
	opTimeout = time.Minute
	// longHTTPTimeout bounds a REST call that waits for its effect: Patroni
	// polls a switchover for up to 2*max(10s, loop_wait).
	longHTTPTimeout = time.Minute
)

// TestPatronictlOperations: Patroni's patronictl 3.0.2, with the REST API
// credentials in its configuration, runs every day-2 command against a
// custos cluster whose unsafe REST methods need them, and each has its
// effect in the cluster.
func TestPatronictlOperations(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{auth: true})
	leader := c.waitHealthy(t, formTimeout)
	c.guardSinglePrimary(t)
	leader.exec(t, "create table e2e (id serial primary key, note text)")
	tl := mustStatus(t, leader).Timeline
	leaders := []string{leader.name}

	step := func(name string, f func(t *testing.T)) {
		t.Helper()
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("edit-config and show-config", func(t *testing.T) {
		before := postmasterStarts(t, c.m...)
		out := ctlOK(t, c, "edit-config", c.scope, "--force", "-p", "work_mem=8MB", "-s", "loop_wait=3")
		wantOutput(t, out, "Configuration changed")
		for _, m := range c.m {
			poll.Eventually(t, opTimeout, m.name+" to run with work_mem 8MB", func() error {
				v, err := m.query("show work_mem")
				if err != nil {
					return err
				}
				if !slices.Equal(v, []string{"8MB"}) {
					return fmt.Errorf("work_mem %v", v)
				}
				return nil
			})

		}
		if after := postmasterStarts(t, c.m...); !mapsEqual(before, after) {
			t.Errorf("a reloadable setting restarted postgres: postmaster start times %v, before %v", after, before)
		}
		out = ctlOK(t, c, "show-config", c.scope)
		for _, want := range []string{"loop_wait: 3", "work_mem: 8MB", "ttl: 20"} {
			if !slices.Contains(lines(out), want) {
				t.Errorf("patronictl show-config lacks %q:\n%s", want, out)
			}
		}
	})

	step("switchover to a candidate", func(t *testing.T) {
		cand := c.others(leader)[0]
		out := ctlOK(t, c, "switchover", c.scope, "--candidate", cand.name, "--force")
		wantOutput(t, out, fmt.Sprintf("Successfully switched over to %q", cand.name))
		if got := c.mustDCS(t).leader(); got != cand.name {
			t.Errorf("patronictl reported the switchover, but the leader key holds %q", got)
		}
		leader, tl = c.waitNewLeader(t, leader, cand, tl)
		leaders = append(leaders, leader.name)
	})

	step("switchover without a candidate", func(t *testing.T) {
		out := ctlOK(t, c, "switchover", c.scope, "--force")
		wantOutput(t, out, "witched over to")
		leader, tl = c.waitNewLeader(t, leader, nil, tl)
		leaders = append(leaders, leader.name)
	})

	step("failover to a candidate", func(t *testing.T) {
		cand := c.others(leader)[1]
		out := ctlOK(t, c, "failover", c.scope, "--candidate", cand.name, "--force")
		// patronictl 3.0.2 sends the leader along, and Patroni 4.x (whose
		// API custos serves) takes POST /failover with a leader as a
		// switchover: "Successfully switched over".
		if !regexp.MustCompile(fmt.Sprintf(`Successfully (switched|failed) over to %q`, cand.name)).MatchString(out) {
			t.Errorf("patronictl failover did not report success to %s:\n%s", cand.name, out)
		}
		leader, tl = c.waitNewLeader(t, leader, cand, tl)
		leaders = append(leaders, leader.name)
	})

	step("history", func(t *testing.T) {
		var rows []map[string]any
		out := ctlOK(t, c, "history", c.scope, "-f", "json")
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("patronictl history -f json: %v\n%s", err, out)
		}
		t.Logf("patronictl history:\n%s", ctlOK(t, c, "history", c.scope))
		if len(rows) != 3 {
			t.Fatalf("%d history lines after three switchovers, want 3: %s", len(rows), out)
		}
		for i, row := range rows {
			if tlOf, _ := row["TL"].(float64); int(tlOf) != i+1 {
				t.Errorf("history line %d: TL %v, want %d", i, row["TL"], i+1)
			}
			if lsn, _ := row["LSN"].(float64); lsn <= 0 {
				t.Errorf("history line %d: LSN %v, want a position", i, row["LSN"])
			}
			if got := row["New Leader"]; got != leaders[i+1] {
				t.Errorf("history line %d: new leader %v, want %s", i, got, leaders[i+1])
			}
		}
	})

	step("restart", func(t *testing.T) {
		replica := c.others(leader)[0]
		third := c.others(leader)[1]
		before := postmasterStarts(t, c.m...)
		out := ctlOK(t, c, "restart", c.scope, leader.name, replica.name, "--force")
		for _, m := range []*member{leader, replica} {
			wantOutput(t, out, "Success: restart on member "+m.name)
		}
		after := postmasterStarts(t, c.m...)
		for _, m := range []*member{leader, replica} {
			if !after[m.name].After(before[m.name]) {
				t.Errorf("%s: postmaster started at %v, before the restart at %v", m.name, after[m.name], before[m.name])
			}
		}
		if !after[third.name].Equal(before[third.name]) {
			t.Errorf("%s was not named but restarted (%v, before %v)", third.name, after[third.name], before[third.name])
		}
		if got := c.mustDCS(t).leader(); got != leader.name {
			t.Errorf("the leader key moved to %q with a restart of the leader", got)
		}
		if st := c.waitHealthyStatus(t); st.Timeline != tl {
			t.Errorf("timeline %d after a restart, %d before", st.Timeline, tl)
		}
	})

	step("reinit", func(t *testing.T) {
		replica := c.others(leader)[0]
		marker := filepath.Join(replica.dataDir, "e2e-marker")
		if err := os.WriteFile(marker, []byte("from before the re-clone\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		chownToAgent(t, marker)
		leader.exec(t, "insert into e2e (note) values ('before the reinit')")
		out := ctlOK(t, c, "reinit", c.scope, replica.name, "--force", "--wait")
		wantOutput(t, out, "Success: reinitialize for member "+replica.name)
		wantOutput(t, out, "Reinitialize is completed on: "+replica.name)
		c.waitHealthy(t, opTimeout)
		if _, err := os.Stat(marker); err == nil {
			t.Errorf("%s: %s survived the reinit: the data directory was not made anew", replica.name, marker)
		}
		leader.exec(t, "insert into e2e (note) values ('after the reinit')")
		replica.waitRow(t, "before the reinit", opTimeout)
		replica.waitRow(t, "after the reinit", opTimeout)
	})

	step("pause and resume", func(t *testing.T) {
		out := ctlOK(t, c, "pause", c.scope, "--wait")
		wantOutput(t, out, "Success: cluster management is paused")
		v := c.mustDCS(t)
		for _, m := range c.m {
			if p := memberData(t, v, m.name)["pause"]; p != true {
				t.Errorf("%s: member key pause %v after pause --wait, want true", m.name, p)
			}
		}
		if cfg := keyJSON(t, v, "config"); cfg["pause"] != true {
			t.Errorf("/config pause %v, want true", cfg["pause"])
		}
		wantOutput(t, ctlOK(t, c, "list", c.scope), "Maintenance mode: on")

		out = ctlOK(t, c, "resume", c.scope, "--wait")
		wantOutput(t, out, "Success: cluster management is resumed")
		v = c.mustDCS(t)
		for _, m := range c.m {
			if p, ok := memberData(t, v, m.name)["pause"]; ok && p != false {
				t.Errorf("%s: member key pause %v after resume --wait", m.name, p)
			}
		}
		if _, ok := keyJSON(t, v, "config")["pause"]; ok {
			t.Errorf("/config still has pause after resume: %s", v.kv["config"].Value)
		}
	})

	step("flush a scheduled switchover", func(t *testing.T) {
		at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		out := ctlOK(t, c, "switchover", c.scope, "--scheduled", at.Format(time.RFC3339), "--force")
		wantOutput(t, out, "Switchover scheduled")
		f := keyJSON(t, c.mustDCS(t), "failover")
		if got, err := time.Parse(time.RFC3339, fmt.Sprint(f["scheduled_at"])); err != nil || !got.Equal(at) {
			t.Errorf("/failover %v: scheduled_at is not %s", f, at.Format(time.RFC3339))
		}
		wantOutput(t, ctlOK(t, c, "list", c.scope), "Switchover scheduled at:")

		out = ctlOK(t, c, "flush", c.scope, "switchover")
		wantOutput(t, out, "Success: scheduled switchover deleted")
		v := c.mustDCS(t)
		if kv := v.kv["failover"]; kv != nil && kv.Value != "{}" && kv.Value != "" {
			t.Errorf("/failover after the flush: %s", kv.Value)
		}
		if v.leader() != leader.name {
			t.Errorf("leader key %q after flushing the switchover, want %s", v.leader(), leader.name)
		}
	})

	step("flush a scheduled restart", func(t *testing.T) {
		replica := c.others(leader)[1]
		before := postmasterStarts(t, replica)
		at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
		out := ctlOK(t, c, "restart", c.scope, replica.name, "--scheduled", at.Format(time.RFC3339), "--force")
		wantOutput(t, out, "Success: restart scheduled on member "+replica.name)
		poll.Eventually(t, opTimeout, replica.name+"'s member key to carry the scheduled restart", func() error {
			v, err := c.dcs()
			if err != nil {
				return err
			}
			sr, _ := memberData(t, v, replica.name)["scheduled_restart"].(map[string]any)
			if sr == nil {
				return fmt.Errorf("member key %s", v.kv["members/"+replica.name].Value)
			}
			if got, err := time.Parse(time.RFC3339, fmt.Sprint(sr["schedule"])); err != nil || !got.Equal(at) {
				t.Fatalf("scheduled_restart %v, want the schedule %s", sr, at.Format(time.RFC3339))
			}
			return nil
		})

		wantOutput(t, ctlOK(t, c, "list", c.scope, "-e"), "Scheduled restart")

		out = ctlOK(t, c, "flush", c.scope, replica.name, "restart", "--force")
		wantOutput(t, out, "Success: flush scheduled restart for member "+replica.name)
		poll.Eventually(t, opTimeout, replica.name+"'s member key to drop the scheduled restart", func() error {
			v, err := c.dcs()
			if err != nil {
				return err
			}
			if sr, ok := memberData(t, v, replica.name)["scheduled_restart"]; ok {
				return fmt.Errorf("scheduled_restart %v", sr)
			}
			return nil
		})

		if after := postmasterStarts(t, replica); !mapsEqual(before, after) {
			t.Errorf("%s restarted although its scheduled restart was flushed (%v, before %v)", replica.name, after, before)
		}
	})

	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// TestScheduledOperations: a switchover and a restart scheduled through
// patronictl for a moment some seconds ahead happen at that moment: not
// before it, and within loop_wait after it (plus the action's own
// duration).
func TestScheduledOperations(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{auth: true})
	old := c.waitHealthy(t, formTimeout)
	c.guardSinglePrimary(t)
	cand, replica := c.others(old)[0], c.others(old)[1]
	start0 := postmasterStarts(t, replica)[replica.name]
	tl := mustStatus(t, old).Timeline
	oldOffset, replicaOffset := old.logSize(), replica.logSize()
	w := c.watchLeader(t, c.mustDCS(t).rev+1, nil)

	// Each operation is scheduled from when the last command returned, so
	// a slow patronictl (seconds on a loaded machine) cannot push the
	// second one into the past.
	schedule := func(args ...string) (time.Time, string) {
		at := time.Now().Add(scheduleAhead).Truncate(time.Second)
		atText := at.UTC().Format(time.RFC3339)
		out := ctlOK(t, c, append(append([]string{}, args...), "--scheduled", atText, "--force")...)
		if time.Now().After(at.Add(-5 * time.Second)) {
			t.Fatalf("scheduling took until %s, too close to the scheduled time %s to tell early from on time", time.Now().Format(time.RFC3339Nano), atText)
		}
		return at, out
	}
	at, out := schedule("switchover", c.scope, "--candidate", cand.name)
	atText := at.UTC().Format(time.RFC3339)
	wantOutput(t, out, "Switchover scheduled")
	restartAt, out := schedule("restart", c.scope, replica.name)
	restartText := restartAt.UTC().Format(time.RFC3339)
	wantOutput(t, out, "Success: restart scheduled on member "+replica.name)

	// Before the time both plans are visible in the DCS.
	poll.Eventually(t, time.Until(at), replica.name+"'s member key to carry the scheduled restart", func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		if _, ok := memberData(t, v, replica.name)["scheduled_restart"]; !ok {
			return fmt.Errorf("member key %s", v.kv["members/"+replica.name].Value)
		}
		return nil
	})

	if f := keyJSON(t, c.mustDCS(t), "failover"); f["scheduled_at"] == nil || f["member"] != cand.name && f["candidate"] != cand.name {
		t.Errorf("/failover %v: want the scheduled switchover to %s", f, cand.name)
	}

	// Watch both happen.
	deadline := at.Add(2*loopWait*time.Second + scheduleMargin)
	restartDeadline := restartAt.Add(2*loopWait*time.Second + scheduleMargin)
	var restartedAt time.Time
	for time.Now().Before(restartDeadline) && restartedAt.IsZero() {
		if starts, err := postmasterStartsErr(replica); err == nil && !starts[replica.name].Equal(start0) {
			restartedAt = starts[replica.name]
		}
		time.Sleep(pollInterval)
	}
	if restartedAt.IsZero() {
		t.Errorf("%s: the postmaster did not restart by %s (scheduled at %s)", replica.name, restartDeadline.Format(time.RFC3339), restartText)
	} else {
		t.Logf("%s: postmaster restarted at %s (scheduled at %s)", replica.name, restartedAt.Format("15:04:05.000"), restartText)
		if restartedAt.Before(restartAt) {
			t.Errorf("%s: the postmaster restarted at %s, before its scheduled time %s", replica.name, restartedAt.Format(time.RFC3339Nano), restartText)
		}
		if late := restartAt.Add(loopWait*time.Second + scheduleMargin); restartedAt.After(late) {
			t.Errorf("%s: the postmaster restarted at %s, after %s (scheduled at %s)", replica.name, restartedAt.Format(time.RFC3339Nano), late.Format(time.RFC3339), restartText)
		}
	}
	assertScheduledCycle(t, replica, replicaOffset, "restart", restartAt)

	var changedAt time.Time
	poll.Eventually(t, time.Until(deadline)+time.Second, "the leader key to leave "+old.name, func() error {
		for _, e := range w.snapshot() {
			if e.deleted || e.value != old.name {
				changedAt = e.at
				return nil
			}
		}
		return fmt.Errorf("leader key events %+v", w.snapshot())
	})

	t.Logf("the leader key left %s at %s (switchover scheduled at %s)", old.name, changedAt.Format("15:04:05.000"), atText)
	if changedAt.Before(at) {
		t.Errorf("the leader key left %s at %s, before the scheduled time %s", old.name, changedAt.Format(time.RFC3339Nano), atText)
	}
	if changedAt.After(deadline) {
		t.Errorf("the leader key left %s at %s, after %s (scheduled at %s)", old.name, changedAt.Format(time.RFC3339Nano), deadline.Format(time.RFC3339), atText)
	}
	if cy := assertScheduledCycle(t, old, oldOffset, "demote", at); !cy.at.IsZero() {
		t.Logf("%s: demote began at %s, the leader key left %v later", old.name, cy.at.Format("15:04:05.000"), changedAt.Sub(cy.at).Round(time.Millisecond))
	}

	c.waitNewLeader(t, old, cand, tl)
	v := c.mustDCS(t)
	if kv := v.kv["failover"]; kv != nil && kv.Value != "{}" && kv.Value != "" {
		t.Errorf("/failover after the switchover: %s", kv.Value)
	}
	if _, ok := memberData(t, v, replica.name)["scheduled_restart"]; ok {
		t.Errorf("%s: the member key still carries the scheduled restart after it ran: %s", replica.name, v.kv["members/"+replica.name].Value)
	}
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// assertScheduledCycle checks the cycle that began a scheduled action (the
// first logged after offset with the action): it ended after the scheduled
// time and within one loop_wait (and one cycle's work) of it.
func assertScheduledCycle(t testing.TB, m *member, offset int64, action string, at time.Time) cycle {
	t.Helper()
	for _, cy := range m.cyclesSince(offset) {
		if !cy.has(action) {
			continue
		}
		if cy.at.Before(at) {
			t.Errorf("%s: the %s scheduled at %s began at %s, before its time:\n%s", m.name, action, at.Format(time.RFC3339), cy.at.Format(time.RFC3339Nano), cy.line)
		}
		if late := at.Add(loopWait*time.Second + scheduleSlack); cy.at.After(late) {
			t.Errorf("%s: the %s scheduled at %s began at %s, more than loop_wait after its time:\n%s", m.name, action, at.Format(time.RFC3339), cy.at.Format(time.RFC3339Nano), cy.line)
		}
		return cy
	}
	t.Errorf("%s: no logged cycle ran %s:\n%s", m.name, action, strings.Join(m.logSince(offset), "\n"))
	return cycle{}
}

// TestPausedPostmasterKill: while the cluster is paused, SIGKILL of the
// primary's postmaster starts nothing: no replica is promoted, the
// postmaster is not started again, no new timeline; the agent gives the
// leader key up, as Patroni does. Once resumed, the cluster heals to
// exactly one primary.
func TestPausedPostmasterKill(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{auth: true})
	primary := c.waitHealthy(t, formTimeout)
	c.guardSinglePrimary(t)
	replicas := c.others(primary)
	primary.exec(t, "create table e2e (id serial primary key, note text)")
	primary.exec(t, "insert into e2e (note) values ('before the pause')")
	for _, r := range replicas {
		r.waitRow(t, "before the pause", formTimeout)
	}
	tl := mustStatus(t, primary).Timeline

	a := primary.mustCall(t, http.MethodPatch, "/config", map[string]any{"pause": true}, apiUser, apiPassword)
	if a.code != http.StatusOK {
		t.Fatalf("PATCH /config pause: %d %s", a.code, a.body)
	}
	c.waitPause(t, true)

	starts := postmasterStarts(t, replicas...)
	offsets := map[string]int64{}
	for _, m := range c.m {
		offsets[m.name] = m.logSize()
	}
	primary.kill(t, postmasterOnly, syscall.SIGKILL)
	killedAt := time.Now()

	window := 3*loopWait*time.Second + 2*time.Second
	holdsFor(t, "nothing to start or promote while paused", window, func() error {
		if pid := primary.postmasterPID(); pid != 0 {
			return fmt.Errorf("%s: the killed postmaster was started again (pid %d) %v after the kill", primary.name, pid, time.Since(killedAt).Round(time.Millisecond))
		}
		for _, r := range replicas {
			if ok, err := r.writable(); err == nil && ok {
				return fmt.Errorf("%s was promoted %v after the kill", r.name, time.Since(killedAt).Round(time.Millisecond))
			}
		}
		v, err := c.dcs()
		if err != nil {
			return err
		}
		if l := v.leader(); l != "" && l != primary.name {
			return fmt.Errorf("%s took the leader key while paused", l)
		}
		return nil
	})
	// Patroni: paused and postgres not running, the holder deletes the
	// leader key (and nobody else may take it).
	if l := c.mustDCS(t).leader(); l != "" {
		t.Errorf("the leader key still names %q %v after the primary's postmaster died in a paused cluster", l, window)
	}
	for _, r := range replicas {
		st := mustStatus(t, r)
		if st.Role != "replica" || st.Timeline != tl {
			t.Errorf("%s: role %q timeline %d after the kill, want a replica on timeline %d", r.name, st.Role, st.Timeline, tl)
		}
	}
	if after := postmasterStarts(t, replicas...); !mapsEqual(starts, after) {
		t.Errorf("replicas restarted while paused: postmaster start times %v, before %v", after, starts)
	}
	if st := mustStatus(t, primary); st.State == "running" || !strings.Contains(st.raw, `"pause":true`) {
		t.Errorf("%s: /patroni says state %q (pause shown: %v) with its postmaster killed in a paused cluster", primary.name, st.State, strings.Contains(st.raw, `"pause":true`))
	}
	for _, m := range c.m {
		for _, cy := range m.cyclesSince(offsets[m.name]) {
			for _, act := range []string{"start", "promote", "acquire_leader", "restart", "demote"} {
				if cy.has(act) {
					t.Errorf("%s: %s while paused:\n%s", m.name, act, cy.line)
				}
			}
		}
	}

	resumeOffsets := map[string]int64{}
	for _, m := range c.m {
		resumeOffsets[m.name] = m.logSize()
	}
	a = replicas[0].mustCall(t, http.MethodPatch, "/config", map[string]any{"pause": nil}, apiUser, apiPassword)
	if a.code != http.StatusOK {
		t.Fatalf("PATCH /config resume: %d %s", a.code, a.body)
	}
	leader := c.waitHealthy(t, formTimeout)
	writable := 0
	for _, m := range c.m {
		if ok, err := m.writable(); err == nil && ok {
			writable++
		}
	}
	if writable != 1 {
		t.Errorf("%d writable servers after the resume, want exactly one", writable)
	}
	how := "restarted in place"
	if leader != primary {
		how = "failed over to " + leader.name
		if st := mustStatus(t, leader); st.Timeline <= tl {
			t.Errorf("%s was promoted but runs on timeline %d, the old one %d", leader.name, st.Timeline, tl)
		}
	}
	t.Logf("after the resume the cluster %s", how)
	leader.exec(t, "insert into e2e (note) values ('after the resume')")
	for _, m := range c.others(leader) {
		m.waitRow(t, "after the resume", formTimeout)
	}
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// TestRESTOperations: the REST API's unsafe methods refuse requests
// without or with wrong credentials and change nothing; dynamic
// configuration changes through PATCH /config apply live, invalid ones
// are refused naming the key, and a restart-only setting marks every
// member pending restart.
func TestRESTOperations(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{auth: true})
	leader := c.waitHealthy(t, formTimeout)
	c.guardSinglePrimary(t)
	replica := c.others(leader)[0]
	agentPIDs := map[string]int{}
	for _, m := range c.m {
		agentPIDs[m.name] = m.current().cmd.Process.Pid
	}

	if !t.Run("unsafe calls need credentials", func(t *testing.T) {
		// Something for DELETE /switchover and DELETE /restart to delete.
		at := time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
		a := leader.mustCall(t, http.MethodPost, "/switchover", map[string]any{"leader": leader.name, "scheduled_at": at}, apiUser, apiPassword)
		if a.code != http.StatusAccepted {
			t.Fatalf("scheduling a switchover with credentials: %d %s", a.code, a.body)
		}
		a = replica.mustCall(t, http.MethodPost, "/restart", map[string]any{"schedule": at}, apiUser, apiPassword)
		if a.code != http.StatusAccepted {
			t.Fatalf("scheduling a restart with credentials: %d %s", a.code, a.body)
		}
		poll.Eventually(t, opTimeout, replica.name+"'s member key to carry the scheduled restart", func() error {
			v, err := c.dcs()
			if err != nil {
				return err
			}
			if _, ok := memberData(t, v, replica.name)["scheduled_restart"]; !ok {
				return fmt.Errorf("member key %s", v.kv["members/"+replica.name].Value)
			}
			return nil
		})

		marker := filepath.Join(replica.dataDir, "e2e-marker")
		if err := os.WriteFile(marker, []byte("must survive\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		chownToAgent(t, marker)
		before := c.mustDCS(t)
		starts := postmasterStarts(t, c.m...)

		full := keyJSON(t, before, "config")
		full["loop_wait"] = 7
		calls := []struct {
			m      *member
			method string
			path   string
			body   any
		}{
			{leader, http.MethodPost, "/switchover", map[string]any{"leader": leader.name, "candidate": replica.name}},
			{leader, http.MethodPost, "/failover", map[string]any{"candidate": replica.name}},
			{leader, http.MethodDelete, "/switchover", nil},
			{leader, http.MethodPost, "/restart", map[string]any{}},
			{replica, http.MethodPost, "/restart", map[string]any{}},
			{replica, http.MethodDelete, "/restart", nil},
			{leader, http.MethodPatch, "/config", map[string]any{"loop_wait": 7}},
			{leader, http.MethodPut, "/config", full},
			{replica, http.MethodPost, "/reinitialize", map[string]any{"force": true}},
			{leader, http.MethodPost, "/reload", nil},
		}
		for _, cl := range calls {
			for _, cred := range []struct{ user, pass, want string }{
				{"", "", "no auth header received"},
				{apiUser, "wrong-" + apiPassword, "not authenticated"},
				{"intruder", apiPassword, "not authenticated"},
			} {
				a := cl.m.mustCall(t, cl.method, cl.path, cl.body, cred.user, cred.pass)
				what := fmt.Sprintf("%s %s on %s as %q", cl.method, cl.path, cl.m.name, cred.user)
				if a.code != http.StatusUnauthorized {
					t.Errorf("%s: %d %s, want 401", what, a.code, a.body)
				}
				if got := a.header.Get("WWW-Authenticate"); got != `Basic realm="Patroni"` {
					t.Errorf("%s: WWW-Authenticate %q, want %q", what, got, `Basic realm="Patroni"`)
				}
				if !strings.Contains(a.body, cred.want) {
					t.Errorf("%s: body %q, want %q", what, a.body, cred.want)
				}
			}
		}
		// Long enough for a request let through by mistake to show: the
		// restart, switchover and re-clone would each begin within a cycle.
		time.Sleep(2*loopWait*time.Second + time.Second)
		after := c.mustDCS(t)
		for _, k := range []string{"failover", "config", "leader"} {
			b, a := before.kv[k], after.kv[k]
			if b == nil || a == nil || a.Value != b.Value || a.ModRevision != b.ModRevision {
				t.Errorf("/%s changed: before %+v, after %+v", k, b, a)
			}
		}
		if _, ok := memberData(t, after, replica.name)["scheduled_restart"]; !ok {
			t.Errorf("%s: the scheduled restart is gone after unauthenticated DELETE /restart", replica.name)
		}
		if got := postmasterStarts(t, c.m...); !mapsEqual(starts, got) {
			t.Errorf("postmaster start times changed: %v, before %v", got, starts)
		}
		if _, err := os.Stat(marker); err != nil {
			t.Errorf("%s: the data directory was replaced: %v", replica.name, err)
		}
		// The same requests with the credentials do act.
		a = leader.mustCall(t, http.MethodDelete, "/switchover", nil, apiUser, apiPassword)
		if a.code != http.StatusOK || a.body != "scheduled switchover deleted" {
			t.Errorf("DELETE /switchover with credentials: %d %q", a.code, a.body)
		}
		a = replica.mustCall(t, http.MethodDelete, "/restart", nil, apiUser, apiPassword)
		if a.code != http.StatusOK || a.body != "scheduled restart deleted" {
			t.Errorf("DELETE /restart with credentials: %d %q", a.code, a.body)
		}
	}) {
		t.FailNow()
	}

	if !t.Run("invalid dynamic configuration", func(t *testing.T) {
		for _, bad := range []struct {
			patch map[string]any
			keys  []string
		}{
			{map[string]any{"loop_wait": 10, "retry_timeout": 6}, []string{"loop_wait", "retry_timeout", "ttl"}},
			{map[string]any{"ttl": 0}, []string{"ttl"}},
			{map[string]any{"retry_timeout": 0}, []string{"retry_timeout"}},
			{map[string]any{"loop_wait": "soon"}, []string{"loop_wait"}},
			{map[string]any{"ttl": []int{30}}, []string{"ttl"}},
		} {
			before := c.mustDCS(t).kv["config"]
			a := leader.mustCall(t, http.MethodPatch, "/config", bad.patch, apiUser, apiPassword)
			if a.code != http.StatusBadRequest {
				t.Errorf("PATCH /config %v: %d %s, want 400", bad.patch, a.code, a.body)
			} else {
				t.Logf("PATCH /config %v: 400 %s", bad.patch, a.body)
			}
			for _, k := range bad.keys {
				if !strings.Contains(a.body, k) {
					t.Errorf("PATCH /config %v: the answer %q does not name %s", bad.patch, a.body, k)
				}
			}
			if after := c.mustDCS(t).kv["config"]; after.ModRevision != before.ModRevision {
				t.Errorf("PATCH /config %v was refused but /config changed: %s", bad.patch, after.Value)
			}
		}
	}) {
		t.FailNow()
	}

	if !t.Run("ttl loop_wait and retry_timeout apply live", func(t *testing.T) {
		const newTTL, newLoopWait, newRetry = 30, 5, 8
		before := map[string][]time.Duration{}
		for _, m := range c.m {
			before[m.name] = timerGaps(m.cyclesSince(0))
		}
		a := leader.mustCall(t, http.MethodPatch, "/config", map[string]any{"ttl": newTTL, "loop_wait": newLoopWait, "retry_timeout": newRetry}, apiUser, apiPassword)
		if a.code != http.StatusOK {
			t.Fatalf("PATCH /config: %d %s", a.code, a.body)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(a.body), &got); err != nil || got["ttl"] != float64(newTTL) || got["loop_wait"] != float64(newLoopWait) || got["retry_timeout"] != float64(newRetry) {
			t.Errorf("PATCH /config answered %s (%v), want the new configuration", a.body, err)
		}
		// ttl: the agents' leases (member keys, and the leader key with
		// its holder's) are granted anew with the new TTL.
		c.waitLeaseTTL(t, newTTL)
		// loop_wait: the cadence of the cycles the timer wakes. Wait for
		// the first cycle of every agent on the new value, then watch.
		measureFrom := map[string]int64{}
		for _, m := range c.m {
			measureFrom[m.name] = m.logSize()
		}
		poll.Eventually(t, 4*newLoopWait*time.Second, "two timer cycles of every agent after the change", func() error {
			for _, m := range c.m {
				if gaps := timerGaps(m.cyclesSince(measureFrom[m.name])); len(gaps) < 2 {
					return fmt.Errorf("%s: %d timer cycles with loop_wait %d:\n%s", m.name, len(gaps), newLoopWait, strings.Join(m.logSince(measureFrom[m.name]), "\n"))
				}
			}
			return nil
		})

		for _, m := range c.m {
			old := before[m.name]
			if len(old) > 0 && median(old) > loopWait*time.Second+time.Second {
				t.Errorf("%s: cycles %v apart before the change with loop_wait %d: the measure is off", m.name, median(old), loopWait)
			}
			gaps := timerGaps(m.cyclesSince(measureFrom[m.name]))
			t.Logf("%s: timer cycles %v apart with loop_wait %d (before: %v)", m.name, gaps, newLoopWait, median(old))
			for _, g := range gaps {
				if g < newLoopWait*time.Second-100*time.Millisecond {
					t.Errorf("%s: a timer cycle %v after the one before, with loop_wait %d", m.name, g, newLoopWait)
				}
			}
			if md := median(gaps); md > newLoopWait*time.Second+time.Second {
				t.Errorf("%s: timer cycles %v apart with loop_wait %d", m.name, md, newLoopWait)
			}
		}
		// retry_timeout bounds DCS and PostgreSQL retries; nothing outside
		// the agent shows it without breaking the DCS.
		a = leader.mustCall(t, http.MethodPatch, "/config", map[string]any{"ttl": int(ttl / time.Second), "loop_wait": loopWait, "retry_timeout": retryTimeout}, apiUser, apiPassword)
		if a.code != http.StatusOK {
			t.Fatalf("PATCH /config back: %d %s", a.code, a.body)
		}
		c.waitLeaseTTL(t, int(ttl/time.Second))
		for _, m := range c.m {
			if p := m.current(); p == nil || p.exited() || p.cmd.Process.Pid != agentPIDs[m.name] {
				t.Errorf("%s: the agent was restarted", m.name)
			}
		}
	}) {
		t.FailNow()
	}

	t.Run("restart-only setting", func(t *testing.T) {
		starts := postmasterStarts(t, c.m...)
		a := replica.mustCall(t, http.MethodPatch, "/config", map[string]any{"postgresql": map[string]any{"parameters": map[string]any{"max_connections": 40}}}, apiUser, apiPassword)
		if a.code != http.StatusOK {
			t.Fatalf("PATCH /config max_connections: %d %s", a.code, a.body)
		}
		for _, m := range c.m {
			poll.Eventually(t, opTimeout, m.name+" to report a pending restart for max_connections", func() error {
				st, err := m.status()
				if err != nil {
					return err
				}
				var doc struct {
					PendingRestart       bool                         `json:"pending_restart"`
					PendingRestartReason map[string]map[string]string `json:"pending_restart_reason"`
				}
				if err := json.Unmarshal([]byte(st.raw), &doc); err != nil {
					return err
				}
				if !doc.PendingRestart || doc.PendingRestartReason["max_connections"]["new_value"] != "40" {
					return fmt.Errorf("/patroni %s", st.raw)
				}
				return nil
			})

		}
		poll.Eventually(t, opTimeout, "patronictl list -e to show every member pending restart", func() error {
			out, err := patronictl(t, c, "list", c.scope, "-e", "-f", "json")
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			var rows []map[string]any
			if err := json.Unmarshal([]byte(out), &rows); err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if len(rows) != len(c.m) {
				return fmt.Errorf("%d rows: %s", len(rows), out)
			}
			for _, r := range rows {
				if r["Pending restart"] != "*" {
					return fmt.Errorf("%v: Pending restart %q", r["Member"], r["Pending restart"])
				}
			}
			return nil
		})

		if got := postmasterStarts(t, c.m...); !mapsEqual(starts, got) {
			t.Errorf("a restart-only setting restarted postgres by itself: %v, before %v", got, starts)
		}
		// A conditional restart applies it.
		for _, m := range c.m {
			a := m.mustCall(t, http.MethodPost, "/restart", map[string]any{"restart_pending": true}, apiUser, apiPassword)
			if a.code != http.StatusOK {
				t.Errorf("%s: POST /restart restart_pending: %d %s", m.name, a.code, a.body)
			}
		}
		for _, m := range c.m {
			poll.Eventually(t, opTimeout, m.name+" to run with max_connections 40 and nothing pending", func() error {
				v, err := m.query("show max_connections")
				if err != nil {
					return err
				}
				if !slices.Equal(v, []string{"40"}) {
					return fmt.Errorf("max_connections %v", v)
				}
				st, err := m.status()
				if err != nil {
					return err
				}
				if strings.Contains(st.raw, `"pending_restart"`) {
					return fmt.Errorf("/patroni %s", st.raw)
				}
				return nil
			})

		}
		c.waitHealthy(t, opTimeout)
	})
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// ---- helpers ----

// apiAnswer is a REST API response.
type apiAnswer struct {
	code   int
	header http.Header
	body   string
}

var longHTTPClient = &http.Client{Timeout: longHTTPTimeout}

// call sends method path to the member's REST API with body as JSON (none
// when nil) and basic authentication when user is set.
func (m *member) call(method, path string, body any, user, pass string) (apiAnswer, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return apiAnswer{}, err
		}
		rd = bytes.NewReader(data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), longHTTPTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("http://127.0.0.1:%d%s", m.apiPort, path), rd)
	if err != nil {
		return apiAnswer{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := longHTTPClient.Do(req)
	if err != nil {
		return apiAnswer{}, fmt.Errorf("%s: %s %s: %w", m.name, method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return apiAnswer{code: resp.StatusCode, header: resp.Header, body: strings.TrimSpace(string(data))}, err
}

func (m *member) mustCall(t testing.TB, method, path string, body any, user, pass string) apiAnswer {
	t.Helper()
	a, err := m.call(method, path, body, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// ctlOK runs patronictl and fails the test when it exits non-zero.
// patronictl 3.0.2 exits 0 after many failures too ("Failed: ...",
// "Switchover failed"), so callers check its output as well.
func ctlOK(t testing.TB, c *testCluster, args ...string) string {
	t.Helper()
	out, err := patronictl(t, c, args...)
	if err != nil {
		t.Fatalf("patronictl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("patronictl %s:\n%s", strings.Join(args, " "), out)
	for _, bad := range []string{"Failed", "failed,", "falling back to DCS", "Traceback"} {
		if strings.Contains(out, bad) {
			t.Errorf("patronictl %s reported a failure:\n%s", strings.Join(args, " "), out)
			break
		}
	}
	return out
}

func wantOutput(t testing.TB, out, want string) {
	t.Helper()
	if !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}

// waitNewLeader waits until a member other than old (want, when set) holds
// the leader key, runs as a writable primary on a timeline after tl and
// every other member streams from it; it returns the leader and its
// timeline.
func (c *testCluster) waitNewLeader(t testing.TB, old, want *member, tl int) (*member, int) {
	t.Helper()
	var next *member
	newTL := 0
	poll.Eventually(t, opTimeout, "a new primary on a new timeline", func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		name := v.leader()
		if name == "" || name == old.name || want != nil && name != want.name {
			return fmt.Errorf("leader key %q", name)
		}
		next = c.member(name)
		st, err := next.status()
		if err != nil {
			return err
		}
		if st.Role != "primary" || st.Timeline <= tl {
			return fmt.Errorf("%s: role %q timeline %d (the old one %d)", name, st.Role, st.Timeline, tl)
		}
		newTL = st.Timeline
		return nil
	})

	if newTL != tl+1 {
		t.Errorf("%s: timeline %d after one switchover from timeline %d", next.name, newTL, tl)
	}
	if got := c.waitHealthy(t, opTimeout); got != next {
		t.Fatalf("the leader moved on to %s", got.name)
	}
	return next, newTL
}

// waitHealthyStatus waits for a healthy cluster and returns its leader's
// status.
func (c *testCluster) waitHealthyStatus(t testing.TB) status {
	t.Helper()
	return mustStatus(t, c.waitHealthy(t, opTimeout))
}

// waitPause waits until every member key's pause flag is paused.
func (c *testCluster) waitPause(t testing.TB, paused bool) {
	t.Helper()
	poll.Eventually(t, opTimeout, fmt.Sprintf("every member key to say pause %v", paused), func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		for _, m := range c.m {
			p, _ := memberData(t, v, m.name)["pause"].(bool)
			if p != paused {
				return fmt.Errorf("%s: %s", m.name, v.kv["members/"+m.name].Value)
			}
		}
		return nil
	})

}

// waitLeaseTTL waits until every member key and the leader key carry
// leases granted for ttl seconds.
func (c *testCluster) waitLeaseTTL(t testing.TB, ttl int) {
	t.Helper()
	poll.Eventually(t, opTimeout, fmt.Sprintf("the agents' leases to be granted for %ds", ttl), func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		keys := []string{"leader"}
		for _, m := range c.m {
			keys = append(keys, "members/"+m.name)
		}
		for _, k := range keys {
			kv := v.kv[k]
			if kv == nil {
				return fmt.Errorf("no %s key", k)
			}
			granted, err := leaseGranted(kv.Lease)
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			if granted != ttl {
				return fmt.Errorf("%s: lease %x granted for %ds", k, kv.Lease, granted)
			}
		}
		return nil
	})

}

// leaseGranted is the TTL an etcd lease was granted with, in seconds.
func leaseGranted(id int64) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := env.kv.TimeToLive(ctx, clientv3.LeaseID(id))
	if err != nil {
		return 0, err
	}
	return int(resp.GrantedTTL), nil
}

// keyJSON decodes the cluster key k (relative to the scope) as a JSON
// object; an absent key is an empty object.
func keyJSON(t testing.TB, v dcsView, k string) map[string]any {
	t.Helper()
	out := map[string]any{}
	kv := v.kv[k]
	if kv == nil || kv.Value == "" {
		return out
	}
	if err := json.Unmarshal([]byte(kv.Value), &out); err != nil {
		t.Fatalf("/%s is not a JSON object: %v: %s", k, err, kv.Value)
	}
	return out
}

// memberData is the member key of name, decoded.
func memberData(t testing.TB, v dcsView, name string) map[string]any {
	t.Helper()
	return keyJSON(t, v, "members/"+name)
}

// postmasterStarts returns pg_postmaster_start_time() of each member.
func postmasterStarts(t testing.TB, ms ...*member) map[string]time.Time {
	t.Helper()
	var out map[string]time.Time
	poll.Eventually(t, opTimeout, "the postmaster start times", func() error {
		var err error
		out, err = postmasterStartsErr(ms...)
		return err
	})

	return out
}

func postmasterStartsErr(ms ...*member) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	for _, m := range ms {
		v, err := m.query(`select to_char(pg_postmaster_start_time() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`)
		if err != nil {
			return nil, err
		}
		if len(v) != 1 {
			return nil, fmt.Errorf("%s: postmaster start time %v", m.name, v)
		}
		ts, err := time.Parse(time.RFC3339Nano, v[0])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.name, err)
		}
		out[m.name] = ts
	}
	return out, nil
}

func mapsEqual(a, b map[string]time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !w.Equal(v) {
			return false
		}
	}
	return true
}

// holdsFor checks cond every poll interval for d and fails the test at the
// first error.
func holdsFor(t testing.TB, what string, d time.Duration, cond func() error) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if err := cond(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(pollInterval)
	}
}

// timerGaps returns, for each cycle the loop_wait timer woke, how long
// after the cycle before it ended: loop_wait plus the cycle's own work.
func timerGaps(cycles []cycle) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(cycles); i++ {
		cur, prev := cycles[i], cycles[i-1]
		if cur.trigger == "loop_wait" && !cur.at.IsZero() && !prev.at.IsZero() {
			out = append(out, cur.at.Sub(prev.at))
		}
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
