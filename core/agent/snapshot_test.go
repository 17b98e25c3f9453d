package agent

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/controller"
	"github.com/custos-ha/custos/core/ha"
)

// What PostgreSQL reports reaches GET /patroni as the observation holds
// it, and the API reads the dynamic configuration the loop runs with.
func TestSnapshotOfObservation(t *testing.T) {
	addr := "10.0.0.2"
	dyn, ps := config.ParseDynamic([]byte(`{"ttl": 40, "loop_wait": 5, "synchronous_mode": "quorum", "failsafe_mode": true}`))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	st := &controller.State{
		Member: cluster.Member{Name: "pg1", State: "running", Role: cluster.RolePrimary},
		Observation: controller.Observation{
			HA:             ha.Postgres{Running: true, Ready: true, LSN: 1000},
			PendingRestart: true,
			PendingReasons: map[string]cluster.ParamChange{"max_connections": {OldValue: "100", NewValue: "200"}},
			Replication: []cluster.Replication{
				{Usename: "replicator", ApplicationName: "pg2", ClientAddr: &addr, State: "streaming", SyncState: "quorum"},
				{Usename: "replicator", ApplicationName: "pg3", State: "streaming", SyncState: "async"},
			},
		},
		Dynamic: dyn,
	}
	snap := snapshotOf(st, "demo", "pg1", nil)
	if snap.Dynamic.TTL != 40 || snap.Dynamic.LoopWait != 5 || snap.Dynamic.SynchronousMode != config.SyncQuorum || !snap.Dynamic.FailsafeMode {
		t.Errorf("dynamic configuration %+v", snap.Dynamic)
	}
	body, err := json.Marshal(snap.Status)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"pending_restart":true`,
		`"pending_restart_reason":{"max_connections":{"old_value":"100","new_value":"200"}}`,
		`{"usename":"replicator","application_name":"pg2","client_addr":"10.0.0.2","state":"streaming","sync_state":"quorum","sync_priority":0}`,
		`"client_addr":null`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("GET /patroni lacks %s:\n%s", want, body)
		}
	}
}
