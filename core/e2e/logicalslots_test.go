//go:build integration

package e2e

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/custos-ha/custos/testkit/poll"
)

// TestLogicalSlots: a permanent logical slot is copied
// from the primary to the replicas that stream from it (one restart each,
// logged) and advanced there to the position the primary publishes in
// /status; when the primary dies, the new primary has the slot at the
// consumer's last position, and decoding there returns what was written
// after it: nothing lost, nothing consumed twice. The remaining replica
// keeps following the slot under the new primary.
func TestLogicalSlots(t *testing.T) {
	t.Parallel()
	c := startCluster(t, clusterOpts{
		noStart:      true,
		bootstrapDCS: []string{`slots = {cdc = {type = "logical", database = "postgres", plugin = "test_decoding"}}`},
		pgParameters: []string{`wal_level = "logical"`},
	})
	primary := c.startLeaderFirst(t)
	c.guardSinglePrimary(t)
	primary.exec(t, "create table e2e (id serial primary key, note text)")
	replicas := c.others(primary)

	// consume reads the slot's pending changes on m, as a consumer does,
	// and returns the notes inserted and the slot's position after.
	consume := func(t *testing.T, m *member) ([]string, int64) {
		t.Helper()
		notes, err := m.decodedNotes("cdc")
		if err != nil {
			t.Fatal(err)
		}
		s, err := m.slots()
		if err != nil {
			t.Fatal(err)
		}
		return notes, s["cdc"].lsn
	}
	insert := func(t *testing.T, m *member, notes ...string) {
		t.Helper()
		for _, n := range notes {
			m.exec(t, "insert into e2e (note) values ($1)", n)
		}
	}
	// waitReplicaSlot waits until r has the logical slot at pos or past.
	waitReplicaSlot := func(t *testing.T, r *member, pos int64) {
		t.Helper()
		poll.Eventually(t, opTimeout, fmt.Sprintf("%s to keep cdc at %d or past", r.name, pos), func() error {
			s, err := r.slots()
			if err != nil {
				return err
			}
			l, ok := s["cdc"]
			switch {
			case !ok:
				return fmt.Errorf("no cdc (slots %v)", slotNames(s))
			case l.kind != "logical" || l.plugin != "test_decoding" || l.database != "postgres":
				return fmt.Errorf("cdc %+v", l)
			case l.lsn < pos:
				return fmt.Errorf("cdc at %d", l.lsn)
			}
			return nil
		})

	}
	var consumed int64

	step(t, "copied to the replicas", func(t *testing.T) {
		offsets := map[string]int64{}
		for _, r := range replicas {
			offsets[r.name] = r.logSize()
		}
		poll.Eventually(t, opTimeout, "the primary to create cdc", func() error {
			s, err := primary.slots()
			if err != nil {
				return err
			}
			if l := s["cdc"]; l.kind != "logical" || l.lsn <= 0 {
				return fmt.Errorf("cdc %+v (slots %v)", l, slotNames(s))
			}
			return nil
		})

		insert(t, primary, "first 1", "first 2", "first 3")
		notes, pos := consume(t, primary)
		if want := []string{"first 1", "first 2", "first 3"}; !slices.Equal(notes, want) {
			t.Fatalf("decoded %q on the primary, want %q", notes, want)
		}
		consumed = pos
		poll.Eventually(t, opTimeout, "/status to publish cdc", func() error {
			if got := c.statusSlots(t)["cdc"]; got < pos {
				return fmt.Errorf("/status cdc %d, the primary's %d", got, pos)
			}
			return nil
		})

		for _, r := range replicas {
			waitReplicaSlot(t, r, pos)
			// The copy needs a restart (slots load at start-up); a
			// replica found without the slot logs why it restarts.
			if !slices.ContainsFunc(r.logSince(offsets[r.name]), func(l string) bool {
				return strings.Contains(l, "logical replication slots copied from the primary, restarting")
			}) {
				t.Errorf("%s did not log the copy and restart", r.name)
			}
		}
	})

	step(t, "advanced on the replicas", func(t *testing.T) {
		insert(t, primary, "second 1", "second 2")
		notes, pos := consume(t, primary)
		if want := []string{"second 1", "second 2"}; !slices.Equal(notes, want) {
			t.Fatalf("decoded %q on the primary, want %q", notes, want)
		}
		if pos <= consumed {
			t.Fatalf("cdc did not move on the primary: %d, then %d", consumed, pos)
		}
		consumed = pos
		for _, r := range replicas {
			waitReplicaSlot(t, r, pos)
		}
	})

	step(t, "failover", func(t *testing.T) {
		// Written after the last consumption: a consumer of the new
		// primary must get exactly these.
		insert(t, primary, "unread 1", "unread 2", "unread 3")
		insert(t, primary, "before the failover")
		for _, r := range replicas {
			r.waitRow(t, "before the failover", opTimeout)
		}
		next := c.killPrimary(t, primary)
		s, err := next.slots()
		if err != nil {
			t.Fatal(err)
		}
		if l := s["cdc"]; l.kind != "logical" || l.plugin != "test_decoding" || l.database != "postgres" || l.lsn < consumed {
			t.Fatalf("%s as the new primary: cdc %+v, the consumer was at %d (slots %v)", next.name, l, consumed, slotNames(s))
		}
		notes, pos := consume(t, next)
		if want := []string{"unread 1", "unread 2", "unread 3", "before the failover"}; !slices.Equal(notes, want) {
			t.Fatalf("decoded %q on %s after the failover, want %q", notes, next.name, want)
		}

		// The other replica keeps the slot and follows the new primary's
		// position.
		var third *member
		for _, r := range replicas {
			if r != next {
				third = r
			}
		}
		insert(t, next, "after the failover")
		notes, pos = consume(t, next)
		if want := []string{"after the failover"}; !slices.Equal(notes, want) {
			t.Fatalf("decoded %q on %s, want %q", notes, next.name, want)
		}
		poll.Eventually(t, opTimeout, "/status to publish "+next.name+"'s cdc", func() error {
			if got := c.statusSlots(t)["cdc"]; got < pos {
				return fmt.Errorf("/status cdc %d, %s's %d", got, next.name, pos)
			}
			return nil
		})

		waitReplicaSlot(t, third, pos)
	})
	for _, m := range c.m {
		m.assertNoCrash(t)
	}
}

// insertedNote is the note column of a test_decoding INSERT into e2e.
var insertedNote = regexp.MustCompile(`^table public\.e2e: INSERT: id\[integer\]:\d+ note\[text\]:'(.*)'$`)

// decodedNotes consumes the pending changes of the logical slot on m
// (pg_logical_slot_get_changes) and returns the notes inserted into e2e,
// in commit order.
func (m *member) decodedNotes(slot string) ([]string, error) {
	rows, err := m.query("select data from pg_logical_slot_get_changes($1, null, null)", slot)
	if err != nil {
		return nil, err
	}
	var notes []string
	for _, r := range rows {
		if sub := insertedNote.FindStringSubmatch(r); sub != nil {
			notes = append(notes, strings.ReplaceAll(sub[1], "''", "'"))
		}
	}
	return notes, nil
}
