package api

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
)

// Member roles in the cluster document.
const (
	MemberLeader        = "leader"
	MemberStandbyLeader = "standby_leader"
	MemberSyncStandby   = "sync_standby"
	MemberQuorumStandby = "quorum_standby"
	MemberReplica       = "replica"
)

// ClusterInfo is the cluster document of GET /cluster, which patronictl
// list also builds from the DCS, in Patroni 4.x's shape, which also carries
// every field 3.0.2 has.
type ClusterInfo struct {
	Members             []MemberInfo         `json:"members"`
	Pause               bool                 `json:"pause,omitempty"`
	ScheduledSwitchover *ScheduledSwitchover `json:"scheduled_switchover,omitempty"`
	Scope               string               `json:"scope,omitempty"`
}

// ScheduledSwitchover is a pending scheduled switchover.
type ScheduledSwitchover struct {
	At   string `json:"at"`
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// MemberInfo is one member of the cluster document. The positions and lags
// are set for every member but the leader, "unknown" when the member did
// not publish them.
type MemberInfo struct {
	Name string `json:"name"`
	// Role is one of the Member* constants.
	Role string `json:"role"`
	// State is the leader's PostgreSQL state; for the others their
	// replication state when they publish one, else their state.
	State                string         `json:"state"`
	APIURL               string         `json:"api_url"`
	Host                 string         `json:"host,omitempty"`
	Port                 int            `json:"port,omitempty"`
	Timeline             int            `json:"timeline,omitempty"`
	PendingRestart       bool           `json:"pending_restart,omitempty"`
	PendingRestartReason map[string]any `json:"pending_restart_reason,omitempty"`
	ScheduledRestart     map[string]any `json:"scheduled_restart,omitempty"`
	Tags                 cluster.Tags   `json:"tags,omitzero"`
	ReceiveLSN           *Position      `json:"receive_lsn,omitempty"`
	ReceiveLag           *Lag           `json:"receive_lag,omitempty"`
	ReplayLSN            *Position      `json:"replay_lsn,omitempty"`
	ReplayLag            *Lag           `json:"replay_lag,omitempty"`
	LSN                  *Position      `json:"lsn,omitempty"`
	Lag                  *Lag           `json:"lag,omitempty"`
}

// unknown is how Patroni writes a position or lag it does not know.
const unknown = "unknown"

// Position is a WAL position written as PostgreSQL prints it ("0/3000060"),
// or "unknown".
type Position struct {
	LSN   int64
	Known bool
}

// MarshalJSON implements json.Marshaler.
func (p Position) MarshalJSON() ([]byte, error) {
	if !p.Known {
		return json.Marshal(unknown)
	}
	return json.Marshal(FormatLSN(p.LSN))
}

// UnmarshalJSON implements json.Unmarshaler.
func (p *Position) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("position: %w", err)
	}
	*p = Position{}
	if s == unknown {
		return nil
	}
	lsn, err := ParseLSN(s)
	if err != nil {
		return err
	}
	*p = Position{LSN: lsn, Known: true}
	return nil
}

// Lag is a lag in bytes, or "unknown".
type Lag struct {
	Bytes int64
	Known bool
}

// MarshalJSON implements json.Marshaler.
func (l Lag) MarshalJSON() ([]byte, error) {
	if !l.Known {
		return json.Marshal(unknown)
	}
	return json.Marshal(l.Bytes)
}

// UnmarshalJSON implements json.Unmarshaler.
func (l *Lag) UnmarshalJSON(data []byte) error {
	*l = Lag{}
	if err := json.Unmarshal(data, &l.Bytes); err == nil {
		l.Known = true
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil || s != unknown {
		return fmt.Errorf("lag: %s is neither a number nor %q", data, unknown)
	}
	return nil
}

// FormatLSN writes a WAL position as PostgreSQL does: two hexadecimal
// halves, upper case, without padding.
func FormatLSN(lsn int64) string {
	u := uint64(lsn)
	return fmt.Sprintf("%X/%X", u>>32, u&0xFFFFFFFF)
}

// ParseLSN reads "X/Y".
func ParseLSN(s string) (int64, error) {
	var hi, lo uint64
	if n, err := fmt.Sscanf(s, "%X/%X", &hi, &lo); err != nil || n != 2 || hi > 0xFFFFFFFF || lo > 0xFFFFFFFF {
		return 0, fmt.Errorf("%q is not a WAL position", s)
	}
	return int64(hi<<32 | lo), nil
}

// NewClusterInfo builds the cluster document from a DCS view the way
// Patroni's cluster_as_json does: members sorted by name, host and port
// from conn_kwargs or conn_url, lags against /status optime (never below
// 0). custosctl builds the same document from its own DCS read. dyn is the
// dynamic configuration (pause, synchronous_mode, standby_cluster: in a
// standby cluster the leader is a standby leader and nobody is
// synchronous).
func NewClusterInfo(c *cluster.Cluster, scope string, dyn config.Dynamic) ClusterInfo {
	info := ClusterInfo{Members: []MemberInfo{}, Pause: dyn.Pause, Scope: scope}
	leader := c.LeaderName()
	syncRole := MemberSyncStandby
	if dyn.SynchronousMode == config.SyncQuorum {
		syncRole = MemberQuorumStandby
	}
	standby := dyn.StandbyCluster != nil
	synchronous := (dyn.SynchronousMode == config.SyncOn || dyn.SynchronousMode == config.SyncQuorum) && !standby
	optime := c.Status.Optime

	for _, m := range c.Members {
		mi := MemberInfo{
			Name:                 m.Name,
			Role:                 MemberReplica,
			State:                m.State,
			APIURL:               m.APIURL,
			Timeline:             m.Timeline,
			PendingRestart:       m.PendingRestart,
			PendingRestartReason: m.PendingRestartReason,
			ScheduledRestart:     m.ScheduledRestart,
			Tags:                 m.Tags,
		}
		switch {
		case m.Name == leader && standby:
			mi.Role = MemberStandbyLeader
		case m.Name == leader:
			mi.Role = MemberLeader
		case synchronous && c.IsSync(m.Name):
			mi.Role = syncRole
		}
		if mi.Role != MemberLeader && m.ReplicationState != "" {
			mi.State = m.ReplicationState
		}
		if host, port := m.HostPort(); host != "" {
			mi.Host, mi.Port = host, port
		}
		if m.Name != leader {
			mi.ReceiveLSN, mi.ReceiveLag = positionAndLag(m.ReceiveLSN, optime)
			mi.ReplayLSN, mi.ReplayLag = positionAndLag(m.ReplayLSN, optime)
			mi.LSN, mi.Lag = positionAndLag(m.XLogLocation, optime)
		}
		info.Members = append(info.Members, mi)
	}
	slices.SortFunc(info.Members, func(a, b MemberInfo) int { return strings.Compare(a.Name, b.Name) })

	if f := c.Failover; f != nil && f.ScheduledAt != nil {
		info.ScheduledSwitchover = &ScheduledSwitchover{At: isoformat(*f.ScheduledAt), From: f.Leader, To: f.Candidate}
	}
	return info
}

// positionAndLag is one position of a member and its lag behind optime;
// both unknown when the member did not publish the position (or published
// 0).
func positionAndLag(lsn *int64, optime int64) (*Position, *Lag) {
	if lsn == nil || *lsn == 0 {
		return &Position{}, &Lag{}
	}
	return &Position{LSN: *lsn, Known: true}, &Lag{Bytes: max(optime-*lsn, 0), Known: true}
}

// isoformat writes a time as Python's datetime.isoformat(): microseconds
// only when non-zero, the offset as +hh:mm.
func isoformat(t time.Time) string {
	if t.Nanosecond()/nanosecondsPerMicros == 0 {
		return t.Format("2006-01-02T15:04:05-07:00")
	}
	return t.Format("2006-01-02T15:04:05.000000-07:00")
}
