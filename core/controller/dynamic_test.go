package controller

import (
	"reflect"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/ha"
)

// The decision gets the merged settings: the local use_pg_rewind over the
// dynamic one (also after a reload), and the slots and synchronous mode
// of the dynamic configuration in its own types.
func TestHAConfigFromEffective(t *testing.T) {
	dyn, ps := config.ParseDynamic([]byte(`{"synchronous_mode": "quorum", "postgresql": {"use_pg_rewind": true},
		"slots": {"keep": {"type": "physical"}, "cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"}},
		"ignore_slots": [{"name": "ext", "type": "logical"}]}`))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	off := false
	local := &config.Config{}
	local.PostgreSQL.UsePgRewind = &off
	local.PostgreSQL.RemoveDataDirectoryOnRewindFailure = true
	c := New(Options{Name: "pg1", Bootstrap: dyn, Local: local}, nil, nil, nil, hclog.NewNullLogger())

	hc := c.haConfig()
	if hc.UsePgRewind || !hc.RemoveDataDirectoryOnRewindFailure {
		t.Errorf("use_pg_rewind %v (want the local false), remove_data_directory_on_rewind_failure %v", hc.UsePgRewind, hc.RemoveDataDirectoryOnRewindFailure)
	}
	if hc.SyncMode != ha.SyncQuorum {
		t.Errorf("sync mode %q, want %q", hc.SyncMode, ha.SyncQuorum)
	}
	wantSlots := []cluster.SlotSpec{{Name: "cdc", Type: cluster.SlotLogical, Database: "app", Plugin: "pgoutput"}, {Name: "keep", Type: cluster.SlotPhysical}}
	if !reflect.DeepEqual(hc.PermanentSlots, wantSlots) {
		t.Errorf("permanent slots %+v, want %+v", hc.PermanentSlots, wantSlots)
	}
	if want := []cluster.SlotMatcher{{Name: "ext", Type: cluster.SlotLogical}}; !reflect.DeepEqual(hc.IgnoreSlots, want) {
		t.Errorf("ignore slots %+v, want %+v", hc.IgnoreSlots, want)
	}

	c.SetLocal(LocalSettings{Config: &config.Config{}})
	if hc := c.haConfig(); !hc.UsePgRewind || hc.RemoveDataDirectoryOnRewindFailure {
		t.Errorf("after a reload without use_pg_rewind: use_pg_rewind %v (want the dynamic true), remove_data_directory_on_rewind_failure %v",
			hc.UsePgRewind, hc.RemoveDataDirectoryOnRewindFailure)
	}
}
