//go:build integration

package e2e

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/custos-ha/custos/testkit/poll"
)

// Replication slots (member, permanent and ignored), in the spirit of
// Patroni's permanent_slots and ignored_slots features.

// TestSlots: permanent physical and logical slots on the primary, member
// slots everywhere (member_slots_ttl keeps them on failover-eligible
// replicas), the permanent physical slot kept and advanced on the replicas
// from the positions the leader publishes in /status, hand-made slots
// dropped unless ignore_slots matches them, and after a failover the new
// primary has the permanent slots and the ignored ones it had.
func TestSlots(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{
		noStart: true,
		bootstrapDCS: []string{
			`slots = {perm_phys = {type = "physical"}, perm_logical = {type = "logical", database = "postgres", plugin = "test_decoding"}}`,
			`ignore_slots = [{name = "keep_me", type = "physical"}, {name = "keep_logical", type = "logical", plugin = "test_decoding"}]`,
		},
		pgParameters: []string{`wal_level = "logical"`},
	})
	primary := c.startLeaderFirst(t)
	c.guardSinglePrimary(t)
	primary.exec(t, "create table e2e (id serial primary key, note text)")
	replicas := c.others(primary)

	step(t, "permanent and member slots on the primary", func(t *testing.T) {
		poll.Eventually(t, opTimeout, "the primary's slots", func() error {
			s, err := primary.slots()
			if err != nil {
				return err
			}
			if p := s["perm_phys"]; p.kind != "physical" || p.lsn < 0 {
				return fmt.Errorf("perm_phys %+v (slots %v)", p, slotNames(s))
			}
			if l := s["perm_logical"]; l.kind != "logical" || l.plugin != "test_decoding" || l.database != "postgres" {
				return fmt.Errorf("perm_logical %+v (slots %v)", l, slotNames(s))
			}
			for _, r := range replicas {
				if m := s[r.name]; m.kind != "physical" || !m.active {
					return fmt.Errorf("member slot %s %+v", r.name, m)
				}
			}
			return nil
		})

		// Permanent logical slots need hot_standby_feedback on the
		// replicas that may take them over.
		for _, r := range replicas {
			if v, err := r.query("show hot_standby_feedback"); err != nil || len(v) != 1 || v[0] != "on" {
				t.Errorf("%s: hot_standby_feedback %v (%v)", r.name, v, err)
			}
		}
	})

	step(t, "positions in /status, kept and advanced on the replicas", func(t *testing.T) {
		before := c.statusSlots(t)
		for _, name := range []string{"perm_phys", "perm_logical"} {
			if _, ok := before[name]; !ok {
				t.Errorf("/status slots lack %s: %v", name, before)
			}
		}
		// Consumers move both permanent slots forward on the primary.
		primary.exec(t, "insert into e2e (note) select 'slots ' || g from generate_series(1, 1000) g")
		primary.exec(t, "select count(*) from pg_replication_slot_advance('perm_phys', pg_current_wal_lsn())")
		primary.exec(t, "select count(*) from pg_logical_slot_get_changes('perm_logical', null, null)")
		s, err := primary.slots()
		if err != nil {
			t.Fatal(err)
		}
		phys, logical := s["perm_phys"].lsn, s["perm_logical"].lsn
		if phys <= before["perm_phys"] || logical <= before["perm_logical"] {
			t.Fatalf("the slots did not move on the primary: %v, then perm_phys %d perm_logical %d", before, phys, logical)
		}
		poll.Eventually(t, opTimeout, "/status to publish the new positions", func() error {
			st := c.statusSlots(t)
			if st["perm_phys"] != phys || st["perm_logical"] != logical {
				return fmt.Errorf("/status slots %v, the primary's perm_phys %d perm_logical %d", st, phys, logical)
			}
			return nil
		})

		for _, r := range replicas {
			poll.Eventually(t, opTimeout, r.name+" to keep perm_phys at the primary's position", func() error {
				rs, err := r.slots()
				if err != nil {
					return err
				}
				if p := rs["perm_phys"]; p.kind != "physical" || p.lsn < phys {
					return fmt.Errorf("perm_phys %+v, want at least %d (slots %v)", p, phys, slotNames(rs))
				}

				for _, o := range c.others(r) {
					if rs[o.name].kind != "physical" {
						return fmt.Errorf("no slot for %s (slots %v)", o.name, slotNames(rs))
					}
				}
				return nil
			})

		}
		// The member slots follow the positions the leader publishes, so
		// that they do not hold WAL back on the replicas.
		for _, r := range replicas {
			for _, o := range c.others(r) {
				poll.Eventually(t, opTimeout, fmt.Sprintf("%s's slot for %s to be advanced", r.name, o.name), func() error {
					rs, err := r.slots()
					if err != nil {
						return err
					}
					if got := rs[o.name].lsn; got < phys {
						return fmt.Errorf("at %d, the primary wrote past %d before", got, phys)
					}
					return nil
				})

			}
		}
	})

	step(t, "ignore_slots", func(t *testing.T) {
		primary.exec(t, "select count(*) from pg_create_physical_replication_slot('keep_me', true)")
		primary.exec(t, "select count(*) from pg_create_physical_replication_slot('drop_me', true)")
		primary.exec(t, "select count(*) from pg_create_logical_replication_slot('keep_logical', 'test_decoding')")
		for _, r := range replicas {
			// A replica may be restarting (it copies the permanent
			// logical slot with a restart): retry until it takes them.
			for _, name := range []string{"keep_me", "drop_me"} {
				poll.Eventually(t, opTimeout, fmt.Sprintf("%s to create slot %s", r.name, name), func() error {
					_, err := r.query("select count(*) from pg_create_physical_replication_slot($1, true) where not exists (select 1 from pg_replication_slots where slot_name = $1)", name)
					return err
				})

			}
		}
		for _, m := range c.m {
			poll.Eventually(t, opTimeout, m.name+" to drop drop_me", func() error {
				s, err := m.slots()
				if err != nil {
					return err
				}
				if _, ok := s["drop_me"]; ok {
					return fmt.Errorf("slots %v", slotNames(s))
				}
				return nil
			})

		}
		// Two more cycles everywhere: the ignored ones stay.
		offsets := map[string]int64{}
		for _, m := range c.m {
			offsets[m.name] = m.logSize()
		}
		for _, m := range c.m {
			poll.Eventually(t, opTimeout, "two more HA cycles on "+m.name, func() error {
				if n := len(m.cyclesSince(offsets[m.name])); n < 2 {
					return fmt.Errorf("%d cycles", n)
				}
				return nil
			})

			var s map[string]slot
			poll.Eventually(t, opTimeout, m.name+"'s slots", func() error {
				var err error
				s, err = m.slots()
				return err
			})

			want := []string{"keep_me"}
			if m == primary {
				want = append(want, "keep_logical")
			}
			for _, name := range want {
				if _, ok := s[name]; !ok {
					t.Errorf("%s: the ignored slot %s was dropped (slots %v)", m.name, name, slotNames(s))
				}
			}
		}
	})

	step(t, "after a failover", func(t *testing.T) {
		primary.exec(t, "insert into e2e (note) values ('before the failover')")
		for _, r := range replicas {
			r.waitRow(t, "before the failover", opTimeout)
		}
		next := c.killPrimary(t, primary)
		var third *member
		for _, r := range replicas {
			if r != next {
				third = r
			}
		}
		poll.Eventually(t, opTimeout, next.name+"'s slots as the new primary", func() error {
			s, err := next.slots()
			if err != nil {
				return err
			}
			if s["perm_phys"].kind != "physical" {
				return fmt.Errorf("no perm_phys (slots %v)", slotNames(s))
			}
			if l := s["perm_logical"]; l.kind != "logical" || l.plugin != "test_decoding" {
				return fmt.Errorf("perm_logical %+v (slots %v)", l, slotNames(s))
			}
			if s["keep_me"].kind != "physical" {
				return fmt.Errorf("the ignored keep_me is gone (slots %v)", slotNames(s))
			}
			if !s[third.name].active {
				return fmt.Errorf("%s does not stream through its slot", third.name)
			}
			return nil
		})

		poll.Eventually(t, opTimeout, "/status to publish "+next.name+"'s permanent slots", func() error {
			st := c.statusSlots(t)
			for _, name := range []string{"perm_phys", "perm_logical"} {
				if _, ok := st[name]; !ok {
					return fmt.Errorf("/status slots %v", st)
				}
			}
			return nil
		})

		primary.restart(t)
		if got := c.waitHealthy(t, formTimeout); got != next {
			t.Fatalf("%s leads", got.name)
		}
		poll.Eventually(t, opTimeout, primary.name+" to stream through its slot on "+next.name, func() error {
			s, err := next.slots()
			if err != nil {
				return err
			}
			if !s[primary.name].active {
				return fmt.Errorf("slots %v", slotNames(s))
			}
			return nil
		})

		poll.Eventually(t, opTimeout, primary.name+" to keep perm_phys as a replica", func() error {
			s, err := primary.slots()
			if err != nil {
				return err
			}
			if s["perm_phys"].kind != "physical" {
				return fmt.Errorf("slots %v", slotNames(s))
			}
			return nil
		})

	})
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// statusSlots is the slots object of the cluster's /status key.
func (c *testCluster) statusSlots(t testing.TB) map[string]int64 {
	t.Helper()
	v, err := c.dcs()
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Slots map[string]int64 `json:"slots"`
	}
	if kv := v.kv["status"]; kv != nil {
		if err := json.Unmarshal([]byte(kv.Value), &st); err != nil {
			t.Fatalf("/status: %v: %s", err, kv.Value)
		}
	}
	return st.Slots
}
