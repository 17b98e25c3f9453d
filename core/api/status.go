package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/custos-ha/custos/core/cluster"
)

// PostgreSQL states as written in Status.State and member keys (Patroni's
// PostgresqlState values, plus "unknown" when the status query failed while
// PostgreSQL runs).
const (
	StateInitDB                = "initializing new cluster"
	StateInitDBFailed          = "initdb failed"
	StateCustomBootstrap       = "running custom bootstrap script"
	StateCustomBootstrapFailed = "custom bootstrap failed"
	StateCreatingReplica       = "creating replica"
	StateRunning               = "running"
	StateStarting              = "starting"
	StateBootstrapStarting     = "starting after custom bootstrap"
	StateStartFailed           = "start failed"
	StateRestarting            = "restarting"
	StateRestartFailed         = "restart failed"
	StateStopping              = "stopping"
	StateStopped               = "stopped"
	StateStopFailed            = "stop failed"
	StateCrashed               = "crashed"
	StateUnknown               = "unknown"
)

// Replication states of a replica (Status.ReplicationState).
const (
	ReplicationStreaming         = "streaming"
	ReplicationInArchiveRecovery = "in archive recovery"
)

// Status is the status document served by GET /patroni and in the body of
// every GET health check, field for field in Patroni's
// order and with Patroni's JSON names. Optional fields are left out when
// zero, as Patroni leaves them out.
//
// The controller fills it completely; the server serves it verbatim and
// also reads its role, state, xlog, tags and pause flag to decide health
// checks, so it must agree with the rest of the Snapshot.
type Status struct {
	// State is one of the State* constants.
	State               string     `json:"state"`
	PostmasterStartTime *Timestamp `json:"postmaster_start_time,omitempty"`
	// Role is one of cluster.Role*: "primary", "replica", "standby_leader",
	// "demoted" or "uninitialized" (Patroni 3.0.2 sends "master").
	Role string `json:"role"`
	// ServerVersion is PostgreSQL's server_version_num (150004).
	ServerVersion int   `json:"server_version,omitempty"`
	XLog          *XLog `json:"xlog,omitempty"`
	// SyncStandby: this replica is listed in /sync in synchronous mode.
	SyncStandby bool `json:"sync_standby,omitempty"`
	// QuorumStandby: this replica is listed in /sync in quorum mode.
	QuorumStandby bool `json:"quorum_standby,omitempty"`
	Timeline      int  `json:"timeline,omitempty"`
	// ReplicationState is a replica's ReplicationStreaming or
	// ReplicationInArchiveRecovery (4.x).
	ReplicationState string `json:"replication_state,omitempty"`
	// Replication lists the walsenders on this node (pg_stat_replication).
	Replication          []Replication `json:"replication,omitempty"`
	Pause                bool          `json:"pause,omitempty"`
	ClusterUnlocked      bool          `json:"cluster_unlocked,omitempty"`
	FailsafeModeIsActive bool          `json:"failsafe_mode_is_active,omitempty"`
	// DCSLastSeen is the Unix time of the last successful DCS call, 0 if
	// none yet. Patroni always sends it.
	DCSLastSeen              int64        `json:"dcs_last_seen"`
	Tags                     cluster.Tags `json:"tags,omitzero"`
	DatabaseSystemIdentifier string       `json:"database_system_identifier,omitempty"`
	PendingRestart           bool         `json:"pending_restart,omitempty"`
	// PendingRestartReason maps a parameter to its old and new value (3.3+).
	PendingRestartReason map[string]ParamChange `json:"pending_restart_reason,omitempty"`
	Patroni              Agent                  `json:"patroni"`
	// ScheduledRestart is {"schedule": ISO time, ...filters}.
	ScheduledRestart  map[string]any `json:"scheduled_restart,omitempty"`
	WatchdogFailed    bool           `json:"watchdog_failed,omitempty"`
	LoggerQueueSize   int            `json:"logger_queue_size,omitempty"`
	LoggerRecordsLost int            `json:"logger_records_lost,omitempty"`
	// Custos carries what custos adds to the document; Patroni's readers
	// ignore the key.
	Custos *Extension `json:"custos,omitempty"`
}

// Agent is the "patroni" object of the status document. Scope and name are
// this member's; Patroni 3.0.2 sends no name.
type Agent struct {
	Version string `json:"version"`
	Scope   string `json:"scope"`
	Name    string `json:"name,omitempty"`
}

// Extension is custos's own part of the status document.
type Extension struct {
	// Version is custos's own release version.
	Version string `json:"version,omitempty"`
	// Reason is the last HA cycle's message.
	Reason string `json:"reason,omitempty"`
	// Problems are conditions an operator should see (a malformed DCS key,
	// a broken data directory), one sentence each.
	Problems []string `json:"problems,omitempty"`
	// Watchdog is the watchdog's state; nil with mode off.
	Watchdog *WatchdogStatus `json:"watchdog,omitempty"`
	// Callbacks is the delivery of each enabled callback (the scripts of
	// [postgresql.callbacks] as "scripts", plugins by name).
	Callbacks []CallbackStatus `json:"callbacks,omitempty"`
}

// CallbackStatus is one callback's event delivery as /patroni shows it
// under "custos".
type CallbackStatus struct {
	Name string `json:"name"`
	// Delivered and Failed count the events handled and failed.
	Delivered uint64 `json:"delivered"`
	Failed    uint64 `json:"failed"`
	// Queued is how many events wait for delivery.
	Queued int `json:"queued"`
	// Last is the last event handled or failed; nil before the first.
	Last *CallbackEvent `json:"last,omitempty"`
	// LastError is the last failure's message.
	LastError string `json:"last_error,omitempty"`
}

// CallbackEvent is one event of a callback's delivery.
type CallbackEvent struct {
	Seq    uint64 `json:"seq"`
	Action string `json:"action"`
	Role   string `json:"role"`
	// At is when the delivery ended, ISO 8601.
	At Timestamp `json:"at"`
	OK bool      `json:"ok"`
}

// WatchdogStatus is the watchdog as /patroni shows it under "custos".
type WatchdogStatus struct {
	Mode   string `json:"mode"`
	Driver string `json:"driver"`
	// Armed: counting down now (this member is a primary with the key).
	Armed bool `json:"armed"`
	// Timeout is the countdown in seconds while armed.
	Timeout float64 `json:"timeout,omitempty"`
	// Reason says why it is not usable or not armed.
	Reason string `json:"reason,omitempty"`
}

// ParamChange is one entry of pending_restart_reason. The agent's
// observation carries it as it is served.
type ParamChange = cluster.ParamChange

// Replication is one walsender of pg_stat_replication as Patroni reports
// it. The agent's observation carries it as it is served.
type Replication = cluster.Replication

// XLog is the "xlog" object: {"location"} on a primary; on a replica
// {"received_location", "replayed_location", "replayed_timestamp",
// "paused"}, all four always present (null when unknown), as Patroni sends
// them.
type XLog struct {
	// Location is the primary's flushed WAL position; set only on a
	// primary, and selects the primary form.
	Location *int64
	// The replica form.
	ReceivedLocation  *int64
	ReplayedLocation  *int64
	ReplayedTimestamp *Timestamp
	Paused            bool
}

type xlogPrimary struct {
	Location int64 `json:"location"`
}

type xlogReplica struct {
	ReceivedLocation  *int64     `json:"received_location"`
	ReplayedLocation  *int64     `json:"replayed_location"`
	ReplayedTimestamp *Timestamp `json:"replayed_timestamp"`
	Paused            bool       `json:"paused"`
}

// MarshalJSON writes the primary form when Location is set, else the
// replica form.
func (x XLog) MarshalJSON() ([]byte, error) {
	if x.Location != nil {
		return json.Marshal(xlogPrimary{Location: *x.Location})
	}
	return json.Marshal(xlogReplica{
		ReceivedLocation:  x.ReceivedLocation,
		ReplayedLocation:  x.ReplayedLocation,
		ReplayedTimestamp: x.ReplayedTimestamp,
		Paused:            x.Paused,
	})
}

// UnmarshalJSON reads either form.
func (x *XLog) UnmarshalJSON(data []byte) error {
	var raw struct {
		Location          *int64     `json:"location"`
		ReceivedLocation  *int64     `json:"received_location"`
		ReplayedLocation  *int64     `json:"replayed_location"`
		ReplayedTimestamp *Timestamp `json:"replayed_timestamp"`
		Paused            bool       `json:"paused"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("xlog: %w", err)
	}
	*x = XLog(raw)
	return nil
}

// Primary reports whether the xlog is in the primary form.
func (x *XLog) Primary() bool { return x != nil && x.Location != nil }

// Received is the received WAL position of a replica, 0 when unknown.
func (x *XLog) Received() int64 {
	if x == nil {
		return 0
	}
	return value(x.ReceivedLocation)
}

// Replayed is the replayed WAL position of a replica, 0 when unknown.
func (x *XLog) Replayed() int64 {
	if x == nil {
		return 0
	}
	return value(x.ReplayedLocation)
}

// PrimaryLocation is the primary's WAL position, 0 when unknown.
func (x *XLog) PrimaryLocation() int64 {
	if x == nil {
		return 0
	}
	return value(x.Location)
}

func value(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// IsPrimary reports whether the document describes a running primary, the
// way Patroni's leader race reads a peer: role primary (or 3.0.2's
// "master"), or a non-zero primary WAL location.
func (s Status) IsPrimary() bool {
	return cluster.IsPrimaryRole(s.Role) || s.XLog.PrimaryLocation() != 0
}

// WALPosition is the node's WAL position as the leader race compares it:
// the primary's location, else max(received, replayed).
func (s Status) WALPosition() int64 {
	if s.XLog.Primary() {
		return s.XLog.PrimaryLocation()
	}
	return max(s.XLog.Received(), s.XLog.Replayed())
}

// IsRunning reports whether PostgreSQL is running.
func (s Status) IsRunning() bool { return s.State == StateRunning }

// Timestamp is a PostgreSQL timestamptz as Patroni serializes it (Python's
// str(datetime): "2024-08-28 19:39:26.352526+00:00").
type Timestamp struct{ time.Time }

// pythonLayout is str(datetime) for a time with microseconds; Python drops
// the fraction when it is zero.
const (
	pythonLayout         = "2006-01-02 15:04:05.000000-07:00"
	pythonLayoutNoFrac   = "2006-01-02 15:04:05-07:00"
	nanosecondsPerMicros = 1000
)

// NewTimestamp returns t as a Timestamp in UTC, truncated to microseconds
// (PostgreSQL's precision).
func NewTimestamp(t time.Time) *Timestamp {
	return &Timestamp{t.UTC().Truncate(time.Microsecond)}
}

// String renders the time as Patroni does.
func (t Timestamp) String() string {
	if t.Nanosecond()/nanosecondsPerMicros == 0 {
		return t.Format(pythonLayoutNoFrac)
	}
	return t.Format(pythonLayout)
}

// MarshalJSON implements json.Marshaler.
func (t Timestamp) MarshalJSON() ([]byte, error) { return json.Marshal(t.String()) }

// UnmarshalJSON accepts Patroni's form and ISO 8601. A value that is not a
// time leaves the zero time rather than failing the whole document: a
// peer's odd timestamp must not make it look unreachable in the leader
// race, which never reads timestamps.
func (t *Timestamp) UnmarshalJSON(data []byte) error {
	*t = Timestamp{}
	var s string
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) || json.Unmarshal(data, &s) != nil {
		return nil
	}
	if parsed, err := cluster.ParseTime(s); err == nil {
		t.Time = parsed
	}
	return nil
}
