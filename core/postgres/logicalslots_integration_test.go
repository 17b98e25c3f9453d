//go:build integration

package postgres

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/internal/testenv"
	"github.com/custos-ha/custos/testkit/poll"
)

// TestLogicalSlotCopy: on a real primary and standby, a permanent logical
// slot missing on the standby is copied from the primary as the rewind
// user (one restart), then advanced in recovery to the published position;
// a primary that cannot be reached, or a rewind user that may not read
// the files, leaves the standby running and untouched. A primary never
// copies.
func TestLogicalSlotCopy(t *testing.T) {
	logical := func(c *Config) {
		c.Parameters["wal_level"] = "logical"
		c.Parameters["hot_standby_feedback"] = "on"
		c.Parameters["wal_receiver_status_interval"] = "1s"
	}
	a := newNode(t, "node_a", logical)
	b := newNode(t, "node_b", logical)
	bootstrapPrimary(t, a)
	ctx := ctxT(t, 3*time.Minute)
	cdc := cluster.SlotSpec{Name: "cdc", Type: SlotLogical, Database: "postgres", Plugin: "test_decoding"}
	if _, err := a.p.EnsurePhysicalSlots(ctx, []string{"node_b"}); err != nil {
		t.Fatal(err)
	}
	cloneReplica(t, a, b)
	// Created after the clone, so the standby has the WAL from its
	// restart_lsn (else its first advance fails and it is copied again
	// once the consumer moved it: the e2e test meets that case).
	if _, err := a.p.SyncSlots(ctx, SlotPlan{Wanted: []cluster.SlotSpec{{Name: "node_b", Type: SlotPhysical}, cdc}}); err != nil {
		t.Fatal(err)
	}
	sql(t, a, "CREATE TABLE t (id int)")
	sql(t, a, "INSERT INTO t VALUES (1), (2)")
	sql(t, a, "SELECT count(*) FROM pg_logical_slot_get_changes('cdc', NULL, NULL)")
	sql(t, a, "CHECKPOINT")
	pos, err := ParseLSN(sql(t, a, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'cdc'"))
	if err != nil {
		t.Fatal(err)
	}
	plan := SlotPlan{Wanted: []cluster.SlotSpec{cdc}, Advance: map[string]LSN{"cdc": pos}}
	src := a.upstream()
	src.SlotName = "node_b"

	t.Run("never on a primary", func(t *testing.T) {
		ch, err := a.p.SyncSlots(ctx, plan)
		if err != nil || len(ch.Copy) != 0 {
			t.Fatalf("the primary plans copies %v (%v)", ch.Copy, err)
		}
		if got, err := a.p.CopyLogicalSlots(ctx, b.upstream(), []cluster.SlotSpec{cdc}, 0); err != nil || got != nil {
			t.Fatalf("the primary copied %v (%v)", got, err)
		}
	})

	ch, err := b.p.SyncSlots(ctx, plan)
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.Copy) != 1 || ch.Copy[0] != cdc {
		t.Fatalf("the standby plans copies %v, want cdc", ch.Copy)
	}

	t.Run("primary unreachable", func(t *testing.T) {
		pid := b.p.Postmaster().Pid()
		bad := Upstream{Host: "127.0.0.1", Port: testenv.FreePort(t), SlotName: "node_b"}
		if _, err := b.p.CopyLogicalSlots(ctx, bad, ch.Copy, 0); err == nil {
			t.Fatal("copied from nowhere")
		}
		if !b.p.IsRunning() || b.p.Postmaster().Pid() != pid {
			t.Fatal("the standby was restarted or stopped")
		}
	})

	t.Run("rewind user without the grant", func(t *testing.T) {
		sql(t, a, "REVOKE EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) FROM rewinder")
		defer sql(t, a, "GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO rewinder")
		pid := b.p.Postmaster().Pid()
		_, err := b.p.CopyLogicalSlots(ctx, src, ch.Copy, 0)
		if err == nil || !strings.Contains(err.Error(), "pg_read_server_files") {
			t.Fatalf("err = %v, want a permission error naming pg_read_server_files", err)
		}
		if !b.p.IsRunning() || b.p.Postmaster().Pid() != pid {
			t.Fatal("the standby was restarted or stopped")
		}
	})

	t.Run("copied and advanced", func(t *testing.T) {
		pid := b.p.Postmaster().Pid()
		// The copy waits for the standby's feedback in its slot on the
		// primary.
		poll.Eventually(t, time.Minute, "the copy", func() error {
			got, err := b.p.CopyLogicalSlots(ctx, src, ch.Copy, 0)
			if err != nil {
				return err
			}
			if len(got) != 1 || got[0] != "cdc" {
				return fmt.Errorf("copied %v", got)
			}
			return nil
		})

		if b.p.Postmaster().Pid() == pid {
			t.Fatal("the standby was not restarted to load the slot")
		}
		if got := sql(t, b, "SELECT slot_type || ' ' || database || ' ' || plugin FROM pg_replication_slots WHERE slot_name = 'cdc'"); got != "logical postgres test_decoding" {
			t.Fatalf("cdc on the standby: %q", got)
		}
		poll.Eventually(t, time.Minute, "the advance to the published position", func() error {
			ch, err := b.p.SyncSlots(ctx, plan)
			if err != nil {
				return err
			}
			if len(ch.Copy) != 0 {
				return fmt.Errorf("copies planned again: %v", ch.Copy)
			}
			got, err := ParseLSN(sql(t, b, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'cdc'"))
			if err != nil {
				return err
			}
			if got < pos {
				return fmt.Errorf("cdc at %s on the standby, want %s", got, pos)
			}
			return nil
		})

		if v := sql(t, b, "SELECT pg_is_in_recovery()"); v != "true" {
			t.Fatalf("the standby left recovery: %s", v)
		}
	})
}
