package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Roles as written in member keys and /patroni. Patroni 3.0.2 writes
// "master" for a primary; readers accept both.
const (
	RolePrimary       = "primary"
	RoleMaster        = "master"
	RoleReplica       = "replica"
	RoleStandbyLeader = "standby_leader"
	RoleDemoted       = "demoted"
	RoleUninitialized = "uninitialized"
)

// IsPrimaryRole reports whether a role string names a primary.
func IsPrimaryRole(role string) bool { return role == RolePrimary || role == RoleMaster }

// Member is one members/<name> value (Patroni's member JSON) with its DCS
// version. Fields absent from the JSON keep their zero value; pointers mark
// the fields whose absence matters.
type Member struct {
	Name    string `json:"-"`
	Version string `json:"-"` // DCS version of the key
	Session string `json:"-"`

	ConnURL                string         `json:"conn_url,omitempty"`
	APIURL                 string         `json:"api_url,omitempty"`
	ProxyURL               string         `json:"proxy_url,omitempty"`
	State                  string         `json:"state,omitempty"`
	Role                   string         `json:"role,omitempty"`
	AgentVersion           string         `json:"version,omitempty"`
	Tags                   Tags           `json:"tags,omitzero"`
	Pause                  bool           `json:"pause,omitempty"`
	CheckpointAfterPromote *bool          `json:"checkpoint_after_promote,omitempty"`
	PendingRestart         bool           `json:"pending_restart,omitempty"`
	PendingRestartReason   map[string]any `json:"pending_restart_reason,omitempty"`
	ScheduledRestart       map[string]any `json:"scheduled_restart,omitempty"`
	XLogLocation           *int64         `json:"xlog_location,omitempty"`
	Timeline               int            `json:"timeline,omitempty"`
	ReceiveLSN             *int64         `json:"receive_lsn,omitempty"`
	ReplayLSN              *int64         `json:"replay_lsn,omitempty"`
	ReplicationState       string         `json:"replication_state,omitempty"`
	// ConnKwargs is the alternative to conn_url some writers use.
	ConnKwargs map[string]any `json:"conn_kwargs,omitempty"`
}

// ParseMember decodes a member value. Besides Patroni's JSON it accepts the
// legacy form "postgres://host:port/db?api_url=..." .
func ParseMember(name string, data []byte) (Member, error) {
	m := Member{Name: name}
	trimmed := bytes.TrimSpace(data)
	if bytes.HasPrefix(trimmed, []byte("postgres://")) || bytes.HasPrefix(trimmed, []byte("postgresql://")) {
		u, err := url.Parse(string(trimmed))
		if err != nil {
			return m, fmt.Errorf("member %s: legacy value: %w", name, err)
		}
		m.APIURL = u.Query().Get("api_url")
		q := u.Query()
		q.Del("api_url")
		u.RawQuery = q.Encode()
		m.ConnURL = u.String()
		return m, nil
	}
	if !isObject(trimmed) {
		return m, fmt.Errorf("member %s: not a JSON object", name)
	}
	if err := json.Unmarshal(trimmed, &m); err != nil {
		return Member{Name: name}, fmt.Errorf("member %s: %w", name, err)
	}
	return m, nil
}

// Marshal encodes the member value compactly, as Patroni writes it.
func (m Member) Marshal() []byte {
	b, err := json.Marshal(m)
	if err != nil {
		// Only maps with unsupported values can fail; they come from our
		// own code.
		panic(fmt.Sprintf("encoding member %s: %v", m.Name, err))
	}
	return b
}

// IsRunning reports whether the member says PostgreSQL is running.
func (m Member) IsRunning() bool { return m.State == "running" }

// LSN returns the member's WAL position (xlog_location), 0 when unknown.
func (m Member) LSN() int64 {
	if m.XLogLocation == nil {
		return 0
	}
	return *m.XLogLocation
}

// HostPort returns the PostgreSQL host and port the member advertises, from
// conn_kwargs or conn_url.
func (m Member) HostPort() (string, int) {
	if m.ConnKwargs != nil {
		host, _ := m.ConnKwargs["host"].(string)
		port := 5432
		switch p := m.ConnKwargs["port"].(type) {
		case float64:
			port = int(p)
		case string:
			if n, err := strconv.Atoi(p); err == nil {
				port = n
			}
		}
		return host, port
	}
	u, err := url.Parse(m.ConnURL)
	if err != nil || u.Host == "" {
		return "", 0
	}
	host, portStr, err := net.SplitHostPort(u.Host)
	if err != nil {
		return strings.Trim(u.Host, "[]"), 5432
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return host, 0
	}
	return host, port
}

// Tags are a member's tags: the predefined ones typed, every other key kept
// as it came.
type Tags struct {
	NoFailover       bool
	FailoverPriority *int
	NoLoadBalance    bool
	CloneFrom        bool
	ReplicateFrom    string
	NoSync           bool
	SyncPriority     *int
	NoStream         bool
	// Custom holds the other tags with their JSON values.
	Custom map[string]any
}

// IsZero lets omitempty drop empty tags.
func (t Tags) IsZero() bool {
	return !t.NoFailover && t.FailoverPriority == nil && !t.NoLoadBalance && !t.CloneFrom &&
		t.ReplicateFrom == "" && !t.NoSync && t.SyncPriority == nil && !t.NoStream && len(t.Custom) == 0
}

// CanFailover reports whether the member may become leader automatically:
// not nofailover and failover_priority above 0.
func (t Tags) CanFailover() bool {
	return !t.NoFailover && (t.FailoverPriority == nil || *t.FailoverPriority > 0)
}

// Priority is failover_priority, 1 when unset (Patroni's default).
func (t Tags) Priority() int {
	if t.FailoverPriority == nil {
		return 1
	}
	return *t.FailoverPriority
}

// Map returns the tags as published: predefined booleans that are false are
// left out, as Patroni does.
func (t Tags) Map() map[string]any {
	out := map[string]any{}
	for k, v := range t.Custom {
		out[k] = v
	}
	if t.NoFailover {
		out["nofailover"] = true
	}
	if t.FailoverPriority != nil {
		out["failover_priority"] = *t.FailoverPriority
	}
	if t.NoLoadBalance {
		out["noloadbalance"] = true
	}
	if t.CloneFrom {
		out["clonefrom"] = true
	}
	if t.ReplicateFrom != "" {
		out["replicatefrom"] = t.ReplicateFrom
	}
	if t.NoSync {
		out["nosync"] = true
	}
	if t.SyncPriority != nil {
		out["sync_priority"] = *t.SyncPriority
	}
	if t.NoStream {
		out["nostream"] = true
	}
	return out
}

// MarshalJSON implements json.Marshaler.
func (t Tags) MarshalJSON() ([]byte, error) { return json.Marshal(t.Map()) }

// UnmarshalJSON implements json.Unmarshaler. Booleans may arrive as JSON
// booleans or as strings ("true", "on", "yes"), as Patroni's YAML allows.
func (t *Tags) UnmarshalJSON(data []byte) error {
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("tags: %w", err)
	}
	*t = Tags{}
	for k, v := range raw {
		switch k {
		case "nofailover":
			t.NoFailover = truthy(v)
		case "noloadbalance":
			t.NoLoadBalance = truthy(v)
		case "clonefrom":
			t.CloneFrom = truthy(v)
		case "nosync":
			t.NoSync = truthy(v)
		case "nostream":
			t.NoStream = truthy(v)
		case "replicatefrom":
			if s, ok := v.(string); ok {
				t.ReplicateFrom = s
			}
		case "failover_priority":
			if n, ok := intValue(v); ok {
				t.FailoverPriority = &n
			}
		case "sync_priority":
			if n, ok := intValue(v); ok {
				t.SyncPriority = &n
			}
		default:
			if t.Custom == nil {
				t.Custom = map[string]any{}
			}
			t.Custom[k] = v
		}
	}
	return nil
}

func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		switch strings.ToLower(x) {
		case "true", "on", "yes", "1", "y", "t":
			return true
		}
	case float64:
		return x != 0
	}
	return false
}

func intValue(v any) (int, bool) {
	switch x := v.(type) {
	case float64:
		return int(x), true
	case string:
		n, err := strconv.Atoi(strings.TrimSpace(x))
		return n, err == nil
	}
	return 0, false
}
