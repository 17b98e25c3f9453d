package postgres

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/custos-ha/custos/core/config"
	goldenfile "github.com/custos-ha/custos/testkit/golden"
)

func baseConfig() Config {
	return Config{
		Scope:          "batman",
		Name:           "node-1.dc1",
		DataDir:        "/var/lib/postgresql/15/main",
		BinDir:         "/usr/lib/postgresql/15/bin",
		Listen:         "127.0.0.1,10.0.0.1:5432",
		ConnectAddress: "10.0.0.1:5432",
		Superuser:      Credentials{Username: "postgres", Password: "zalando"},
		Replication:    Credentials{Username: "replicator", Password: "rep-pass"},
		Pgpass:         "/var/lib/postgresql/15/.pgpass_custos",
	}
}

func mustNew(t *testing.T, cfg Config) *Postgres {
	t.Helper()
	p, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func renderFiles(t *testing.T, cfg Config, major int, setup Setup) string {
	t.Helper()
	f, err := mustNew(t, cfg).Render(major, setup)
	if err != nil {
		t.Fatalf("Render: %v", err)
	}
	var b strings.Builder
	b.WriteString("-- postgresql.conf --\n" + f.PostgresqlConf)
	if f.WriteHBA {
		b.WriteString("-- pg_hba.conf --\n" + f.HBA)
	}
	if f.WriteIdent {
		b.WriteString("-- pg_ident.conf --\n" + f.Ident)
	}
	b.WriteString("-- pgpass --\n" + f.Pgpass)
	if f.StandbySignal {
		b.WriteString("-- standby.signal --\n")
	}
	return b.String()
}

func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	goldenfile.Check(t, filepath.Join("testdata", name+".golden"), []byte(got))
}

func TestRenderGolden(t *testing.T) {
	cases := []struct {
		name  string
		cfg   func(*Config)
		major int
		setup Setup
	}{
		{name: "primary_defaults", major: 15},
		{
			name:  "standby_streaming",
			major: 15,
			cfg: func(c *Config) {
				c.Replication.SSL = map[string]string{"sslmode": "verify-full", "sslrootcert": "/etc/ssl/ca dir/ca.pem"}
				c.RecoveryConf = map[string]string{"restore_command": "cp /archive/%f %p", "primary_conninfo": "ignored"}
				c.Parameters = map[string]string{"shared_buffers": "256MB", "Work_Mem": "8MB"}
			},
			setup: Setup{Standby: true, Upstream: &Upstream{Host: "10.0.0.2", Port: 5433, SlotName: "node_1_dc1"}},
		},
		{
			name:  "standby_without_upstream",
			major: 15,
			setup: Setup{Standby: true},
		},
		{
			name:  "enforced_fallbacks",
			major: 15,
			cfg: func(c *Config) {
				c.Parameters = map[string]string{
					"max_connections":           "10",      // below 25
					"max_wal_senders":           "2",       // below 3
					"max_replication_slots":     "many",    // not a number
					"max_worker_processes":      "16",      // kept
					"max_prepared_transactions": "-1",      // below 0
					"max_locks_per_transaction": "128",     // kept
					"track_commit_timestamp":    "maybe",   // not a bool
					"wal_log_hints":             "off",     // configurable
					"wal_level":                 "minimal", // not allowed
					"wal_keep_size":             "8MB",     // below 16MB
					"hot_standby":               "off",     // always on
					"cluster_name":              "other",   // always the scope
					"port":                      "1",       // from listen
					"listen_addresses":          "*",       // from listen
					"primary_conninfo":          "host=x",  // managed
					"archive_command":           `copy 'it' \to`,
				}
			},
		},
		{
			name:  "hba_ident_and_segments_pg12",
			major: 12,
			cfg: func(c *Config) {
				c.PgHBA = []string{"local all all trust", "host replication replicator 10.0.0.0/8 scram-sha-256"}
				c.PgIdent = []string{"map1 root postgres"}
				c.Parameters = map[string]string{"wal_keep_size": "1GB", "wal_level": "logical"}
				c.Rewind = Credentials{Username: "rewind:er", Password: `p\a:ss`}
			},
		},
		{
			name:  "restored_by_custom_bootstrap",
			major: 15,
			setup: Setup{ArchiveOff: true, Recovery: map[string]string{
				"restore_command": "pgbackrest --stanza=main archive-get %f %p", "recovery_target_time": "2026-12-08 00:00:00+00",
				"recovery_target_action": "promote",
			}},
		},
		{
			name:  "segments_converted_pg15",
			major: 15,
			cfg: func(c *Config) {
				c.Parameters = map[string]string{"wal_keep_segments": "32"}
				c.Superuser.Password = ""
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			checkGolden(t, tc.name, renderFiles(t, cfg, tc.major, tc.setup))
		})
	}
}

func TestRenderRejects(t *testing.T) {
	p := mustNew(t, baseConfig())
	if _, err := p.Render(11, Setup{}); err == nil {
		t.Error("Render accepted PostgreSQL 11")
	}
	if _, err := p.Render(15, Setup{Standby: true, Upstream: &Upstream{Host: "h"}}); err == nil {
		t.Error("Render accepted an upstream without a port")
	}
	if _, err := p.Render(15, Setup{Standby: true, Upstream: &Upstream{Host: "h", Port: 1, SlotName: "Bad-Slot"}}); err == nil {
		t.Error("Render accepted a bad slot name")
	}
	for _, k := range []string{"primary_conninfo", "work_mem"} {
		if _, err := p.Render(15, Setup{Recovery: map[string]string{k: "x"}}); err == nil {
			t.Errorf("Render accepted %s as a restored cluster's recovery setting", k)
		}
	}
}

func TestEnforcedParametersKeepValidValues(t *testing.T) {
	cfg := baseConfig()
	cfg.Parameters = map[string]string{
		"max_connections": " 200 ", "max_wal_senders": "3", "max_replication_slots": "4",
		"wal_keep_size": "512MB", "track_commit_timestamp": "on", "wal_level": "hot_standby",
	}
	got := mustNew(t, cfg).EnforcedParameters(15)
	want := map[string]string{
		"max_connections": "200", "max_wal_senders": "3", "max_replication_slots": "4",
		"wal_keep_size": "512MB", "track_commit_timestamp": "on", "wal_level": "replica",
		"listen_addresses": "127.0.0.1,10.0.0.1", "port": "5432", "cluster_name": "batman", "hot_standby": "on",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestQuoting(t *testing.T) {
	for in, want := range map[string]string{
		"plain":   "'plain'",
		"it's":    "'it''s'",
		`back\sl`: `'back\\sl'`,
		"":        "''",
	} {
		if got := quoteConfValue(in); got != want {
			t.Errorf("quoteConfValue(%q) = %s, want %s", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"plain":   "plain",
		"":        "''",
		"a b":     "'a b'",
		`it's`:    `'it\'s'`,
		`c:\path`: `'c:\\path'`,
	} {
		if got := quoteConninfo(in); got != want {
			t.Errorf("quoteConninfo(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestStripParams(t *testing.T) {
	in := "# Do not edit this file manually!\nwork_mem = '4MB'\nprimary_conninfo = 'host=x'\n  Primary_Slot_Name='s'\n# primary_conninfo = 'kept comment'\nrestore_command='cp'\n"
	out, removed := stripParams([]byte(in), recoveryParams)
	want := "# Do not edit this file manually!\nwork_mem = '4MB'\n# primary_conninfo = 'kept comment'\n"
	if string(out) != want {
		t.Errorf("stripParams output:\n%s\nwant:\n%s", out, want)
	}
	if strings.Join(removed, ",") != "primary_conninfo,primary_slot_name,restore_command" {
		t.Errorf("removed = %v", removed)
	}
}

func TestDSNs(t *testing.T) {
	cfg := baseConfig()
	cfg.Rewind = Credentials{Username: "rewinder", Password: "secret", SSL: map[string]string{"sslmode": "require"}}
	p := mustNew(t, cfg)
	up := Upstream{Host: "10.0.0.2", Port: 5433}
	if got, want := p.ConnURL(), "postgres://10.0.0.1:5432/postgres"; got != want {
		t.Errorf("ConnURL = %q, want %q", got, want)
	}
	if got, want := p.ReplicationDSN(up), "dbname=postgres user=replicator host=10.0.0.2 port=5433 application_name=node-1.dc1"; got != want {
		t.Errorf("ReplicationDSN = %q, want %q", got, want)
	}
	if got, want := p.RewindDSN(up), "dbname=postgres user=rewinder host=10.0.0.2 port=5433 sslmode=require"; got != want {
		t.Errorf("RewindDSN = %q, want %q", got, want)
	}
	cfg.Rewind = Credentials{}
	if got := mustNew(t, cfg).RewindDSN(up); !strings.Contains(got, "user=postgres ") {
		t.Errorf("RewindDSN without a rewind user = %q, want the superuser", got)
	}
	for _, dsn := range []string{p.ReplicationDSN(up), p.RewindDSN(up), p.SuperuserDSN(up), p.ConnURL()} {
		if strings.Contains(dsn, "secret") || strings.Contains(dsn, "rep-pass") || strings.Contains(dsn, "zalando") {
			t.Errorf("a password leaked into %q", dsn)
		}
	}
}

func TestUpstreamFromConnURL(t *testing.T) {
	for in, want := range map[string]Upstream{
		"postgres://10.0.0.1:5432/postgres":      {Host: "10.0.0.1", Port: 5432},
		"postgresql://u:p@db.example:6432/x?a=b": {Host: "db.example", Port: 6432},
		"postgres://[::1]:5433/postgres":         {Host: "::1", Port: 5433},
		"postgres://hostonly/postgres":           {Host: "hostonly", Port: 5432},
	} {
		got, err := UpstreamFromConnURL(in)
		if err != nil || got != want {
			t.Errorf("UpstreamFromConnURL(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "http://x:1/", "postgres://:5432/", "postgres://h:99999/"} {
		if _, err := UpstreamFromConnURL(bad); err == nil {
			t.Errorf("UpstreamFromConnURL(%q) succeeded", bad)
		}
	}
}

func TestLocalHost(t *testing.T) {
	cfg := baseConfig()
	la, _ := parseListen("*:5432")
	if got := localHost(cfg, la); got != "127.0.0.1" {
		t.Errorf("wildcard listen: local host %q", got)
	}
	cfg.Parameters = map[string]string{"unix_socket_directories": " /run/pg , /tmp"}
	if got := localHost(cfg, la); got != "/run/pg" {
		t.Errorf("socket dir: local host %q", got)
	}
	cfg.Parameters = map[string]string{"unix_socket_directories": "sock"}
	if got := localHost(cfg, la); got != filepath.Join(cfg.DataDir, "sock") {
		t.Errorf("relative socket dir: local host %q", got)
	}
}

// Every setting the agent enforces or sets itself is one a node's local
// parameters cannot override (config.Merge leaves them to the dynamic
// configuration).
func TestEnforcedAreDynamicOnly(t *testing.T) {
	names := []string{"listen_addresses", "port", "cluster_name", "hot_standby", "wal_level", "wal_keep_size", "wal_keep_segments"}
	for _, e := range enforced {
		names = append(names, e.name)
	}
	for _, n := range names {
		if !config.DynamicOnlyParameter(n) {
			t.Errorf("%s is enforced by core/postgres but a local value would override it", n)
		}
	}
}
