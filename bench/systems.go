package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// The PostgreSQL settings both systems give their clusters. Dynamic ones go
// into the DCS (bootstrap.dcs.postgresql.parameters), local ones into each
// member's own section.
var (
	dynamicParameters = map[string]any{
		"max_connections":       50,
		"max_wal_senders":       10,
		"max_replication_slots": 10,
		"wal_level":             "replica",
		"hot_standby":           "on",
		"wal_log_hints":         "on",
		"wal_keep_size":         "128MB",
	}
	// pgHBA lets the members replicate and the bench connect over loopback.
	pgHBA = []string{
		"local all all trust",
		"host replication " + replicationUser + " 127.0.0.1/32 md5",
		"host all all 127.0.0.1/32 md5",
	}
	// initdbOptions are the same for both (both pass them to initdb).
	initdbOptions = map[string]string{"encoding": "UTF8", "locale": "C.UTF-8"}
)

func localParameters(m *member) map[string]any {
	return map[string]any{
		"shared_buffers":          "32MB",
		"unix_socket_directories": m.dir,
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// custosSystem is custos: bin/custos with its plugin directory, configured
// in TOML.
type custosSystem struct {
	bin, pluginDir string
	// cpuProfile makes each agent write a CPU profile of its run to
	// cpu.pprof in its member directory (CUSTOS_CPUPROFILE).
	cpuProfile bool
	// env is added to each agent's environment (-custos-env), e.g.
	// GOMAXPROCS=1 for an experiment.
	env []string
}

func (custosSystem) label() string { return "custos" }

func (s custosSystem) command(m *member) *exec.Cmd {
	cmd := exec.Command(s.bin, m.configPath)
	cmd.Env = append(cmd.Env, s.env...)
	if s.cpuProfile {
		cmd.Env = append(cmd.Env, "CUSTOS_CPUPROFILE="+filepath.Join(m.dir, "cpu.pprof"))
	}
	return cmd
}

func (s custosSystem) writeConfig(m *member) error {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	tomlValue := func(v any) string {
		if s, ok := v.(string); ok {
			return fmt.Sprintf("%q", s)
		}
		return fmt.Sprint(v)
	}
	p := m.c.prof
	w("scope = %q", m.c.scope)
	w("namespace = %q", "/service")
	w("name = %q", m.name)
	w("plugin_dir = %q", s.pluginDir)
	w("[log]")
	w("level = %q", "INFO")
	w("[restapi]")
	w("listen = %q", fmt.Sprintf("127.0.0.1:%d", m.apiPort))
	w("connect_address = %q", fmt.Sprintf("127.0.0.1:%d", m.apiPort))
	w("[dcs.etcd3]")
	w("hosts = [%q]", m.c.etcd.endpoint)
	w("[bootstrap]")
	var hba []string
	for _, l := range pgHBA {
		hba = append(hba, fmt.Sprintf("%q", l))
	}
	w("pg_hba = [%s]", strings.Join(hba, ", "))
	var initdb []string
	for _, k := range sortedKeys(initdbOptions) {
		initdb = append(initdb, fmt.Sprintf("{ %s = %q }", k, initdbOptions[k]))
	}
	w("initdb = [%s]", strings.Join(initdb, ", "))
	w("[bootstrap.dcs]")
	w("ttl = %d", p.ttl)
	w("loop_wait = %d", p.loopWait)
	w("retry_timeout = %d", p.retryTimeout)
	w("maximum_lag_on_failover = 1048576")
	w("[bootstrap.dcs.postgresql]")
	w("use_pg_rewind = true")
	w("use_slots = true")
	w("[bootstrap.dcs.postgresql.parameters]")
	for _, k := range sortedKeys(dynamicParameters) {
		w("%s = %s", k, tomlValue(dynamicParameters[k]))
	}
	w("[postgresql]")
	w("listen = %q", fmt.Sprintf("127.0.0.1:%d", m.pgPort))
	w("connect_address = %q", fmt.Sprintf("127.0.0.1:%d", m.pgPort))
	w("data_dir = %q", m.dataDir)
	w("bin_dir = %q", m.c.env.pgBinDir)
	w("pgpass = %q", filepath.Join(m.dir, "pgpass"))
	w("[postgresql.authentication.superuser]")
	w("username = %q", superuser)
	w("password = %q", superuserPass)
	w("[postgresql.authentication.replication]")
	w("username = %q", replicationUser)
	w("password = %q", replicationPass)
	w("[postgresql.parameters]")
	local := localParameters(m)
	for _, k := range sortedKeys(local) {
		w("%s = %s", k, tomlValue(local[k]))
	}
	return os.WriteFile(m.configPath, []byte(b.String()), 0o600)
}

// patroniSystem is Patroni (the Debian package), configured in YAML. The
// file is written as JSON, which YAML reads as it is.
type patroniSystem struct {
	bin string
}

func (patroniSystem) label() string { return "Patroni" }

func (s patroniSystem) command(m *member) *exec.Cmd {
	return exec.Command(s.bin, m.configPath)
}

func (s patroniSystem) writeConfig(m *member) error {
	p := m.c.prof
	var initdb []any
	for _, k := range sortedKeys(initdbOptions) {
		initdb = append(initdb, map[string]string{k: initdbOptions[k]})
	}
	cfg := map[string]any{
		"scope":     m.c.scope,
		"namespace": "/service",
		"name":      m.name,
		"log":       map[string]any{"level": "INFO"},
		"restapi": map[string]any{
			"listen":          fmt.Sprintf("127.0.0.1:%d", m.apiPort),
			"connect_address": fmt.Sprintf("127.0.0.1:%d", m.apiPort),
		},
		"etcd3": map[string]any{"hosts": []string{m.c.etcd.endpoint}},
		"bootstrap": map[string]any{
			"dcs": map[string]any{
				"ttl":                     p.ttl,
				"loop_wait":               p.loopWait,
				"retry_timeout":           p.retryTimeout,
				"maximum_lag_on_failover": 1048576,
				"postgresql": map[string]any{
					"use_pg_rewind": true,
					"use_slots":     true,
					"parameters":    dynamicParameters,
				},
			},
			"initdb": initdb,
			"pg_hba": pgHBA,
		},
		"postgresql": map[string]any{
			"listen":          fmt.Sprintf("127.0.0.1:%d", m.pgPort),
			"connect_address": fmt.Sprintf("127.0.0.1:%d", m.pgPort),
			"data_dir":        m.dataDir,
			"bin_dir":         m.c.env.pgBinDir,
			"pgpass":          filepath.Join(m.dir, "pgpass"),
			"authentication": map[string]any{
				"superuser":   map[string]string{"username": superuser, "password": superuserPass},
				"replication": map[string]string{"username": replicationUser, "password": replicationPass},
			},
			"parameters": localParameters(m),
		},
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(m.configPath, data, 0o600)
}
