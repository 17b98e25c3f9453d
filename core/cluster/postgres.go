package cluster

// ParamChange is a PostgreSQL setting changed in the configuration whose
// new value takes effect at the next restart (an entry of Patroni's
// pending_restart_reason, 3.3+).
type ParamChange struct {
	OldValue string `json:"old_value"`
	NewValue string `json:"new_value"`
}

// PendingRestartReason is the member key's pending_restart_reason for the
// changes; nil when there are none.
func PendingRestartReason(changes map[string]ParamChange) map[string]any {
	if len(changes) == 0 {
		return nil
	}
	out := make(map[string]any, len(changes))
	for name, c := range changes {
		out[name] = map[string]any{"old_value": c.OldValue, "new_value": c.NewValue}
	}
	return out
}

// Replication is one walsender of pg_stat_replication as Patroni reports
// it in GET /patroni.
type Replication struct {
	Usename         string `json:"usename"`
	ApplicationName string `json:"application_name"`
	// ClientAddr is nil for a Unix-socket connection (JSON null).
	ClientAddr   *string `json:"client_addr"`
	State        string  `json:"state"`
	SyncState    string  `json:"sync_state"`
	SyncPriority int     `json:"sync_priority"`
}
