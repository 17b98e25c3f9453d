package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
	goldenfile "github.com/custos-ha/custos/testkit/golden"
)

// golden compares got (indented JSON) with testdata/<name>.golden.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	var indented bytes.Buffer
	if err := json.Indent(&indented, got, "", "  "); err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", name, err, got)
	}
	indented.WriteByte('\n')
	goldenfile.Check(t, filepath.Join("testdata", name+".golden"), indented.Bytes())
}

func TestGoldenDocuments(t *testing.T) {
	for _, c := range []struct {
		name string
		snap *Snapshot
		path string
	}{
		{"patroni-primary", primarySnapshot(t), "/patroni"},
		{"patroni-replica", replicaSnapshot(t), "/patroni"},
		{"cluster-primary", primarySnapshot(t), "/cluster"},
		{"cluster-replica", replicaOf302Cluster(t), "/cluster"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := get(t, newTestServer(c.snap, ServerConfig{}), c.path)
			if rec.Code != http.StatusOK {
				t.Fatalf("GET %s = %d: %s", c.path, rec.Code, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			golden(t, c.name, rec.Body.Bytes())
		})
	}
}

// replicaOf302Cluster is node2's snapshot in a paused cluster whose members
// run Patroni 3.0.2: role "master", no receive/replay positions, the sync
// key without quorum.
func replicaOf302Cluster(t *testing.T) *Snapshot {
	snap := replicaSnapshot(t)
	raw := testClusterRaw()
	raw.Members = []dcs.Member{
		{Name: "pg1", Data: []byte(`{"conn_url":"postgres://10.0.0.1:5432/postgres","api_url":"http://10.0.0.1:8008/patroni","state":"running","role":"master","version":"3.0.2","xlog_location":` + itoa(primaryLSN) + `,"timeline":2}`)},
		{Name: "node2", Data: []byte(`{"conn_url":"postgres://127.0.0.1:5433/postgres","api_url":"http://127.0.0.1:8009/patroni","state":"running","role":"replica","version":"0.1.0","xlog_location":` + itoa(node2Replay) + `,"timeline":2,"receive_lsn":` + itoa(node2Replay) + `,"replay_lsn":` + itoa(node2Replay) + `,"replication_state":"streaming"}`)},
		{Name: "pg3", Data: []byte(`{"conn_url":"postgres://10.0.0.3:5432/postgres","api_url":"http://10.0.0.3:8008/patroni","state":"running","role":"replica","version":"3.0.2","xlog_location":` + itoa(node3Replay) + `,"timeline":2,"pending_restart":true,"scheduled_restart":{"schedule":"2030-01-01T00:00:00+00:00","postgres_version":"15.2"}}`)},
	}
	raw.Leader = &dcs.Leader{Name: "pg1", Version: "5"}
	raw.Sync = &dcs.Value{Data: []byte(`{"leader":"pg1","sync_standby":"pg3"}`), Version: "6"}
	raw.Failover = nil
	c, problems := cluster.FromDCS(raw)
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	snap.Cluster = c
	snap.Status.Pause, snap.Dynamic.Pause = true, true
	snap.Status.SyncStandby = false
	return snap
}

// keys returns the top-level keys of a JSON object.
func keys(t *testing.T, data []byte) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, data)
	}
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The status documents carry exactly Patroni's field names (plus custos's
// own "custos" object), independently of the golden files.
func TestStatusFieldNames(t *testing.T) {
	patroniFields := []string{
		"state", "postmaster_start_time", "role", "server_version", "xlog", "sync_standby", "quorum_standby",
		"timeline", "replication_state", "replication", "pause", "cluster_unlocked", "failsafe_mode_is_active",
		"dcs_last_seen", "tags", "database_system_identifier", "pending_restart", "pending_restart_reason",
		"patroni", "scheduled_restart", "watchdog_failed", "logger_queue_size", "logger_records_lost", "custos",
	}
	full := primarySnapshot(t)
	st := &full.Status
	st.SyncStandby, st.QuorumStandby, st.ReplicationState = true, true, ReplicationStreaming
	st.Pause, st.ClusterUnlocked, st.FailsafeModeIsActive = true, true, true
	st.PendingRestart = true
	st.PendingRestartReason = map[string]ParamChange{"max_connections": {OldValue: "100", NewValue: "200"}}
	st.ScheduledRestart = map[string]any{"schedule": "2030-01-01T00:00:00+00:00", "postgres_version": "16.0"}
	st.WatchdogFailed, st.LoggerQueueSize, st.LoggerRecordsLost = true, 1001, 5
	body := get(t, newTestServer(full, ServerConfig{}), "/patroni").Body.Bytes()
	want := slices.Clone(patroniFields)
	slices.Sort(want)
	if got := keys(t, body); !slices.Equal(got, want) {
		t.Errorf("/patroni keys:\n got %v\nwant %v", got, want)
	}
	var doc struct {
		XLog    map[string]any `json:"xlog"`
		Patroni map[string]any `json:"patroni"`
		Reason  map[string]any `json:"pending_restart_reason"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.XLog) != 1 || doc.XLog["location"] != float64(primaryLSN) {
		t.Errorf("primary xlog = %v, want only location", doc.XLog)
	}
	if doc.Patroni["version"] != "0.1.0" || doc.Patroni["scope"] != "demo" || doc.Patroni["name"] != "node1" {
		t.Errorf("patroni = %v", doc.Patroni)
	}
	if r, _ := doc.Reason["max_connections"].(map[string]any); r["old_value"] != "100" || r["new_value"] != "200" {
		t.Errorf("pending_restart_reason = %v", doc.Reason)
	}

	// A replica's xlog has all four fields, null when unknown.
	rep := replicaSnapshot(t)
	rep.Status.XLog.ReplayedTimestamp = nil
	body = get(t, newTestServer(rep, ServerConfig{}), "/patroni").Body.Bytes()
	if !bytes.Contains(body, []byte(`"xlog":{"received_location":`+itoa(node2Replay)+`,"replayed_location":`+itoa(node2Replay)+`,"replayed_timestamp":null,"paused":false}`)) {
		t.Errorf("replica xlog not in Patroni's form: %s", body)
	}

	// A member whose status query failed: only state, role and the DCS
	// fields, as Patroni.
	min := &Snapshot{Status: Status{State: StateStopped, Role: cluster.RoleReplica, ClusterUnlocked: true, Patroni: Agent{Version: "0.1.0", Scope: "demo", Name: "n"}}}
	body = get(t, newTestServer(min, ServerConfig{}), "/patroni").Body.Bytes()
	const wantMin = `{"state":"stopped","role":"replica","cluster_unlocked":true,"dcs_last_seen":0,"patroni":{"version":"0.1.0","scope":"demo","name":"n"}}`
	if string(body) != wantMin {
		t.Errorf("minimal status:\n got %s\nwant %s", body, wantMin)
	}
}

func TestClusterDocument(t *testing.T) {
	body := get(t, newTestServer(primarySnapshot(t), ServerConfig{}), "/cluster").Body.Bytes()
	var doc ClusterInfo
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("decoding /cluster: %v\n%s", err, body)
	}
	var names, roles []string
	for _, m := range doc.Members {
		names = append(names, m.Name)
		roles = append(roles, m.Role)
	}
	if !slices.Equal(names, []string{"node1", "node2", "node3", "node4"}) {
		t.Errorf("members %v, want sorted by name", names)
	}
	if !slices.Equal(roles, []string{"leader", "sync_standby", "replica", "replica"}) {
		t.Errorf("roles %v", roles)
	}
	byName := map[string]MemberInfo{}
	for _, m := range doc.Members {
		byName[m.Name] = m
	}
	if l := byName["node1"]; l.Host != "127.0.0.1" || l.Port != 5432 || l.LSN != nil || l.Lag != nil || l.State != "running" {
		t.Errorf("leader %+v: want host/port from conn_url and no positions", l)
	}
	if m := byName["node2"]; m.State != "streaming" || *m.Lag != (Lag{Bytes: 256, Known: true}) || m.ReplayLSN.LSN != node2Replay {
		t.Errorf("node2 %+v", m)
	}
	if m := byName["node3"]; m.State != "in archive recovery" || m.Lag.Bytes != 64<<20 || m.ReceiveLSN.Known || m.ReceiveLag.Known || !m.Tags.NoFailover {
		t.Errorf("node3 %+v", m)
	}
	if m := byName["node4"]; m.LSN.Known || m.Lag.Known || m.State != "creating replica" {
		t.Errorf("node4 %+v", m)
	}
	if doc.Scope != "demo" || doc.ScheduledSwitchover == nil || *doc.ScheduledSwitchover != (ScheduledSwitchover{At: "2030-01-01T00:00:00+00:00", From: "node1", To: "node2"}) {
		t.Errorf("scope %q scheduled_switchover %+v", doc.Scope, doc.ScheduledSwitchover)
	}
	if !bytes.Contains(body, []byte(`"lsn":"unknown","lag":"unknown"`)) {
		t.Errorf("unknown positions not written as Patroni does: %s", body)
	}

	// Quorum mode names the role quorum_standby; sync mode off names none.
	snap := primarySnapshot(t)
	snap.Dynamic.SynchronousMode = config.SyncQuorum
	if body := get(t, newTestServer(snap, ServerConfig{}), "/cluster").Body.String(); !strings.Contains(body, `"name":"node2","role":"quorum_standby"`) {
		t.Errorf("quorum mode: %s", body)
	}
	snap.Dynamic.SynchronousMode = config.SyncOff
	if body := get(t, newTestServer(snap, ServerConfig{}), "/cluster").Body.String(); strings.Contains(body, "_standby") {
		t.Errorf("sync off: %s", body)
	}
	// In a standby cluster the leader is the standby leader.
	snap.Dynamic.StandbyCluster = &config.StandbyCluster{Host: "10.0.0.5"}
	snap.Dynamic.Pause = true
	body = get(t, newTestServer(snap, ServerConfig{}), "/cluster").Body.Bytes()
	if !bytes.Contains(body, []byte(`"name":"node1","role":"standby_leader"`)) || !bytes.Contains(body, []byte(`"pause":true`)) {
		t.Errorf("standby cluster, paused: %s", body)
	}

	// No DCS view yet: no document.
	snap = primarySnapshot(t)
	snap.Cluster = nil
	if rec := get(t, newTestServer(snap, ServerConfig{}), "/cluster"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("GET /cluster without a DCS view = %d", rec.Code)
	}
}

func TestHistoryConfigFailsafe(t *testing.T) {
	snap := primarySnapshot(t)
	s := newTestServer(snap, ServerConfig{})
	rec := get(t, s, "/history")
	if rec.Code != http.StatusOK || rec.Body.String() != `[[1,83886176,"no recovery target specified","2025-03-04T09:00:00.123456+00:00","node1"]]` {
		t.Errorf("GET /history = %d %s", rec.Code, rec.Body)
	}
	rec = get(t, s, "/config")
	if rec.Code != http.StatusOK || rec.Body.String() != string(snap.Cluster.Config.Data) || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("GET /config = %d %s", rec.Code, rec.Body)
	}
	if rec := get(t, s, "/failsafe"); rec.Code != http.StatusBadGateway {
		t.Errorf("GET /failsafe without failsafe = %d", rec.Code)
	}

	snap = primarySnapshot(t)
	snap.Cluster.HasHistory, snap.Cluster.History = false, nil
	snap.Cluster.Config = nil
	snap.Failsafe = cluster.Failsafe{"node1": "http://127.0.0.1:8008/patroni", "node2": "http://127.0.0.1:8009/patroni"}
	s = newTestServer(snap, ServerConfig{})
	if rec := get(t, s, "/history"); rec.Code != http.StatusOK || rec.Body.String() != "[]" {
		t.Errorf("GET /history without /history = %d %s", rec.Code, rec.Body)
	}
	if rec := get(t, s, "/config"); rec.Code != http.StatusBadGateway {
		t.Errorf("GET /config without /config = %d", rec.Code)
	}
	rec = get(t, s, "/failsafe")
	if rec.Code != http.StatusOK || rec.Body.String() != `{"node1":"http://127.0.0.1:8008/patroni","node2":"http://127.0.0.1:8009/patroni"}` {
		t.Errorf("GET /failsafe = %d %s", rec.Code, rec.Body)
	}

	for _, bad := range []string{`not json`, `[1,2]`, `{"ttl":`} {
		snap = primarySnapshot(t)
		snap.Cluster.Config = &cluster.Raw{Data: []byte(bad), Version: "1"}
		if rec := get(t, newTestServer(snap, ServerConfig{}), "/config"); rec.Code != http.StatusBadGateway {
			t.Errorf("GET /config with /config %q = %d, want 502", bad, rec.Code)
		}
	}
}

func TestRouting(t *testing.T) {
	s := newTestServer(primarySnapshot(t), ServerConfig{})
	// The first path segment picks the handler, whatever follows.
	for _, p := range []string{"/patroni", "/patroni/", "/patroni/extra?x=1"} {
		if rec := get(t, s, p); rec.Code != http.StatusOK || !strings.HasPrefix(rec.Body.String(), `{"state":"running"`) {
			t.Errorf("GET %s = %d %.40s", p, rec.Code, rec.Body)
		}
	}
	// Methods without a handler.
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		rec := httptestDo(s, m, "/nothing-here")
		if rec.Code != http.StatusNotImplemented {
			t.Errorf("%s /nothing-here = %d, want 501", m, rec.Code)
		}
	}
	// Extra headers go on every normal answer.
	s = newTestServer(primarySnapshot(t), ServerConfig{HTTPExtraHeaders: map[string]string{"X-Frame-Options": "DENY"}, HTTPSExtraHeaders: map[string]string{"Strict-Transport-Security": "max-age=1"}})
	rec := get(t, s, "/primary")
	if rec.Header().Get("X-Frame-Options") != "DENY" || rec.Header().Get("Strict-Transport-Security") != "" {
		t.Errorf("extra headers over plain HTTP: %v", rec.Header())
	}
}

// Requests are logged at debug level only: health checks arrive every
// few seconds from every load balancer.
func TestRequestLogging(t *testing.T) {
	for _, level := range []hclog.Level{hclog.Info, hclog.Debug} {
		var buf bytes.Buffer
		logger := hclog.New(&hclog.LoggerOptions{Level: level, Output: &buf, JSONFormat: true})
		s := New(ServerConfig{}, fixedSource{primarySnapshot(t)}, logger)
		s.now = func() time.Time { return testNow }
		get(t, s, "/replica?lag=1MB")
		logged := buf.String()
		if level == hclog.Info && logged != "" {
			t.Errorf("logged at info level: %s", logged)
		}
		if level == hclog.Debug && (!strings.Contains(logged, `"path":"/replica"`) || !strings.Contains(logged, `"status":503`)) {
			t.Errorf("debug log lacks the request: %s", logged)
		}
	}
}
