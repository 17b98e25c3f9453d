package ctl

import (
	"path/filepath"
	"testing"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
	goldenfile "github.com/custos-ha/custos/testkit/golden"
)

// golden compares got with testdata/<name>.golden (-update rewrites it).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, filepath.Join("testdata", name+".golden"), got)
}

func value(s string) *dcs.Value { return &dcs.Value{Data: []byte(s), Version: "1"} }

// decode turns raw DCS keys into the cluster view, failing on malformed
// values: fixtures are meant to be well-formed.
func decode(t *testing.T, raw *dcs.Cluster) *cluster.Cluster {
	t.Helper()
	c, problems := cluster.FromDCS(raw)
	for _, p := range problems {
		t.Fatalf("fixture: %v", p)
	}
	return c
}

// healthyRaw is a three-member cluster as custos agents write it: one
// leader on timeline 2, two streaming replicas on their own ports.
func healthyRaw() *dcs.Cluster {
	return &dcs.Cluster{
		Initialize: value("7268616322854375442"),
		Config:     value(`{"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true}}`),
		Leader:     &dcs.Leader{Name: "node1", Version: "7"},
		Members: []dcs.Member{
			{Name: "node2", Data: []byte(`{"conn_url":"postgres://127.0.0.1:5433/postgres","api_url":"http://127.0.0.1:8009/patroni","state":"running","role":"replica","version":"4.1.4","xlog_location":50331648,"timeline":2,"receive_lsn":50331648,"replay_lsn":50331648,"replication_state":"streaming"}`)},
			{Name: "node1", Data: []byte(`{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"primary","version":"4.1.4","xlog_location":50331648,"timeline":2}`)},
			{Name: "node3", Data: []byte(`{"conn_url":"postgres://127.0.0.1:5434/postgres","api_url":"http://127.0.0.1:8010/patroni","state":"running","role":"replica","version":"4.1.4","xlog_location":48758784,"timeline":2,"replication_state":"streaming"}`)},
		},
		History: value(`[[1,25165984,"no recovery target specified","2024-05-01T10:00:00.000000+00:00","node1"]]`),
		Status:  value(`{"optime":50331648,"slots":{"node2":50331648,"node3":48758784}}`),
	}
}

// busyRaw exercises every column and footer: synchronous mode with a sync
// standby, pause, a scheduled switchover, tags, a pending and a scheduled
// restart, lags that round half to even, a member without a position and
// one in a state other than running.
func busyRaw() *dcs.Cluster {
	return &dcs.Cluster{
		Initialize: value("7268616322854375442"),
		Config:     value(`{"ttl": 30, "loop_wait": 10, "synchronous_mode": true, "pause": true}`),
		Leader:     &dcs.Leader{Name: "alpha"},
		Members: []dcs.Member{
			{Name: "alpha", Data: []byte(`{"conn_url":"postgres://10.0.0.1:5432/postgres","api_url":"http://10.0.0.1:8008/patroni","state":"running","role":"master","xlog_location":104857600,"timeline":3,"pending_restart":true,"tags":{"nofailover":true,"zone":"a"}}`)},
			{Name: "bravo", Data: []byte(`{"conn_url":"postgres://10.0.0.2:5432/postgres","api_url":"http://10.0.0.2:8008/patroni","state":"running","role":"replica","xlog_location":103284736,"timeline":3,"replication_state":"streaming"}`)},
			{Name: "charlie", Data: []byte(`{"conn_url":"postgres://10.0.0.3:5432/postgres","api_url":"http://10.0.0.3:8008/patroni","state":"running","role":"replica","xlog_location":102236160,"timeline":3,"scheduled_restart":{"schedule":"2030-01-01T02:00:00+00:00","postgres_version":"15.6"},"tags":{"clonefrom":true,"failover_priority":2}}`)},
			{Name: "delta", Data: []byte(`{"conn_url":"postgres://10.0.0.4:5432/postgres","api_url":"http://10.0.0.4:8008/patroni","state":"creating replica","role":"uninitialized"}`)},
		},
		Failover: value(`{"leader":"alpha","member":"bravo","scheduled_at":"2030-01-01T01:00:00+00:00"}`),
		Sync:     value(`{"leader":"alpha","sync_standby":"bravo"}`),
		Status:   value(`{"optime":104857600}`),
	}
}

// standbyRaw is a standby cluster (standby_cluster in /config) on hosts of
// their own and the default port: Host shows no port.
func standbyRaw() *dcs.Cluster {
	return &dcs.Cluster{
		Initialize: value("7268616322854375442"),
		Config:     value(`{"standby_cluster":{"host":"10.1.0.1","port":5432}}`),
		Leader:     &dcs.Leader{Name: "s1"},
		Members: []dcs.Member{
			{Name: "s1", Data: []byte(`{"conn_url":"postgres://db-s1:5432/postgres","state":"running","role":"standby_leader","xlog_location":1000,"timeline":1}`)},
			{Name: "s2", Data: []byte(`{"conn_url":"postgres://db-s2/postgres","state":"running","role":"replica","xlog_location":1000,"timeline":1}`)},
		},
		Status: value(`1000`),
	}
}
