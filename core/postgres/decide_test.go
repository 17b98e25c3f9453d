package postgres

import (
	"strings"
	"testing"

	"github.com/custos-ha/custos/core/cluster"
)

func TestSlotName(t *testing.T) {
	for in, want := range map[string]string{
		"node1":                 "node1",
		"Node-1.dc1":            "node_1_dc1",
		"pg@host":               "pgu0064host",
		"zürich":                "zu0252rich",
		"a b":                   "au0032b",
		"UPPER_case":            "upper_case",
		strings.Repeat("x", 70): strings.Repeat("x", 63),
		strings.Repeat("é", 20): strings.Repeat("u0233", 12) + "u02",
	} {
		got := cluster.SlotName(in)
		if got != want {
			t.Errorf("SlotName(%q) = %q, want %q", in, got, want)
		}
		if err := ValidateSlotName(got); err != nil {
			t.Errorf("SlotName(%q) = %q is not valid: %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "Upper", "with-dash", strings.Repeat("a", 64), "sp ace"} {
		if ValidateSlotName(bad) == nil {
			t.Errorf("ValidateSlotName(%q) accepted", bad)
		}
	}
	cfg := baseConfig()
	if s := mustNew(t, cfg).MemberSlot(); s != "" {
		t.Errorf("MemberSlot without use_slots = %q", s)
	}
	cfg.UseSlots = true
	if s := mustNew(t, cfg).MemberSlot(); s != "node_1_dc1" {
		t.Errorf("MemberSlot = %q", s)
	}
}

func TestNeedsRewind(t *testing.T) {
	hist := []HistoryEntry{
		{Timeline: 1, SwitchPoint: 0x3000148},
		{Timeline: 2, SwitchPoint: 0x5000000},
	}
	cases := []struct {
		name   string
		local  Position
		leader int
		hist   []HistoryEntry
		want   bool
	}{
		{"unknown local timeline", Position{}, 3, hist, false},
		{"ahead of the leader", Position{Timeline: 4, LSN: 1}, 3, hist, true},
		{"same timeline", Position{Timeline: 3, LSN: 0x9000000}, 3, hist, false},
		{"replica behind the switch point", Position{Timeline: 2, LSN: 0x4000000, InRecovery: true}, 3, hist, false},
		{"replica at the switch point", Position{Timeline: 2, LSN: 0x5000000, InRecovery: true}, 3, hist, false},
		{"replica past the switch point", Position{Timeline: 2, LSN: 0x5000001, InRecovery: true}, 3, hist, true},
		{"former primary past the switch point", Position{Timeline: 2, LSN: 0x6000000}, 3, hist, true},
		{"former primary checkpoint at the switch point", Position{Timeline: 2, LSN: 0x5000000, CheckpointEnd: 0x5000078}, 3, hist, true},
		{"former primary, checkpoint ends at the switch point", Position{Timeline: 2, LSN: 0x4FFFF88, CheckpointEnd: 0x5000000}, 3, hist, false},
		{"former primary, checkpoint ends elsewhere", Position{Timeline: 2, LSN: 0x4FFFF88, CheckpointEnd: 0x4FFFFF0}, 3, hist, true},
		{"former primary, checkpoint end unknown", Position{Timeline: 2, LSN: 0x4FFFF88}, 3, hist, true},
		{"older timeline in history", Position{Timeline: 1, LSN: 0x3000000, InRecovery: true}, 3, hist, false},
		{"timeline missing from history", Position{Timeline: 2, LSN: 1, InRecovery: true}, 4, []HistoryEntry{{1, 0x10, ""}, {3, 0x20, ""}}, true},
		{"timeline past the history", Position{Timeline: 3, LSN: 1, InRecovery: true}, 5, hist, true},
		{"no history", Position{Timeline: 1, LSN: 1, InRecovery: true}, 2, nil, true},
	}
	for _, tc := range cases {
		got, reason := NeedsRewind(tc.local, tc.leader, tc.hist)
		if got != tc.want || reason == "" {
			t.Errorf("%s: NeedsRewind = %v (%s), want %v", tc.name, got, reason, tc.want)
		}
	}
}

func TestPositionFromControlData(t *testing.T) {
	cases := []struct {
		cd   ControlData
		want Position
		ok   bool
	}{
		{ControlData{ClusterState: StateShutDown, Timeline: 2, CheckpointLSN: 0x100}, Position{Timeline: 2, LSN: 0x100}, true},
		{ControlData{ClusterState: StateShutDownInRecovery, Timeline: 1, CheckpointLSN: 0x50, MinRecoveryLSN: 0x200, MinRecoveryTimeline: 2},
			Position{Timeline: 2, LSN: 0x200, InRecovery: true}, true},
		{ControlData{ClusterState: StateInArchiveRecovery, Timeline: 3, CheckpointLSN: 0x50},
			Position{Timeline: 3, LSN: 0x50}, true}, // no min recovery point: it was a primary
		{ControlData{ClusterState: StateInProduction, Timeline: 3, CheckpointLSN: 0x50}, Position{}, false},
		{ControlData{ClusterState: StateInCrashRecovery}, Position{}, false},
	}
	for _, tc := range cases {
		got, ok := PositionFromControlData(tc.cd)
		if got != tc.want || ok != tc.ok {
			t.Errorf("PositionFromControlData(%s) = %+v, %v; want %+v, %v", tc.cd.ClusterState, got, ok, tc.want, tc.ok)
		}
	}
}
