package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	tkcluster "github.com/custos-ha/custos/testkit/cluster"
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

func localParameters(m *tkcluster.Member) map[string]any {
	return map[string]any{
		"shared_buffers":          "32MB",
		"unix_socket_directories": m.Dir,
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
// in TOML by the cluster harness.
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

// configure: the harness's custos configuration, plus the log level,
// initdb options, pg_hba and the parameters both systems get.
func (s custosSystem) configure(o *tkcluster.Options, _ *cluster) {
	o.Custos, o.PluginDir = s.bin, s.pluginDir
	o.Command = func(m *tkcluster.Member) *exec.Cmd {
		cmd := exec.Command(s.bin, m.ConfigPath)
		cmd.Env = append(cmd.Env, s.env...)
		if s.cpuProfile {
			cmd.Env = append(cmd.Env, "CUSTOS_CPUPROFILE="+filepath.Join(m.Dir, "cpu.pprof"))
		}
		return cmd
	}
	o.Edit = func(m *tkcluster.Member, c *tkcluster.Config) {
		c.Set("log", "level", "INFO")
		c.Set("bootstrap", "pg_hba", pgHBA)
		var initdb []string
		for _, k := range sortedKeys(initdbOptions) {
			initdb = append(initdb, fmt.Sprintf("{ %s = %s }", k, tkcluster.TOMLString(initdbOptions[k])))
		}
		c.Set("bootstrap", "initdb", tkcluster.Literal("["+strings.Join(initdb, ", ")+"]"))
		for _, k := range sortedKeys(dynamicParameters) {
			c.Set("bootstrap.dcs.postgresql.parameters", k, dynamicParameters[k])
		}
		local := localParameters(m)
		for _, k := range sortedKeys(local) {
			c.Set("postgresql.parameters", k, local[k])
		}
	}
}

// patroniSystem is Patroni (the Debian package), configured in YAML. The
// file is written as JSON, which YAML reads as it is.
type patroniSystem struct {
	bin string
}

func (patroniSystem) label() string { return "Patroni" }

// configure: Patroni's own command, and its configuration written as
// JSON, which YAML reads as it is.
func (s patroniSystem) configure(o *tkcluster.Options, c *cluster) {
	o.Command = func(m *tkcluster.Member) *exec.Cmd { return exec.Command(s.bin, m.ConfigPath) }
	o.Render = func(m *tkcluster.Member) ([]byte, error) { return patroniConfig(m, c) }
}

func patroniConfig(m *tkcluster.Member, c *cluster) ([]byte, error) {
	p := c.prof
	var initdb []any
	for _, k := range sortedKeys(initdbOptions) {
		initdb = append(initdb, map[string]string{k: initdbOptions[k]})
	}
	cfg := map[string]any{
		"scope":     c.scope,
		"namespace": "/service",
		"name":      m.Name,
		"log":       map[string]any{"level": "INFO"},
		"restapi": map[string]any{
			"listen":          m.APIAddr(),
			"connect_address": m.APIAddr(),
		},
		"etcd3": map[string]any{"hosts": []string{c.etcd.endpoint}},
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
			"listen":          m.PGAddr(),
			"connect_address": m.PGAddr(),
			"data_dir":        m.DataDir,
			"bin_dir":         c.env.pgBinDir,
			"pgpass":          filepath.Join(m.Dir, "pgpass"),
			"authentication": map[string]any{
				"superuser":   map[string]string{"username": superuser, "password": superuserPass},
				"replication": map[string]string{"username": replicationUser, "password": replicationPass},
			},
			"parameters": localParameters(m),
		},
	}
	return json.MarshalIndent(cfg, "", "  ")
}
