package ctl

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// agentConfig is a minimal valid agent configuration.
const agentConfig = `scope = "batman"
namespace = "/custom"
name = "node1"
%s
[restapi]
listen = "127.0.0.1:8008"
connect_address = "127.0.0.1:8008"

[ctl]
insecure = %s

[dcs.etcd3]
hosts = ["10.0.0.1:2379"]

[bootstrap.dcs]
ttl = 40
retry_timeout = 7

[postgresql]
listen = "127.0.0.1:5432"
connect_address = "127.0.0.1:5432"
data_dir = "/var/lib/custos/node1"

[postgresql.authentication.superuser]
username = "postgres"

[postgresql.authentication.replication]
username = "replicator"
`

func writeConfig(t *testing.T, pluginDirLine, insecure string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "custos.toml")
	text := strings.Replace(strings.Replace(agentConfig, "%s", pluginDirLine, 1), "%s", insecure, 1)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func envOf(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

const exe = "/opt/custos/bin/custosctl"

func TestResolveFromConfigFile(t *testing.T) {
	path := writeConfig(t, "", "true")
	tg, err := (&globalOptions{configFile: path}).resolve(envOf(nil), exe)
	if err != nil {
		t.Fatal(err)
	}
	if tg.scope != "batman" || tg.namespace != "/custom" || tg.plugin != "etcd3" || string(tg.section) != `{"hosts":["10.0.0.1:2379"]}` {
		t.Errorf("target = %+v (section %s)", tg, tg.section)
	}
	if tg.pluginDir != "/opt/custos/bin/plugins" {
		t.Errorf("plugin dir = %q, want plugins/ beside custosctl", tg.pluginDir)
	}
	if tg.ttl != 40*time.Second || tg.retryTimeout != 7*time.Second {
		t.Errorf("ttl %v retry_timeout %v, want the configuration's", tg.ttl, tg.retryTimeout)
	}
	if !tg.insecure {
		t.Error("[ctl] insecure = true was not taken")
	}
	if !tg.sectionFromConfig {
		t.Error("the section came from the file")
	}
}

func TestResolveFromEnvironment(t *testing.T) {
	path := writeConfig(t, `plugin_dir = "/usr/lib/custos/plugins"`, "false")
	tg, err := (&globalOptions{}).resolve(envOf(map[string]string{EnvConfigFile: path}), exe)
	if err != nil {
		t.Fatal(err)
	}
	if tg.scope != "batman" || tg.pluginDir != "/usr/lib/custos/plugins" {
		t.Errorf("target = %+v", tg)
	}

	tg, err = (&globalOptions{}).resolve(envOf(map[string]string{EnvDCSURL: "zookeeper://zk:2181"}), exe)
	if err != nil {
		t.Fatal(err)
	}
	if tg.plugin != "zookeeper" || tg.scope != "" || tg.namespace != "/service" || tg.pluginDir != "/opt/custos/bin/plugins" {
		t.Errorf("target = %+v", tg)
	}
	if tg.ttl != 30*time.Second || tg.retryTimeout != 10*time.Second {
		t.Errorf("ttl %v retry_timeout %v, want the defaults", tg.ttl, tg.retryTimeout)
	}
}

// -d replaces the configuration's DCS section but keeps its scope, and
// keeps its namespace unless the URL has a path; --plugin-dir wins.
func TestResolveURLOverConfig(t *testing.T) {
	path := writeConfig(t, "", "false")
	g := &globalOptions{configFile: path, dcsURL: "etcd3://127.0.0.1:23790", pluginDir: "/tmp/p"}
	tg, err := g.resolve(envOf(map[string]string{EnvDCSURL: "zookeeper://ignored:2181"}), exe)
	if err != nil {
		t.Fatal(err)
	}
	if tg.scope != "batman" || tg.namespace != "/custom" || tg.plugin != "etcd3" ||
		string(tg.section) != `{"hosts":["127.0.0.1:23790"]}` || tg.pluginDir != "/tmp/p" || tg.sectionFromConfig {
		t.Errorf("target = %+v (section %s)", tg, tg.section)
	}
	g.dcsURL = "etcd3://127.0.0.1:23790/other"
	if tg, err = g.resolve(envOf(nil), exe); err != nil || tg.namespace != "/other" {
		t.Errorf("namespace = %q (%v), want the URL's", tg.namespace, err)
	}
}

func TestResolveErrors(t *testing.T) {
	if _, err := (&globalOptions{}).resolve(envOf(nil), exe); !errors.Is(err, errNoDCS) {
		t.Errorf("no DCS: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	if err := os.WriteFile(bad, []byte("scope = \"x\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := (&globalOptions{configFile: bad}).resolve(envOf(nil), exe)
	if err == nil || !strings.Contains(err.Error(), "bad.toml") || !strings.Contains(err.Error(), "name") {
		t.Errorf("invalid configuration: %v", err)
	}
	if _, err := (&globalOptions{dcsURL: "nope://x"}).resolve(envOf(nil), exe); err == nil {
		t.Error("a bad URL was accepted")
	}
}

func TestClusterNames(t *testing.T) {
	tg := &target{scope: "batman"}
	if got, _ := tg.clusterNames(nil); len(got) != 1 || got[0] != "batman" {
		t.Errorf("default = %v", got)
	}
	if got, _ := tg.clusterNames([]string{"a", "b"}); len(got) != 2 {
		t.Errorf("arguments = %v", got)
	}
	var ue usageError
	if _, err := (&target{}).clusterNames(nil); !errors.As(err, &ue) {
		t.Errorf("no scope: %v", err)
	}
}
