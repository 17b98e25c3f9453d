//go:build integration

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-ha/custos/testkit/poll"
	"github.com/custos-ha/custos/testkit/servers"
)

// degradedFor is how long the bad-input tests watch an agent that must not
// act: several loop_waits.
const degradedFor = 4 * loopWait * time.Second

// TestWrongBinDir: bin_dir without PostgreSQL in it. The agent exits at
// once with an error naming bin_dir, without a crash and without touching
// the DCS or the data directory.
func TestWrongBinDir(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{members: 1, edit: func(m *member) {
		m.binDir = filepath.Join(m.dir, "no-such-postgresql", "bin")
	}})
	m := c.m[0]
	st := m.waitExit(t, formTimeout)
	out := strings.Join(m.logSince(0), "\n")
	if st.ExitCode() != 1 {
		t.Errorf("the agent exited with %v, want exit status 1", st)
	}
	if !strings.Contains(out, "postgresql.bin_dir") || !strings.Contains(out, m.binDir) {
		t.Errorf("the agent's error does not name postgresql.bin_dir and %s:\n%s", m.binDir, out)
	}
	if _, err := os.Stat(m.dataDir); err == nil {
		t.Errorf("the agent created the data directory without PostgreSQL programs")
	}
	if v := c.mustDCS(t); len(v.kv) > 0 {
		t.Errorf("the agent wrote to the DCS: %v", v.keys())
	}
	m.assertNoCrash(t)
	t.Logf("agent output:\n%s", out)
}

// TestForeignDataDir: a data directory owned by another user, which the
// agent cannot use. It reports that in its log and in /patroni and starts
// nothing.
func TestForeignDataDir(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{members: 1, noStart: true, edit: func(m *member) {
		if env.cred != nil {
			// The tests run as root: a directory of root's, mode 0700.
			m.dataDir = filepath.Join(m.dir, "data-of-root")
		} else {
			// Run as another user: inside root's home (0700 on Debian).
			m.dataDir = "/root/custos-e2e-data"
		}
	}})
	m := c.m[0]
	if env.cred != nil {
		if err := os.Mkdir(m.dataDir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	m.start(t)
	poll.Eventually(t, formTimeout, "/patroni to report the data directory problem", func() error {
		st, err := m.status()
		if err != nil {
			return err
		}
		if !strings.Contains(strings.Join(st.problems(), "\n"), m.dataDir) {
			return fmt.Errorf("problems %q", st.problems())
		}
		return nil
	})

	// Watch it for a while: it must neither start anything nor stop.
	time.Sleep(degradedFor) // the agent must stay idle for several loops
	if !m.running() {
		t.Fatalf("the agent exited (%v)", m.current().state)
	}
	st := mustStatus(t, m)
	if st.State == "running" || st.Role == "primary" {
		t.Errorf("/patroni: state %q role %q with an unusable data directory", st.State, st.Role)
	}
	if m.postmasterPID() != 0 {
		t.Errorf("a postmaster runs")
	}
	if v := c.mustDCS(t); v.leader() != "" || v.kv["initialize"] != nil && v.kv["initialize"].Value != "" {
		t.Errorf("the agent bootstrapped or led: leader %q, initialize %+v", v.leader(), v.kv["initialize"])
	}
	found := false
	for _, l := range m.logSince(0) {
		if strings.Contains(l, m.dataDir) && (strings.Contains(l, "[ERROR]") || strings.Contains(l, "[WARN]") || strings.Contains(l, "unusable")) {
			found = true
			break
		}
	}
	if !found {
		t.Errorf("the log does not name the data directory's problem:\n%s", strings.Join(m.logSince(0), "\n"))
	}
	m.assertNoCrash(t)
	t.Logf("/patroni: %s", st.raw)
}

// TestUnreachableDCS: the configured etcd address does not answer at
// start. The agent runs degraded, says why in /patroni, and neither
// bootstraps nor promotes; once etcd answers at that address, it
// bootstraps the cluster.
func TestUnreachableDCS(t *testing.T) {
	t.Parallel()
	port := freePorts(t, 1)[0]
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	c := startCluster(t, clusterOpts{members: 1, edit: func(m *member) { m.dcsHosts = []string{addr} }})
	m := c.m[0]
	poll.Eventually(t, formTimeout, "/patroni to report the DCS problem", func() error {
		st, err := m.status()
		if err != nil {
			return err
		}
		if !strings.Contains(strings.ToLower(strings.Join(st.problems(), "\n")), "dcs") {
			return fmt.Errorf("problems %q", st.problems())
		}
		return nil
	})

	// Each cycle waits retry_timeout for the DCS; a few of them must pass
	// without the agent doing anything.
	poll.Eventually(t, 3*(retryTimeout+loopWait)*time.Second+formTimeout, "three HA cycles without the DCS", func() error {
		if !m.running() {
			return fmt.Errorf("the agent exited (%v)", m.current().state)
		}
		if n := len(m.cyclesSince(0)); n < 3 {
			return fmt.Errorf("%d cycles", n)
		}
		return nil
	})

	st := mustStatus(t, m)
	if _, err := os.Stat(filepath.Join(m.dataDir, "PG_VERSION")); err == nil || m.postmasterPID() != 0 || st.Role == "primary" {
		t.Fatalf("the agent bootstrapped without a DCS: role %q, postmaster %d", st.Role, m.postmasterPID())
	}
	for _, cy := range m.cyclesSince(0) {
		if !strings.Contains(cy.reason, "DCS is not accessible") {
			t.Errorf("a cycle without the DCS did something else: %s", cy.line)
		}
		if len(cy.actions) > 0 && !(len(cy.actions) == 1 && cy.has("touch_member")) {
			t.Errorf("a cycle without the DCS acted: %s", cy.line)
		}
	}
	t.Logf("/patroni while the DCS is down: %s", st.raw)

	// etcd appears at the configured address. The proxy's clean-up,
	// registered after startCluster's, runs before the agents stop: they
	// shut down against a reachable DCS.
	p, err := servers.StartProxy(addr, env.etcd.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	poll.Eventually(t, formTimeout, "the agent to bootstrap once the DCS answers", func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		if v.leader() != m.name {
			return fmt.Errorf("leader key %q", v.leader())
		}
		if ok, err := m.writable(); err != nil || !ok {
			return fmt.Errorf("writable %v %v", ok, err)
		}
		return m.noProblems()
	})

	m.assertNoCrash(t)
}

// noProblems is an error while the member's /patroni lists problems.
func (m *member) noProblems() error {
	st, err := m.status()
	if err != nil {
		return err
	}
	if len(st.problems()) > 0 {
		return fmt.Errorf("problems %q", st.problems())
	}
	return nil
}

// TestMalformedMemberKey: a member key that is not JSON, written by hand.
// The agents log it, /patroni lists it, and the cluster keeps working with
// exactly one primary.
func TestMalformedMemberKey(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{members: 2})
	primary := c.waitHealthy(t, formTimeout)
	c.guardSinglePrimary(t)
	replica := c.others(primary)[0]
	leaderBefore := c.mustDCS(t).kv["leader"]
	offsets := map[string]int64{}
	for _, m := range c.m {
		offsets[m.name] = m.logSize()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := env.kv.Put(ctx, c.prefix()+"members/bogus", "{not json"); err != nil {
		t.Fatal(err)
	}
	for _, m := range c.m {
		poll.Eventually(t, formTimeout, m.name+" to report members/bogus in /patroni", func() error {
			st, err := m.status()
			if err != nil {
				return err
			}
			if !strings.Contains(strings.Join(st.problems(), "\n"), "members/bogus") {
				return fmt.Errorf("problems %q", st.problems())
			}
			return nil
		})

	}
	// The loop keeps going: more cycles, without errors, same leader.
	for _, m := range c.m {
		poll.Eventually(t, formTimeout, m.name+" to run two more HA cycles", func() error {
			if n := len(m.cyclesSince(offsets[m.name])); n < 2 {
				return fmt.Errorf("%d cycles", n)
			}
			return nil
		})

		for _, cy := range m.cyclesSince(offsets[m.name]) {
			if cy.err != "" {
				t.Errorf("%s: a cycle failed after the bad key appeared: %s", m.name, cy.line)
			}
		}
		logged := false
		for _, l := range m.logSince(offsets[m.name]) {
			if strings.Contains(l, "members/bogus") {
				logged = true
			}
		}
		if !logged {
			t.Errorf("%s: the log does not mention members/bogus", m.name)
		}
	}
	if after := c.mustDCS(t).kv["leader"]; after == nil || after.Value != leaderBefore.Value || after.CreateRevision != leaderBefore.CreateRevision {
		t.Errorf("the leader changed: %+v, before %+v", after, leaderBefore)
	}
	primary.exec(t, "create table e2e (id serial primary key, note text)")
	primary.exec(t, "insert into e2e (note) values ('despite the bad key')")
	replica.waitRow(t, "despite the bad key", formTimeout)
	if _, err := c.healthy(); err != nil {
		t.Errorf("the cluster is not healthy with the bad key: %v", err)
	}
	// Patroni's tool still lists the cluster.
	out, err := patronictl(t, c, "list")
	if err != nil {
		t.Errorf("patronictl list: %v\n%s", err, out)
	}
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// TestMalformedClusterValues: /initialize, /config and /status overwritten
// by hand (etcdctl writes what it is given): /initialize with garbage,
// /config with loop_wait 0 and retry_timeout 0, /status with garbage. Read
// as they are, the leader would release its key under its running primary
// (a system identifier mismatch) and every DCS call would fail at once. The
// primary keeps its key and takes writes, the leader writes /initialize and
// /status back, /patroni names the rejected /config keys until /config is
// fixed, and the replica keeps following.
func TestMalformedClusterValues(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{members: 2})
	primary := c.waitHealthy(t, formTimeout)
	c.guardSinglePrimary(t)
	replica := c.others(primary)[0]
	before := c.mustDCS(t)
	leaderBefore, sysid, goodConfig := before.kv["leader"], before.kv["initialize"].Value, before.kv["config"].Value
	var doc map[string]any
	if err := json.Unmarshal([]byte(goodConfig), &doc); err != nil {
		t.Fatalf("/config %q: %v", goodConfig, err)
	}
	doc["loop_wait"], doc["retry_timeout"] = 0, 0
	badConfig, _ := json.Marshal(doc)
	offset := primary.logSize()
	put := func(key, value string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := env.kv.Put(ctx, c.prefix()+key, value); err != nil {
			t.Fatal(err)
		}
	}
	put("config", string(badConfig))
	put("status", "garbage")
	put("initialize", "garbage")

	for _, m := range c.m {
		poll.Eventually(t, formTimeout, m.name+" to name the rejected /config keys in /patroni", func() error {
			st, err := m.status()
			if err != nil {
				return err
			}
			problems := strings.Join(st.problems(), "\n")
			if !strings.Contains(problems, "/config: loop_wait") || !strings.Contains(problems, "/config: retry_timeout") {
				return fmt.Errorf("problems %q", st.problems())
			}
			return nil
		})

	}
	poll.Eventually(t, formTimeout, "the leader to write /initialize and /status back", func() error {
		v, err := c.dcs()
		if err != nil {
			return err
		}
		if got := v.kv["initialize"].Value; got != sysid {
			return fmt.Errorf("/initialize %q, want %s", got, sysid)
		}
		if got := v.kv["status"].Value; !strings.Contains(got, `"optime"`) {
			return fmt.Errorf("/status %q", got)
		}
		return nil
	})

	logged := false
	for _, l := range primary.logSince(offset) {
		logged = logged || strings.Contains(l, "malformed /initialize")
	}
	if !logged {
		t.Errorf("%s: the log does not mention the malformed /initialize", primary.name)
	}

	// Several loops later: same leader key, the primary takes writes and
	// the replica receives them, no cycle failed.
	time.Sleep(degradedFor) // the cluster must stay as it is meanwhile
	if after := c.mustDCS(t).kv["leader"]; after == nil || after.Value != leaderBefore.Value || after.CreateRevision != leaderBefore.CreateRevision {
		t.Fatalf("the leader key changed: %+v, before %+v", after, leaderBefore)
	}
	primary.exec(t, "create table e2e (id serial primary key, note text)")
	primary.exec(t, "insert into e2e (note) values ('despite the bad values')")
	replica.waitRow(t, "despite the bad values", formTimeout)
	for _, cy := range primary.cyclesSince(offset) {
		if cy.err != "" {
			t.Errorf("%s: a cycle failed after the bad values: %s", primary.name, cy.line)
		}
	}

	put("config", goodConfig)
	for _, m := range c.m {
		poll.Eventually(t, formTimeout, m.name+" to clear the problems once /config is fixed", m.noProblems)
		m.assertNoCrash(t)
	}
}
