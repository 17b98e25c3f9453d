package postgres

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/custos-ha/custos/core/cluster"
)

func TestPlanReplicaLogicalSlots(t *testing.T) {
	cdc := cluster.SlotSpec{Name: "cdc", Type: SlotLogical, Database: "postgres", Plugin: "pgoutput"}
	audit := cluster.SlotSpec{Name: "audit", Type: SlotLogical, Database: "app", Plugin: "test_decoding"}
	phys := cluster.SlotSpec{Name: "archiver", Type: SlotPhysical}
	local := func(spec cluster.SlotSpec, confirmed LSN) Slot {
		return Slot{Name: spec.Name, Type: spec.Type, Database: spec.Database, Plugin: spec.Plugin, ConfirmedFlushLSN: confirmed}
	}
	for _, tc := range []struct {
		name      string
		wanted    []cluster.SlotSpec
		have      map[string]Slot
		published map[string]LSN
		replayed  LSN
		recopy    map[string]bool
		copy      []string
		advance   map[string]map[string]LSN
	}{{
		name:      "missing slots with a published position are copied, in name order",
		wanted:    []cluster.SlotSpec{cdc, audit, phys},
		published: map[string]LSN{"cdc": 100, "audit": 50, "archiver": 70},
		replayed:  200,
		copy:      []string{"audit", "cdc"},
	}, {
		name:      "no published position: the primary has not reported the slot, nothing to do",
		wanted:    []cluster.SlotSpec{cdc},
		published: map[string]LSN{"other": 100},
		replayed:  200,
	}, {
		name:      "a published zero (NULL confirmed_flush_lsn) is no position",
		wanted:    []cluster.SlotSpec{cdc},
		published: map[string]LSN{"cdc": 0},
		replayed:  200,
	}, {
		name:      "existing slots behind are advanced, grouped by database",
		wanted:    []cluster.SlotSpec{cdc, audit},
		have:      map[string]Slot{"cdc": local(cdc, 80), "audit": local(audit, 10)},
		published: map[string]LSN{"cdc": 100, "audit": 50},
		replayed:  200,
		advance:   map[string]map[string]LSN{"postgres": {"cdc": 100}, "app": {"audit": 50}},
	}, {
		name:      "never past the local replay position",
		wanted:    []cluster.SlotSpec{cdc},
		have:      map[string]Slot{"cdc": local(cdc, 80)},
		published: map[string]LSN{"cdc": 300},
		replayed:  150,
		advance:   map[string]map[string]LSN{"postgres": {"cdc": 150}},
	}, {
		name:      "caught up, or ahead of the replay position: left alone",
		wanted:    []cluster.SlotSpec{cdc, audit},
		have:      map[string]Slot{"cdc": local(cdc, 100), "audit": local(audit, 60)},
		published: map[string]LSN{"cdc": 100, "audit": 300},
		replayed:  50,
	}, {
		name:      "a slot whose advance failed for good is copied again instead",
		wanted:    []cluster.SlotSpec{cdc, audit},
		have:      map[string]Slot{"cdc": local(cdc, 80), "audit": local(audit, 10)},
		published: map[string]LSN{"cdc": 100, "audit": 50},
		replayed:  200,
		recopy:    map[string]bool{"cdc": true},
		copy:      []string{"cdc"},
		advance:   map[string]map[string]LSN{"app": {"audit": 50}},
	}, {
		name:      "an active slot is not advanced",
		wanted:    []cluster.SlotSpec{cdc},
		have:      map[string]Slot{"cdc": {Name: "cdc", Type: SlotLogical, Database: "postgres", Plugin: "pgoutput", Active: true, ConfirmedFlushLSN: 10}},
		published: map[string]LSN{"cdc": 100},
		replayed:  200,
	}, {
		name:      "a local slot of another kind is neither copied over nor advanced",
		wanted:    []cluster.SlotSpec{cdc},
		have:      map[string]Slot{"cdc": {Name: "cdc", Type: SlotLogical, Database: "postgres", Plugin: "wal2json", ConfirmedFlushLSN: 10}},
		published: map[string]LSN{"cdc": 100},
		replayed:  200,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			w := planReplicaLogicalSlots(tc.wanted, tc.have, tc.published, tc.replayed, tc.recopy)
			var got []string
			for _, s := range w.Copy {
				got = append(got, s.Name)
				if s.Type != SlotLogical || s.Database == "" || s.Plugin == "" {
					t.Errorf("copy %+v lacks its spec", s)
				}
			}
			if !reflect.DeepEqual(got, tc.copy) {
				t.Errorf("copy %v, want %v", got, tc.copy)
			}
			if tc.advance == nil {
				tc.advance = map[string]map[string]LSN{}
			}
			if !reflect.DeepEqual(w.Advance, tc.advance) {
				t.Errorf("advance %v, want %v", w.Advance, tc.advance)
			}
		})
	}
}

func TestChooseSlotCopies(t *testing.T) {
	cdc := cluster.SlotSpec{Name: "cdc", Type: SlotLogical, Database: "postgres", Plugin: "test_decoding"}
	audit := cluster.SlotSpec{Name: "audit", Type: SlotLogical, Database: "app", Plugin: "test_decoding"}
	ready := func(spec cluster.SlotSpec, state string) primarySlot {
		return primarySlot{Name: spec.Name, Type: SlotLogical, Database: spec.Database, Plugin: spec.Plugin,
			CatalogXmin: "750", ConfirmedFlush: 0x3000060, State: []byte(state)}
	}
	member := primarySlot{Name: "pg2", Type: SlotPhysical, Xmin: "752"}
	for _, tc := range []struct {
		name       string
		want       []cluster.SlotSpec
		rows       []primarySlot
		memberSlot string
		feedback   bool
		last       map[string][]byte
		copied     []string
		reason     string
	}{{
		name:       "ready slots are copied",
		want:       []cluster.SlotSpec{cdc, audit},
		rows:       []primarySlot{ready(cdc, "a"), ready(audit, "b"), member},
		memberSlot: "pg2", feedback: true,
		copied: []string{"cdc", "audit"},
	}, {
		name:       "hot_standby_feedback off here: nothing",
		want:       []cluster.SlotSpec{cdc},
		rows:       []primarySlot{ready(cdc, "a"), member},
		memberSlot: "pg2",
		reason:     "hot_standby_feedback",
	}, {
		name:       "no physical slot of this member on the primary: nothing",
		want:       []cluster.SlotSpec{cdc},
		rows:       []primarySlot{ready(cdc, "a")},
		memberSlot: "pg2", feedback: true,
		reason: "does not exist on the primary",
	}, {
		name:       "no feedback in the member's slot yet: nothing",
		want:       []cluster.SlotSpec{cdc},
		rows:       []primarySlot{ready(cdc, "a"), {Name: "pg2", Type: SlotPhysical}},
		memberSlot: "pg2", feedback: true,
		reason: "no hot standby feedback",
	}, {
		name:       "a catalog_xmin from the replica's own logical slots counts as feedback",
		want:       []cluster.SlotSpec{cdc},
		rows:       []primarySlot{ready(cdc, "a"), {Name: "pg2", Type: SlotPhysical, CatalogXmin: "740"}},
		memberSlot: "pg2", feedback: true,
		copied: []string{"cdc"},
	}, {
		name: "a slot being created (no catalog_xmin, no confirmed_flush_lsn) waits",
		want: []cluster.SlotSpec{cdc, audit},
		rows: []primarySlot{ready(cdc, "a"), member,
			{Name: "audit", Type: SlotLogical, Database: "app", Plugin: "test_decoding", State: []byte("b")}},
		memberSlot: "pg2", feedback: true,
		copied: []string{"cdc"}, reason: "audit: no confirmed_flush_lsn or catalog_xmin",
	}, {
		name: "a slot that does not match the configuration is not copied",
		want: []cluster.SlotSpec{cdc},
		rows: []primarySlot{member,
			{Name: "cdc", Type: SlotLogical, Database: "postgres", Plugin: "wal2json", CatalogXmin: "1", ConfirmedFlush: 1, State: []byte("a")}},
		memberSlot: "pg2", feedback: true,
		reason: "does not match the configuration",
	}, {
		name:       "missing on the primary",
		want:       []cluster.SlotSpec{cdc},
		rows:       []primarySlot{member},
		memberSlot: "pg2", feedback: true,
		reason: "cdc: not on the primary",
	}, {
		name:       "the same state as the last copy is not copied again",
		want:       []cluster.SlotSpec{cdc, audit},
		rows:       []primarySlot{ready(cdc, "same"), ready(audit, "new"), member},
		memberSlot: "pg2", feedback: true,
		last:   map[string][]byte{"cdc": []byte("same"), "audit": []byte("old")},
		copied: []string{"audit"}, reason: "has not moved since the last copy",
	}, {
		name:     "without a member slot name there is nothing to check on the primary",
		want:     []cluster.SlotSpec{cdc},
		rows:     []primarySlot{ready(cdc, "a")},
		feedback: true,
		copied:   []string{"cdc"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			copies, skipped := chooseSlotCopies(tc.want, tc.rows, tc.memberSlot, tc.feedback, tc.last)
			var got []string
			for _, c := range copies {
				got = append(got, c.Name)
				if len(c.State) == 0 {
					t.Errorf("%s copied without its state", c.Name)
				}
			}
			if !reflect.DeepEqual(got, tc.copied) {
				t.Errorf("copied %v, want %v (skipped %q)", got, tc.copied, skipped)
			}
			all := strings.Join(skipped, "; ")
			if tc.reason == "" && all != "" {
				t.Errorf("skipped %q", all)
			}
			if !strings.Contains(all, tc.reason) {
				t.Errorf("skipped %q, want a reason with %q", all, tc.reason)
			}
		})
	}
}

func TestWriteSlotStates(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	replslot := filepath.Join(dir, "pg_replslot")
	if err := os.Mkdir(replslot, 0o700); err != nil {
		t.Fatal(err)
	}
	// A copy replaces an older slot directory and a leftover temporary
	// one, whatever they hold.
	for _, d := range []string{"cdc", "cdc.tmp"} {
		if err := os.MkdirAll(filepath.Join(replslot, d), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(replslot, d, "xid-1.spill"), []byte("old"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	copies := []slotCopy{{Name: "cdc", State: []byte("new state")}, {Name: "audit", State: []byte("audit state")}}
	if err := writeSlotStates(dir, copies); err != nil {
		t.Fatal(err)
	}
	for _, c := range copies {
		sd := filepath.Join(replslot, c.Name)
		fi, err := os.Stat(sd)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v", sd, fi.Mode())
		}
		entries, err := os.ReadDir(sd)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != "state" {
			t.Errorf("%s holds %v, want only state", sd, entries)
		}
		data, err := os.ReadFile(filepath.Join(sd, "state"))
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != string(c.State) {
			t.Errorf("%s/state = %q", sd, data)
		}
		fi, err = os.Stat(filepath.Join(sd, "state"))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s/state: mode %v", sd, fi.Mode())
		}
	}
	if _, err := os.Stat(filepath.Join(replslot, "cdc.tmp")); !os.IsNotExist(err) {
		t.Errorf("cdc.tmp left behind: %v", err)
	}

	// With group access on the data directory, the slot is group-readable
	// as PostgreSQL makes it.
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := writeSlotStates(dir, []slotCopy{{Name: "grp", State: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(replslot, "grp", "state")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("grp/state: %v %v", fi, err)
	}

	// A bad name never reaches the file system.
	if err := writeSlotStates(dir, []slotCopy{{Name: "../escape", State: []byte("x")}}); err == nil {
		t.Error("a slot named ../escape was written")
	}
	// No pg_replslot: an error, not a crash.
	if err := writeSlotStates(t.TempDir(), copies); err == nil {
		t.Error("writing without pg_replslot succeeded")
	}
}

func TestSlotCopiesRecopyGuard(t *testing.T) {
	var s slotCopies
	s.copied("cdc", []byte("v1"))
	if got := s.lastRecopies(); len(got) != 0 {
		t.Errorf("a slot copied fine is guarded: %q", got)
	}
	s.markRecopy("cdc")
	if got := s.lastRecopies(); string(got["cdc"]) != "v1" || !s.recopyNames()["cdc"] {
		t.Errorf("a slot to copy again: last %q, recopy %v", got, s.recopyNames())
	}
	s.copied("cdc", []byte("v2"))
	if got := s.lastRecopies(); len(got) != 0 || s.recopyNames()["cdc"] {
		t.Errorf("after the new copy: last %q, recopy %v", got, s.recopyNames())
	}
}
