package api

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/custos-ha/custos/core/cluster"
)

// metricsContentType is the Prometheus text exposition format 0.0.4, the
// format Patroni serves.
const metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// minStreamingMetricsVersion is the PostgreSQL version from which Patroni
// reports patroni_postgres_streaming and _in_archive_recovery (9.6, the
// first with pg_stat_wal_receiver).
const minStreamingMetricsVersion = 90600

// metricLabels are Patroni 4.x's labels on every metric.
var metricLabels = []string{"scope", "name"}

// metric is one gauge of /metrics, computed from a snapshot. Patroni types
// a few of them (xlog locations, timeline) as counters; they are gauges
// here because they can go down (a rewound or re-cloned node, a new leader)
// and because promtool rejects counters without a _total suffix. Names,
// labels and values are Patroni's.
type metric struct {
	desc  *prometheus.Desc
	value func(*Snapshot) (float64, bool)
}

func newMetric(name, help string, value func(*Snapshot) (float64, bool)) metric {
	return metric{desc: prometheus.NewDesc(name, help, metricLabels, nil), value: value}
}

// always wraps a value that every scrape reports.
func always(f func(*Status) float64) func(*Snapshot) (float64, bool) {
	return func(s *Snapshot) (float64, bool) { return f(&s.Status), true }
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// postgresStates numbers the PostgreSQL states for patroni_postgres_state;
// Patroni promises these numbers never change.
var postgresStates = map[string]float64{
	StateInitDB:                0,
	StateInitDBFailed:          1,
	StateCustomBootstrap:       2,
	StateCustomBootstrapFailed: 3,
	StateCreatingReplica:       4,
	StateRunning:               5,
	StateStarting:              6,
	StateBootstrapStarting:     7,
	StateStartFailed:           8,
	StateRestarting:            9,
	StateRestartFailed:         10,
	StateStopping:              11,
	StateStopped:               12,
	StateStopFailed:            13,
	StateCrashed:               14,
}

// stateNumber is the state's number, -1 for a state without one.
func stateNumber(state string) float64 {
	if n, ok := postgresStates[state]; ok {
		return n
	}
	return -1
}

// paddedVersion is Patroni's patroni_version value: each dotted component
// zero-padded to two digits ("4.1.4" -> 040104). A component without
// leading digits counts as 0.
func paddedVersion(v string) float64 {
	var b strings.Builder
	for part := range strings.SplitSeq(v, ".") {
		end := 0
		for end < len(part) && part[end] >= '0' && part[end] <= '9' {
			end++
		}
		digits := part[:end]
		if digits == "" {
			digits = "0"
		}
		if len(digits) < 2 {
			b.WriteByte('0')
		}
		b.WriteString(digits)
	}
	n, err := strconv.ParseFloat(b.String(), 64)
	if err != nil {
		return 0
	}
	return n
}

func epochSeconds(t *Timestamp) float64 {
	if t == nil || t.IsZero() {
		return 0
	}
	return float64(t.UnixMicro()) / 1e6
}

// metrics is Patroni 4.1's metric set, in its order.
var metrics = []metric{
	newMetric("patroni_version", "Agent version without periods, each component padded to two digits (4.1.4 is 040104).",
		always(func(s *Status) float64 { return paddedVersion(s.Patroni.Version) })),
	newMetric("patroni_postgres_running", "Value is 1 if Postgres is running, 0 otherwise.",
		always(func(s *Status) float64 { return boolValue(s.State == StateRunning) })),
	newMetric("patroni_postmaster_start_time", "Epoch seconds since Postgres started.",
		always(func(s *Status) float64 { return epochSeconds(s.PostmasterStartTime) })),
	newMetric("patroni_primary", "Value is 1 if this node is the leader, 0 otherwise.",
		always(func(s *Status) float64 { return boolValue(cluster.IsPrimaryRole(s.Role)) })),
	newMetric("patroni_xlog_location", "Current location of the Postgres transaction log, 0 if this node is not the leader.",
		always(func(s *Status) float64 { return float64(s.XLog.PrimaryLocation()) })),
	newMetric("patroni_standby_leader", "Value is 1 if this node is the standby_leader, 0 otherwise.",
		always(func(s *Status) float64 { return boolValue(s.Role == cluster.RoleStandbyLeader) })),
	newMetric("patroni_replica", "Value is 1 if this node is a replica, 0 otherwise.",
		always(func(s *Status) float64 { return boolValue(s.Role == cluster.RoleReplica) })),
	newMetric("patroni_sync_standby", "Value is 1 if this node is a sync standby, 0 otherwise.",
		always(func(s *Status) float64 { return boolValue(s.SyncStandby) })),
	newMetric("patroni_quorum_standby", "Value is 1 if this node is a quorum standby, 0 otherwise.",
		always(func(s *Status) float64 { return boolValue(s.QuorumStandby) })),
	newMetric("patroni_xlog_received_location", "Current location of the received Postgres transaction log, 0 if this node is not a replica.",
		always(func(s *Status) float64 { return float64(s.XLog.Received()) })),
	newMetric("patroni_xlog_replayed_location", "Current location of the replayed Postgres transaction log, 0 if this node is not a replica.",
		always(func(s *Status) float64 { return float64(s.XLog.Replayed()) })),
	newMetric("patroni_xlog_replayed_timestamp", "Current timestamp of the replayed Postgres transaction log, 0 if null.",
		always(func(s *Status) float64 {
			if s.XLog == nil {
				return 0
			}
			return epochSeconds(s.XLog.ReplayedTimestamp)
		})),
	newMetric("patroni_xlog_paused", "Value is 1 if the Postgres xlog is paused, 0 otherwise.",
		always(func(s *Status) float64 { return boolValue(s.XLog != nil && s.XLog.Paused) })),
	newMetric("patroni_postgres_streaming", "Value is 1 if Postgres is streaming, 0 otherwise.",
		func(s *Snapshot) (float64, bool) {
			return boolValue(s.Status.ReplicationState == ReplicationStreaming), s.Status.ServerVersion >= minStreamingMetricsVersion
		}),
	newMetric("patroni_postgres_in_archive_recovery", "Value is 1 if Postgres is replicating from archive, 0 otherwise.",
		func(s *Snapshot) (float64, bool) {
			return boolValue(s.Status.ReplicationState == ReplicationInArchiveRecovery), s.Status.ServerVersion >= minStreamingMetricsVersion
		}),
	newMetric("patroni_postgres_server_version", "Version of Postgres (if running), 0 otherwise.",
		always(func(s *Status) float64 { return float64(s.ServerVersion) })),
	newMetric("patroni_cluster_unlocked", "Value is 1 if the cluster is unlocked, 0 if locked.",
		always(func(s *Status) float64 { return boolValue(s.ClusterUnlocked) })),
	newMetric("patroni_failsafe_mode_is_active", "Value is 1 if failsafe mode is active, 0 if inactive.",
		always(func(s *Status) float64 { return boolValue(s.FailsafeModeIsActive) })),
	newMetric("patroni_postgres_timeline", "Postgres timeline of this node (if running), 0 otherwise.",
		always(func(s *Status) float64 { return float64(s.Timeline) })),
	newMetric("patroni_dcs_last_seen", "Epoch timestamp when DCS was last contacted successfully.",
		always(func(s *Status) float64 { return float64(s.DCSLastSeen) })),
	newMetric("patroni_pending_restart", "Value is 1 if the node needs a restart, 0 otherwise.",
		always(func(s *Status) float64 { return boolValue(s.PendingRestart) })),
	newMetric("patroni_is_paused", "Value is 1 if auto failover is disabled, 0 otherwise.",
		always(func(s *Status) float64 { return boolValue(s.Pause) })),
	newMetric("patroni_postgres_state", "Numeric representation of Postgres state (0=initdb 1=initdb_failed 2=custom_bootstrap 3=custom_bootstrap_failed 4=creating_replica 5=running 6=starting 7=bootstrap_starting 8=start_failed 9=restarting 10=restart_failed 11=stopping 12=stopped 13=stop_failed 14=crashed, -1 otherwise).",
		always(func(s *Status) float64 { return stateNumber(s.State) })),
	// custos's own, after Patroni's set.
	newMetric("custos_watchdog_armed", "Value is 1 if the watchdog is armed (this node is a primary holding the leader key and fenced), 0 otherwise.",
		always(func(s *Status) float64 {
			return boolValue(s.Custos != nil && s.Custos.Watchdog != nil && s.Custos.Watchdog.Armed)
		})),
}

// callbackLabels label the callback metrics: the member's and the
// callback's name ("scripts" for [postgresql.callbacks]).
var callbackLabels = []string{"scope", "name", "callback"}

// callbackMetrics are custos's per-callback delivery figures.
var callbackMetrics = []struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(CallbackStatus) float64
}{
	{prometheus.NewDesc("custos_callback_events_delivered_total", "Events the callback handled.", callbackLabels, nil),
		prometheus.CounterValue, func(c CallbackStatus) float64 { return float64(c.Delivered) }},
	{prometheus.NewDesc("custos_callback_events_failed_total", "Events the callback failed (an error, a non-zero exit or its timeout).", callbackLabels, nil),
		prometheus.CounterValue, func(c CallbackStatus) float64 { return float64(c.Failed) }},
	{prometheus.NewDesc("custos_callback_events_queued", "Events waiting for delivery to the callback.", callbackLabels, nil),
		prometheus.GaugeValue, func(c CallbackStatus) float64 { return float64(c.Queued) }},
}

// collector is a prometheus.Collector reading the current snapshot on each
// scrape.
type collector struct{ src Source }

// Describe implements prometheus.Collector.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range metrics {
		ch <- m.desc
	}
	for _, m := range callbackMetrics {
		ch <- m.desc
	}
}

// Collect implements prometheus.Collector. Before the first snapshot there
// is nothing to report.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Snapshot()
	if s == nil {
		return
	}
	scope, name := s.Status.Patroni.Scope, s.Status.Patroni.Name
	for _, m := range metrics {
		v, ok := m.value(s)
		if !ok {
			continue
		}
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, v, scope, name)
	}
	if s.Status.Custos == nil {
		return
	}
	for _, cb := range s.Status.Custos.Callbacks {
		for _, m := range callbackMetrics {
			ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(cb), scope, name, cb.Name)
		}
	}
}

// newRegistry is a private registry holding only the snapshot collector
// (no process or Go runtime metrics: Patroni has none).
func newRegistry(src Source) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{src: src})
	return reg
}

// writeMetrics gathers the registry and writes the text format.
func writeMetrics(w io.Writer, reg prometheus.Gatherer) error {
	families, err := reg.Gather()
	if err != nil {
		return fmt.Errorf("gathering metrics: %w", err)
	}
	for _, mf := range families {
		if _, err := expfmt.MetricFamilyToText(w, mf); err != nil {
			return fmt.Errorf("writing metric %s: %w", mf.GetName(), err)
		}
	}
	return nil
}
