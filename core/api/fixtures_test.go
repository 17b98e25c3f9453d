package api

import (
	"strconv"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// testNow is the clock of every test snapshot.
var testNow = time.Date(2025, 3, 4, 10, 20, 30, 0, time.UTC)

const (
	testTTL      = 30 * time.Second
	testLoopWait = 10 * time.Second
	// Positions of the test cluster: the primary is at primaryLSN, node2
	// streams 256 bytes behind it, node3 is 64 MiB behind.
	primaryLSN  = int64(0x5000060)
	node2Replay = primaryLSN - 256
	node3Replay = primaryLSN - 64<<20
)

func ptr[T any](v T) *T { return &v }

// testClusterRaw is the DCS content of a three-member cluster led by node1,
// in Patroni 4.x's exact formats.
func testClusterRaw() *dcs.Cluster {
	return &dcs.Cluster{
		Initialize: &dcs.Value{Data: []byte("7268616322854375442"), Version: "3"},
		Config:     &dcs.Value{Data: []byte(`{"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true}}`), Version: "4"},
		Leader:     &dcs.Leader{Name: "node1", Version: "12", Session: "7587862142367711238"},
		Members: []dcs.Member{
			{Name: "node3", Data: []byte(`{"conn_url":"postgres://127.0.0.1:5434/postgres","api_url":"http://127.0.0.1:8010/patroni","state":"running","role":"replica","version":"0.1.0","xlog_location":` + itoa(node3Replay) + `,"timeline":2,"replication_state":"in archive recovery","tags":{"nofailover":true}}`)},
			{Name: "node1", Data: []byte(`{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"primary","version":"0.1.0","xlog_location":` + itoa(primaryLSN) + `,"timeline":2}`)},
			{Name: "node2", Data: []byte(`{"conn_url":"postgres://127.0.0.1:5433/postgres","api_url":"http://127.0.0.1:8009/patroni","state":"running","role":"replica","version":"0.1.0","xlog_location":` + itoa(node2Replay) + `,"timeline":2,"receive_lsn":` + itoa(node2Replay) + `,"replay_lsn":` + itoa(node2Replay) + `,"replication_state":"streaming","tags":{"zone":"b"}}`)},
			{Name: "node4", Data: []byte(`{"conn_url":"postgres://127.0.0.1:5435/postgres","api_url":"http://127.0.0.1:8011/patroni","state":"creating replica","role":"uninitialized","version":"0.1.0"}`)},
		},
		Sync:     &dcs.Value{Data: []byte(`{"leader":"node1","quorum":0,"sync_standby":"node2"}`), Version: "20"},
		Failover: &dcs.Value{Data: []byte(`{"leader":"node1","member":"node2","scheduled_at":"2030-01-01T00:00:00+00:00"}`), Version: "21"},
		History:  &dcs.Value{Data: []byte(`[[1,83886176,"no recovery target specified","2025-03-04T09:00:00.123456+00:00","node1"]]`), Version: "9"},
		Status:   &dcs.Value{Data: []byte(`{"optime":` + itoa(primaryLSN) + `,"slots":{"node2":` + itoa(node2Replay) + `,"node3":` + itoa(node3Replay) + `}}`), Version: "30"},
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func testCluster(t testing.TB) *cluster.Cluster {
	t.Helper()
	c, problems := cluster.FromDCS(testClusterRaw())
	if len(problems) > 0 {
		t.Fatalf("test cluster does not parse: %v", problems)
	}
	return c
}

// primarySnapshot is node1: a running primary holding the leader key.
func primarySnapshot(t testing.TB) *Snapshot {
	c := testCluster(t)
	return &Snapshot{
		Status: Status{
			State:               StateRunning,
			PostmasterStartTime: NewTimestamp(time.Date(2025, 3, 4, 9, 0, 0, 123456000, time.UTC)),
			Role:                cluster.RolePrimary,
			ServerVersion:       150010,
			XLog:                &XLog{Location: ptr(primaryLSN)},
			Timeline:            2,
			Replication: []Replication{
				{Usename: "replicator", ApplicationName: "node2", ClientAddr: ptr("127.0.0.1"), State: "streaming", SyncState: "sync", SyncPriority: 1},
				{Usename: "replicator", ApplicationName: "node3", State: "streaming", SyncState: "async"},
			},
			DCSLastSeen:              testNow.Unix() - 2,
			Tags:                     cluster.Tags{Custom: map[string]any{"zone": "a"}},
			DatabaseSystemIdentifier: "7268616322854375442",
			Patroni:                  Agent{Version: "0.1.0", Scope: "demo", Name: "node1"},
			Custos:                   &Extension{Reason: "no action. I am (node1), the leader with the lock"},
		},
		Cluster:      c,
		DCSReachable: true,
		LeaderExpiry: testNow.Add(testTTL - 2*time.Second),
		LastLoop:     testNow.Add(-2 * time.Second),
		Dynamic:      testDynamic(),
	}
}

// replicaSnapshot is node2: a streaming synchronous replica 256 bytes
// behind.
func replicaSnapshot(t testing.TB) *Snapshot {
	c := testCluster(t)
	return &Snapshot{
		Status: Status{
			State:               StateRunning,
			PostmasterStartTime: NewTimestamp(time.Date(2025, 3, 4, 9, 1, 0, 0, time.UTC)),
			Role:                cluster.RoleReplica,
			ServerVersion:       150010,
			XLog: &XLog{
				ReceivedLocation:  ptr(node2Replay),
				ReplayedLocation:  ptr(node2Replay),
				ReplayedTimestamp: NewTimestamp(time.Date(2025, 3, 4, 10, 20, 29, 500000000, time.UTC)),
			},
			SyncStandby:              true,
			Timeline:                 2,
			ReplicationState:         ReplicationStreaming,
			DCSLastSeen:              testNow.Unix() - 1,
			Tags:                     cluster.Tags{Custom: map[string]any{"zone": "b"}},
			DatabaseSystemIdentifier: "7268616322854375442",
			Patroni:                  Agent{Version: "0.1.0", Scope: "demo", Name: "node2"},
		},
		Cluster:      c,
		DCSReachable: true,
		LastLoop:     testNow.Add(-1 * time.Second),
		Dynamic:      testDynamic(),
		LatestEndLSN: primaryLSN,
	}
}

// testDynamic is the dynamic configuration of the test snapshots:
// synchronous mode, testTTL and testLoopWait.
func testDynamic() config.Dynamic {
	dyn := config.DefaultDynamic()
	dyn.TTL, dyn.LoopWait = config.Seconds(testTTL/time.Second), config.Seconds(testLoopWait/time.Second)
	dyn.SynchronousMode = config.SyncOn
	return dyn
}

// fixedSource always returns the same snapshot.
type fixedSource struct{ s *Snapshot }

func (f fixedSource) Snapshot() *Snapshot { return f.s }

// newTestServer is a server on the snapshot with the test clock.
func newTestServer(snap *Snapshot, cfg ServerConfig) *Server {
	s := New(cfg, fixedSource{snap}, nil)
	s.now = func() time.Time { return testNow }
	return s
}
