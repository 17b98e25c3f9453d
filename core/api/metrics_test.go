package api

import (
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape GETs /metrics and parses it.
func scrape(t *testing.T, snap *Snapshot) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	rec := get(t, newTestServer(snap, ServerConfig{}), "/metrics")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s", rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/plain; version=0.0.4; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	text := rec.Body.String()
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, text)
	}
	return families, text
}

// metricValue returns the value of the family's only sample and checks its
// labels are Patroni 4.x's {scope, name}.
func metricValue(t *testing.T, families map[string]*dto.MetricFamily, name, scope, member string) (float64, bool) {
	t.Helper()
	mf, ok := families[name]
	if !ok {
		return 0, false
	}
	if mf.GetType() != dto.MetricType_GAUGE || len(mf.Metric) != 1 {
		t.Fatalf("%s: type %v with %d samples, want one gauge", name, mf.GetType(), len(mf.Metric))
	}
	m := mf.Metric[0]
	labels := map[string]string{}
	for _, l := range m.Label {
		labels[l.GetName()] = l.GetValue()
	}
	if len(labels) != 2 || labels["scope"] != scope || labels["name"] != member {
		t.Errorf("%s: labels %v, want scope=%s name=%s", name, labels, scope, member)
	}
	return m.GetGauge().GetValue(), true
}

func TestMetricsPrimary(t *testing.T) {
	families, text := scrape(t, primarySnapshot(t))
	want := map[string]float64{
		"patroni_version":                      100, // 0.1.0 -> 000100
		"patroni_postgres_running":             1,
		"patroni_postmaster_start_time":        1741078800.123456,
		"patroni_primary":                      1,
		"patroni_xlog_location":                float64(primaryLSN),
		"patroni_standby_leader":               0,
		"patroni_replica":                      0,
		"patroni_sync_standby":                 0,
		"patroni_quorum_standby":               0,
		"patroni_xlog_received_location":       0,
		"patroni_xlog_replayed_location":       0,
		"patroni_xlog_replayed_timestamp":      0,
		"patroni_xlog_paused":                  0,
		"patroni_postgres_streaming":           0,
		"patroni_postgres_in_archive_recovery": 0,
		"patroni_postgres_server_version":      150010,
		"patroni_cluster_unlocked":             0,
		"patroni_failsafe_mode_is_active":      0,
		"patroni_postgres_timeline":            2,
		"patroni_dcs_last_seen":                float64(testNow.Unix() - 2),
		"patroni_pending_restart":              0,
		"patroni_is_paused":                    0,
		"patroni_postgres_state":               5,
		"custos_watchdog_armed":                0,
	}
	for name, v := range want {
		got, ok := metricValue(t, families, name, "demo", "node1")
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	if len(families) != len(want) {
		t.Errorf("%d metric families, want %d:\n%s", len(families), len(want), text)
	}
	if strings.Contains(text, "patroni_master") {
		t.Error("patroni_master is 3.0.2's; 4.x has patroni_primary only")
	}
}

func TestMetricsReplica(t *testing.T) {
	snap := replicaSnapshot(t)
	snap.Status.Pause = true
	snap.Status.PendingRestart = true
	snap.Status.XLog.Paused = true
	families, _ := scrape(t, snap)
	want := map[string]float64{
		"patroni_primary":                 0,
		"patroni_replica":                 1,
		"patroni_sync_standby":            1,
		"patroni_xlog_location":           0,
		"patroni_xlog_received_location":  float64(node2Replay),
		"patroni_xlog_replayed_location":  float64(node2Replay),
		"patroni_xlog_replayed_timestamp": 1741083629.5,
		"patroni_xlog_paused":             1,
		"patroni_postgres_streaming":      1,
		"patroni_is_paused":               1,
		"patroni_pending_restart":         1,
	}
	for name, v := range want {
		if got, ok := metricValue(t, families, name, "demo", "node2"); !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, v)
		}
	}
}

// Without PostgreSQL running (no server_version) the streaming gauges are
// left out, as Patroni does; states without a number are -1.
func TestMetricsStopped(t *testing.T) {
	snap := &Snapshot{Status: Status{State: StateUnknown, Role: "replica", ClusterUnlocked: true, Patroni: Agent{Version: "4.1.4", Scope: "s", Name: "n"}}}
	families, _ := scrape(t, snap)
	for _, name := range []string{"patroni_postgres_streaming", "patroni_postgres_in_archive_recovery"} {
		if _, ok := families[name]; ok {
			t.Errorf("%s reported without a server version", name)
		}
	}
	for name, v := range map[string]float64{"patroni_version": 40104, "patroni_postgres_state": -1, "patroni_cluster_unlocked": 1, "patroni_postgres_running": 0} {
		if got, ok := metricValue(t, families, name, "s", "n"); !ok || got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
}

func TestPaddedVersion(t *testing.T) {
	for in, want := range map[string]float64{"4.1.4": 40104, "3.0.2": 30002, "0.1.0": 100, "10.20.30": 102030, "1.2.3-dev": 10203, "dev": 0, "": 0} {
		if got := paddedVersion(in); got != want {
			t.Errorf("paddedVersion(%q) = %v, want %v", in, got, want)
		}
	}
}

// The watchdog's state: armed on a fenced primary, and shown in /patroni.
func TestMetricsWatchdogArmed(t *testing.T) {
	snap := primarySnapshot(t)
	if snap.Status.Custos == nil {
		snap.Status.Custos = &Extension{}
	}
	snap.Status.Custos.Watchdog = &WatchdogStatus{Mode: "required", Driver: "process", Armed: true, Timeout: 7}
	families, _ := scrape(t, snap)
	if got, ok := metricValue(t, families, "custos_watchdog_armed", "demo", "node1"); !ok || got != 1 {
		t.Fatalf("custos_watchdog_armed = %v (present %v), want 1", got, ok)
	}
	rec := get(t, newTestServer(snap, ServerConfig{}), "/patroni")
	if body := rec.Body.String(); !strings.Contains(body, `"watchdog":{"mode":"required","driver":"process","armed":true,"timeout":7}`) {
		t.Fatalf("GET /patroni does not show the armed watchdog: %s", body)
	}
}

// Each callback's delivery: counters and a queue gauge labelled with the
// callback's name, and the same in /patroni.
func TestMetricsCallbacks(t *testing.T) {
	snap := primarySnapshot(t)
	if snap.Status.Custos == nil {
		snap.Status.Custos = &Extension{}
	}
	at := NewTimestamp(time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC))
	snap.Status.Custos.Callbacks = []CallbackStatus{
		{Name: "scripts", Delivered: 3, Failed: 1, Queued: 2, LastError: "exit status 1",
			Last: &CallbackEvent{Seq: 4, Action: "on_role_change", Role: "primary", At: *at}},
		{Name: "http"},
	}
	families, text := scrape(t, snap)
	want := map[string]map[string]float64{
		"custos_callback_events_delivered_total": {"scripts": 3, "http": 0},
		"custos_callback_events_failed_total":    {"scripts": 1, "http": 0},
		"custos_callback_events_queued":          {"scripts": 2, "http": 0},
	}
	for name, byCallback := range want {
		mf, ok := families[name]
		if !ok {
			t.Fatalf("%s missing:\n%s", name, text)
		}
		got := map[string]float64{}
		for _, m := range mf.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["scope"] != "demo" || labels["name"] != "node1" {
				t.Errorf("%s: labels %v", name, labels)
			}
			v := m.GetGauge().GetValue()
			if mf.GetType() == dto.MetricType_COUNTER {
				v = m.GetCounter().GetValue()
			}
			got[labels["callback"]] = v
		}
		if !maps.Equal(got, byCallback) {
			t.Errorf("%s = %v, want %v", name, got, byCallback)
		}
	}
	rec := get(t, newTestServer(snap, ServerConfig{}), "/patroni")
	if body := rec.Body.String(); !strings.Contains(body, `"callbacks":[{"name":"scripts","delivered":3,"failed":1,"queued":2,"last":{"seq":4,"action":"on_role_change","role":"primary","at":"2026-12-08 00:00:00+00:00","ok":false},"last_error":"exit status 1"}`) {
		t.Fatalf("GET /patroni does not show the callbacks: %s", body)
	}
}
