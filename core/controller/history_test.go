package controller

import (
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/ha"
)

// TestNamePromoter: the line for the switch onto the new leader's former
// timeline names the member that started it, whatever /history said.
func TestNamePromoter(t *testing.T) {
	h := cluster.History{
		{Timeline: 1, LSN: 543, NewLeader: "pg1"},
		{Timeline: 2, LSN: 1682},
		{Timeline: 3, LSN: 1687, NewLeader: "pg1"},
		{Timeline: 4, LSN: 1756, NewLeader: "pg3"},
	}
	got := namePromoter(h, ha.Action{Kind: ha.ActWriteHistory, Timeline: 4, Member: "pg3"}, hclog.NewNullLogger())
	want := []string{"pg1", "", "pg3", "pg3"}
	for i, l := range got {
		if l.NewLeader != want[i] {
			t.Errorf("line %d (timeline %d): new leader %q, want %q", i, l.Timeline, l.NewLeader, want[i])
		}
	}
	// Without a remembered former timeline nothing changes.
	again := namePromoter(cluster.History{{Timeline: 3, LSN: 1687, NewLeader: "pg1"}}, ha.Action{Kind: ha.ActWriteHistory}, hclog.NewNullLogger())
	if again[0].NewLeader != "pg1" {
		t.Errorf("without a former timeline: new leader %q, want pg1", again[0].NewLeader)
	}
}
