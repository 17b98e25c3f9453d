//go:build integration

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/custos-ha/custos/testkit/poll"
)

// TestCascadingReplication, in the spirit of Patroni's
// cascading_replication feature: node2 is tagged clonefrom, node3
// replicatefrom = "node2" and noloadbalance. node3 is cloned from node2
// (not the leader) and streams from it through a slot node2 keeps; the
// primary sees node2 alone. node3 answers 503 on /replica though healthy.
// With node2 gone, node3 falls back to the leader and streams from it.
func TestCascadingReplication(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{noStart: true, edit: func(m *member) {
		switch m.name {
		case "node2":
			m.tags = []string{"clonefrom = true"}
		case "node3":
			m.tags = []string{`replicatefrom = "node2"`, "noloadbalance = true"}
		}
	}})
	node1, node2, node3 := c.m[0], c.m[1], c.m[2]
	// node2 first, so that it can be node3's clone source.
	node1.start(t)
	poll.Eventually(t, formTimeout, "node1 to lead", func() error {
		if st, err := node1.status(); err != nil || st.Role != "primary" || st.State != "running" {
			return fmt.Errorf("%+v %v", st, err)
		}
		return nil
	})

	node2.start(t)
	c.waitHealthy(t, formTimeout)
	node3.start(t)
	if got := c.waitHealthy(t, formTimeout); got != node1 {
		t.Fatalf("%s leads", got.name)
	}
	c.guardSinglePrimary(t)

	step(t, "cloned from the clonefrom member", func(t *testing.T) {
		found := false
		for _, cy := range node3.cyclesSince(0) {
			if cy.has("create_replica") {
				found = true
				if !strings.Contains(cy.reason, "from replica node2") {
					t.Errorf("node3 was cloned another way:\n%s", cy.line)
				}
			}
		}
		if !found {
			t.Errorf("node3 logged no create_replica cycle:\n%s", strings.Join(node3.logSince(0), "\n"))
		}
		// What the replica method did: pg_basebackup ran against node2.
		var runs []string
		for _, l := range node3.logSince(0) {
			if strings.Contains(l, "running pg_basebackup") {
				runs = append(runs, l)
			}
		}
		if len(runs) == 0 {
			t.Errorf("node3 never ran pg_basebackup:\n%s", strings.Join(node3.logSince(0), "\n"))
		}
		for _, l := range runs {
			if !strings.Contains(l, "source=node2") {
				t.Errorf("node3's pg_basebackup did not copy node2: %s", l)
			}
		}
	})

	step(t, "noloadbalance", func(t *testing.T) {
		// A healthy replica, but tagged noloadbalance: load balancers
		// asking /replica leave it out; it answers the rest as usual.
		for _, probe := range []struct {
			m    *member
			path string
			code int
		}{
			{node3, "/replica", http.StatusServiceUnavailable},
			{node3, "/read-only", http.StatusServiceUnavailable},
			{node3, "/health", http.StatusOK},
			{node2, "/replica", http.StatusOK},
			{node2, "/read-only", http.StatusOK},
		} {
			if code, body, err := probe.m.get(probe.path); err != nil || code != probe.code {
				t.Errorf("%s: GET %s = %d %v, want %d: %s", probe.m.name, probe.path, code, err, probe.code, body)
			}
		}
		if st := mustStatus(t, node3); st.Role != "replica" || st.State != "running" {
			t.Errorf("node3: role %q state %q", st.Role, st.State)
		}
	})

	step(t, "streams from its replicatefrom member", func(t *testing.T) {
		poll.Eventually(t, opTimeout, "node3 to stream from node2 through its slot there", func() error {
			wr, err := node3.walReceiver()
			if err != nil {
				return err
			}
			if wr.status != "streaming" || wr.senderPort != node2.pgPort || wr.slot != "node3" {
				return fmt.Errorf("WAL receiver %+v, node2 listens on %d", wr, node2.pgPort)
			}
			rep, err := node2.replication()
			if err != nil {
				return err
			}
			if rep["node3"].state != "streaming" {
				return fmt.Errorf("node2's pg_stat_replication: %+v", rep)
			}
			s, err := node2.slots()
			if err != nil {
				return err
			}
			if !s["node3"].active {
				return fmt.Errorf("node2's slot for node3 %+v (slots %v)", s["node3"], slotNames(s))
			}
			return nil
		})

		rep, err := node1.replication()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := rep["node3"]; ok || rep["node2"].state != "streaming" {
			t.Errorf("the primary's pg_stat_replication %+v: want node2 alone", rep)
		}
		node1.exec(t, "create table e2e (id serial primary key, note text)")
		node1.exec(t, "insert into e2e (note) values ('cascaded')")
		node3.waitRow(t, "cascaded", opTimeout)
	})

	step(t, "falls back to the leader without its upstream", func(t *testing.T) {
		node2.kill(t, agentOnly, syscall.SIGTERM)
		node2.waitExit(t, stopTimeout)
		poll.Eventually(t, failoverTimeout, "node3 to stream from the leader", func() error {
			wr, err := node3.walReceiver()
			if err != nil {
				return err
			}
			if wr.status != "streaming" || wr.senderPort != node1.pgPort {
				return fmt.Errorf("WAL receiver %+v, node1 listens on %d", wr, node1.pgPort)
			}
			return nil
		})

		node1.exec(t, "insert into e2e (note) values ('without node2')")
		node3.waitRow(t, "without node2", opTimeout)
		// node2 back: node3 cascades from it again.
		node2.restart(t)
		poll.Eventually(t, formTimeout, "node3 to stream from node2 again", func() error {
			wr, err := node3.walReceiver()
			if err != nil {
				return err
			}
			if wr.status != "streaming" || wr.senderPort != node2.pgPort {
				return fmt.Errorf("WAL receiver %+v, node2 listens on %d", wr, node2.pgPort)
			}
			return nil
		})

		c.waitHealthy(t, formTimeout)
	})
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// TestNoStream, in the spirit of Patroni's nostream_node feature: node2 is
// tagged nostream. It is cloned from the leader like any replica, but then
// never streams: no primary_conninfo, no WAL receiver, no slot and no
// walsender on the primary; it replays what the primary archives, through
// its restore_command.
func TestNoStream(t *testing.T) {
	t.Parallel()
	archive, err := os.MkdirTemp("", "custos-e2e-archive-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(archive) })
	chownToAgent(t, archive)
	c := startCluster(t, clusterOpts{
		members: 2,
		noStart: true,
		pgParameters: []string{
			`archive_mode = "on"`,
			fmt.Sprintf(`archive_command = "test ! -f %[1]s/%%f && cp %%p %[1]s/%%f"`, archive),
		},
		edit: func(m *member) {
			if m.name == "node2" {
				m.tags = []string{"nostream = true"}
				m.extra = []string{"[postgresql.recovery_conf]", fmt.Sprintf(`restore_command = "cp %s/%%f %%p"`, archive)}
			}
		},
	})
	node1, node2 := c.m[0], c.m[1]
	node1.start(t)
	poll.Eventually(t, formTimeout, "node1 to lead", func() error {
		if st, err := node1.status(); err != nil || st.Role != "primary" || st.State != "running" {
			return fmt.Errorf("%+v %v", st, err)
		}
		return nil
	})

	c.guardSinglePrimary(t)
	node2.start(t)
	poll.Eventually(t, formTimeout, "node2 to run as a replica in archive recovery", func() error {
		st, err := node2.status()
		if err != nil {
			return err
		}
		if st.Role != "replica" || st.State != "running" || st.ReplicationState != "in archive recovery" {
			return fmt.Errorf("role %q state %q replication %q", st.Role, st.State, st.ReplicationState)
		}
		return nil
	})

	node1.exec(t, "create table e2e (id serial primary key, note text)")
	node1.exec(t, "insert into e2e (note) values ('archived')")
	// The segment is archived once it is complete.
	node1.exec(t, "select count(*) from pg_switch_wal()")
	node2.waitRow(t, "archived", formTimeout)

	if v, err := node2.query("show primary_conninfo"); err != nil || len(v) != 1 || v[0] != "" {
		t.Errorf("node2: primary_conninfo %q (%v), want none", v, err)
	}
	if v, err := node2.query("show primary_slot_name"); err != nil || len(v) != 1 || v[0] != "" {
		t.Errorf("node2: primary_slot_name %q (%v), want none", v, err)
	}
	if wr, err := node2.walReceiver(); err == nil {
		t.Errorf("node2 runs a WAL receiver: %+v", wr)
	}
	rep, err := node1.replication()
	if err != nil {
		t.Fatal(err)
	}
	if len(rep) != 0 {
		t.Errorf("the primary's pg_stat_replication: %+v, want nobody", rep)
	}
	// Some cycles after node2 joined: the primary keeps no slot for it.
	offset := node1.logSize()
	poll.Eventually(t, opTimeout, "two more HA cycles on node1", func() error {
		if n := len(node1.cyclesSince(offset)); n < 2 {
			return fmt.Errorf("%d cycles", n)
		}
		return nil
	})

	s, err := node1.slots()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s["node2"]; ok {
		t.Errorf("the primary keeps a slot for the nostream node2: %v", slotNames(s))
	}
	// node2 says why, every cycle.
	var said string
	for _, cy := range node2.cyclesSince(0) {
		said = cy.reason
	}
	if !strings.Contains(said, "nostream") {
		t.Errorf("node2's last cycle: %q", said)
	}
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}
