package config

import (
	"fmt"
	"strings"
)

// Effective is the configuration a member runs with: the cluster-wide
// dynamic configuration merged with the member's own. Merge builds it; no
// other code decides which of the two wins.
type Effective struct {
	// Dynamic is the dynamic configuration in effect: /config as read by
	// ParseDynamicOver, or [bootstrap.dcs] while /config is absent. Its
	// cluster-wide settings (timing, synchronous mode, failsafe, slots,
	// standby_cluster, pause) have no local counterpart.
	Dynamic Dynamic
	// Local is the member's configuration file with the environment's
	// overrides (Load applies them). Settings only the file holds (bin_dir,
	// authentication, remove_data_directory_on_*, tags...) are read there.
	Local *Config
	// PostgreSQL are the settings both configurations hold, merged.
	PostgreSQL EffectivePostgreSQL
}

// EffectivePostgreSQL are the merged [postgresql] settings.
type EffectivePostgreSQL struct {
	// Parameters are the GUCs: the dynamic ones, the local ones over them
	// except the dynamic-only ones (DynamicOnlyParameter), and
	// hot_standby_feedback on while a permanent slot is logical.
	Parameters map[string]string
	// RecoveryConf are the extra recovery settings, local over dynamic.
	RecoveryConf map[string]string
	// PgHBA and PgIdent are the local lines when there are any, else the
	// dynamic ones (a list replaces, it does not merge).
	PgHBA   []string
	PgIdent []string
	// UsePgRewind is the local use_pg_rewind when set, else the dynamic one.
	UsePgRewind bool
	// UseSlots comes from the dynamic configuration only, so that members
	// agree on whether the primary keeps their slots.
	UseSlots bool
}

// Merge is the one place where the dynamic configuration and the local one
// (file and environment, already combined by Load) meet. As in Patroni the
// local value wins over the dynamic one, which wins over the default,
// except for the settings every member must share: use_slots and the
// dynamic-only parameters. A nil local is the default configuration.
func Merge(dyn Dynamic, local *Config) Effective {
	if local == nil {
		def := Default()
		local = &def
	}
	p := local.PostgreSQL
	eff := Effective{Dynamic: dyn, Local: local}
	e := &eff.PostgreSQL

	e.Parameters = make(map[string]string, len(dyn.PostgreSQL.Parameters)+len(p.Parameters)+1)
	for k, v := range dyn.PostgreSQL.Parameters {
		e.Parameters[k] = v.String()
	}
	for k, v := range p.Parameters {
		if !DynamicOnlyParameter(k) {
			e.Parameters[k] = v.String()
		}
	}
	if dyn.hasLogicalSlot() {
		// Logical slots kept on replicas need the primary to keep the
		// catalog rows they decode.
		e.Parameters["hot_standby_feedback"] = "on"
	}

	e.RecoveryConf = make(map[string]string, len(dyn.PostgreSQL.RecoveryConf)+len(p.RecoveryConf))
	for k, v := range dyn.PostgreSQL.RecoveryConf {
		e.RecoveryConf[k] = v.String()
	}
	for k, v := range p.RecoveryConf {
		e.RecoveryConf[k] = fmt.Sprint(v)
	}

	e.PgHBA = firstNonEmpty(p.PgHBA, dyn.PostgreSQL.PgHBA)
	e.PgIdent = firstNonEmpty(p.PgIdent, dyn.PostgreSQL.PgIdent)
	e.UsePgRewind = dyn.PostgreSQL.UsePgRewind
	if p.UsePgRewind != nil {
		e.UsePgRewind = *p.UsePgRewind
	}
	e.UseSlots = dyn.PostgreSQL.UseSlots
	return eff
}

func firstNonEmpty(lists ...[]string) []string {
	for _, l := range lists {
		if len(l) > 0 {
			return l
		}
	}
	return nil
}

// dynamicOnlyParameters are the GUCs Patroni passes on the postgres
// command line (its CMDLINE_OPTIONS): the ones core/postgres enforces a
// floor or a fixed value for, wal_keep_size/wal_keep_segments, and the
// ones the agent sets itself. A node's local value is ignored so that
// every member runs with the same ones (a standby needs max_connections
// and the like at least as high as its primary's).
var dynamicOnlyParameters = map[string]bool{
	"listen_addresses": true, "port": true, "cluster_name": true, "hot_standby": true, "wal_level": true,
	"wal_keep_size": true, "wal_keep_segments": true,
	"max_connections": true, "max_wal_senders": true, "max_replication_slots": true, "max_worker_processes": true,
	"max_prepared_transactions": true, "max_locks_per_transaction": true, "track_commit_timestamp": true,
	"wal_log_hints": true,
}

// DynamicOnlyParameter reports whether the GUC name (any case) takes its
// value from the dynamic configuration only.
func DynamicOnlyParameter(name string) bool {
	return dynamicOnlyParameters[strings.ToLower(name)]
}
