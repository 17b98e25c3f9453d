package ctl

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

func fixedSetup() demoSetup {
	return demoSetup{
		Scope:        "demo",
		EtcdEndpoint: "127.0.0.1:42379",
		PluginDir:    "/opt/custos/bin/plugins",
		PgBinDir:     "/usr/lib/postgresql/15/bin",
		Secrets:      demoSecrets{Superuser: "su-secret", Replication: "rep-secret", Rewind: "rw-secret", RESTAPI: "api-secret"},
		Nodes: []demoNode{
			{Name: "node1", Dir: "/tmp/custos-demo-1/node1", APIPort: 48001, PGPort: 45001},
			{Name: "node2", Dir: "/tmp/custos-demo-1/node2", APIPort: 48002, PGPort: 45002},
		},
	}
}

func TestDemoNodeConfig(t *testing.T) {
	s := fixedSetup()
	golden(t, "demo_node1.toml", s.nodeConfig(0))

	// Every generated file is a valid agent configuration saying what the
	// demo means.
	for i, n := range s.Nodes {
		cfg, err := config.Parse(n.Name+".toml", s.nodeConfig(i), nil)
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		if cfg.Name != n.Name || cfg.Scope != "demo" || cfg.PostgreSQL.DataDir != n.DataDir() ||
			cfg.PostgreSQL.Listen != loopback(n.PGPort) || cfg.RESTAPI.Listen != loopback(n.APIPort) ||
			cfg.PostgreSQL.BinDir != s.PgBinDir || cfg.PluginDir != s.PluginDir {
			t.Errorf("%s: unexpected configuration %+v", n.Name, cfg)
		}
		section, err := cfg.DCSConfigJSON()
		if err != nil || cfg.DCSName() != "etcd3" || string(section) != `{"hosts":["127.0.0.1:42379"]}` {
			t.Errorf("%s: dcs.%s = %s (%v)", n.Name, cfg.DCSName(), section, err)
		}
		dyn := cfg.Dynamic()
		if dyn.TTL != demoTTL || dyn.LoopWait != demoLoopWait || dyn.RetryTimeout != demoRetryTimeout || !dyn.PostgreSQL.UsePgRewind {
			t.Errorf("%s: dynamic configuration %+v", n.Name, dyn)
		}
		if probs := dyn.Validate(); len(probs) > 0 {
			t.Errorf("%s: %v", n.Name, probs)
		}
		if got := cfg.PostgreSQL.Authentication.Rewind.Password.Value(); got != "rw-secret" {
			t.Errorf("%s: rewind password %q", n.Name, got)
		}
	}
}

func TestTOMLQuoting(t *testing.T) {
	s := fixedSetup()
	s.Nodes[0].Dir = `/tmp/we"ird\dir` + "\n/node1"
	cfg, err := config.Parse("x.toml", s.nodeConfig(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PostgreSQL.DataDir != s.Nodes[0].Dir+"/data" {
		t.Errorf("data_dir = %q", cfg.PostgreSQL.DataDir)
	}
}

func TestDemoSecretsAreFreshAndDistinct(t *testing.T) {
	a, err := newDemoSecrets()
	if err != nil {
		t.Fatal(err)
	}
	b, err := newDemoSecrets()
	if err != nil {
		t.Fatal(err)
	}
	all := []string{a.Superuser, a.Replication, a.Rewind, a.RESTAPI, b.Superuser}
	for i, s := range all {
		if len(s) < 16 || slices.Contains(all[i+1:], s) {
			t.Errorf("weak or repeated password %q in %q", s, all)
		}
	}
}

func TestPickPorts(t *testing.T) {
	ports, err := pickPorts(6)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] || p <= 0 {
			t.Fatalf("ports %v repeat or are invalid", ports)
		}
		seen[p] = true
		l, err := net.Listen("tcp", loopback(p))
		if err != nil {
			t.Fatalf("port %d is not free after picking: %v", p, err)
		}
		l.Close()
	}
}

func fakePgInstall(t *testing.T, root, major string, programs ...string) string {
	t.Helper()
	bin := filepath.Join(root, major, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range programs {
		if err := os.WriteFile(filepath.Join(bin, p), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

func TestFindPgBinDir(t *testing.T) {
	root := t.TempDir()
	glob := filepath.Join(root, "*", "bin")
	fakePgInstall(t, root, "9.6", pgPrograms...)
	want := fakePgInstall(t, root, "15", pgPrograms...)
	fakePgInstall(t, root, "16", "postgres", "initdb") // a client-only or broken install
	fakePgInstall(t, root, "nightly", pgPrograms...)   // not a version: sorts last

	got, err := findPgBinDir("", glob)
	if err != nil || got != want {
		t.Errorf("detected %q (%v), want the newest complete %q", got, err, want)
	}
	if got, err := findPgBinDir(want, glob); err != nil || got != want {
		t.Errorf("explicit: %q (%v)", got, err)
	}
	if _, err := findPgBinDir(filepath.Join(root, "16", "bin"), glob); err == nil || !strings.Contains(err.Error(), "pg_rewind") {
		t.Errorf("explicit incomplete dir: %v", err)
	}
	_, err = findPgBinDir("", filepath.Join(t.TempDir(), "*", "bin"))
	if err == nil || !strings.Contains(err.Error(), "apt-get install postgresql-15") || !strings.Contains(err.Error(), "--pg-bin-dir") {
		t.Errorf("nothing installed: %v", err)
	}
}

func TestCheckPluginDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugins")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range demoPlugins {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := checkPluginDir(dir, demoPlugins...); err != nil {
		t.Fatalf("a good plugin directory: %v", err)
	}
	if err := checkPluginDir(dir, "custos-plugin-dcs-consul"); err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("missing plugin: %v", err)
	}
	if err := os.Chmod(filepath.Join(dir, demoPlugins[0]), 0o775); err != nil {
		t.Fatal(err)
	}
	if err := checkPluginDir(dir, demoPlugins...); err == nil || !strings.Contains(err.Error(), "chmod go-w") {
		t.Errorf("group-writable plugin: %v", err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := checkPluginDir(dir); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
		t.Errorf("world-writable directory: %v", err)
	}
}

func TestAgentEnv(t *testing.T) {
	in := []string{"PATH=/usr/bin", "HOME=/root", "USER=root", "LANG=C.UTF-8", "CUSTOS_SCOPE=other", "CUSTOS_PLUGIN_LOG_LEVEL=trace", "PGPORT=5433", "PGPASSWORD=x"}
	got := agentEnv(in, "/tmp/d/node1", &osUser{Name: "postgres"})
	want := []string{"PATH=/usr/bin", "LANG=C.UTF-8", "HOME=/tmp/d/node1", "USER=postgres", "LOGNAME=postgres"}
	if !slices.Equal(got, want) {
		t.Errorf("agentEnv = %q, want %q", got, want)
	}
	got = agentEnv(in, "/tmp/d/node1", nil)
	want = []string{"PATH=/usr/bin", "USER=root", "LANG=C.UTF-8", "HOME=/tmp/d/node1"}
	if !slices.Equal(got, want) {
		t.Errorf("agentEnv as self = %q, want %q", got, want)
	}
}

func TestClusterHealth(t *testing.T) {
	healthy := func() *dcs.Cluster { return healthyRaw() }
	edit := func(mutate func(raw *dcs.Cluster)) *dcs.Cluster {
		raw := healthy()
		mutate(raw)
		return raw
	}
	setMember := func(raw *dcs.Cluster, name string, change func(map[string]any)) {
		m := raw.Member(name)
		var v map[string]any
		if err := json.Unmarshal(m.Data, &v); err != nil {
			t.Fatal(err)
		}
		change(v)
		m.Data, _ = json.Marshal(v)
	}
	for _, c := range []struct {
		name    string
		raw     *dcs.Cluster
		members int
		healthy bool
		says    string
	}{
		{"healthy", healthy(), 3, true, "leader node1, 2 streaming replica(s)"},
		{"empty", &dcs.Cluster{}, 3, false, "no member has started the bootstrap"},
		{"initializing", &dcs.Cluster{Initialize: value("")}, 3, false, "bootstrapping"},
		{"no leader", edit(func(r *dcs.Cluster) { r.Leader = nil }), 3, false, "no leader yet"},
		{"a member missing", healthy(), 4, false, "3 of 4 members registered"},
		{"replica not streaming", edit(func(r *dcs.Cluster) {
			setMember(r, "node3", func(v map[string]any) { v["replication_state"] = "in archive recovery" })
		}), 3, false, "node3 is replica, running, in archive recovery"},
		{"replica creating", edit(func(r *dcs.Cluster) {
			setMember(r, "node2", func(v map[string]any) {
				v["state"], v["role"] = "creating replica", "uninitialized"
				delete(v, "replication_state")
			})
		}), 3, false, "node2 is uninitialized, creating replica"},
		{"leader still starting", edit(func(r *dcs.Cluster) {
			setMember(r, "node1", func(v map[string]any) { v["state"] = "starting" })
		}), 3, false, "leader node1 is primary, starting"},
		{"leader without member key", edit(func(r *dcs.Cluster) { r.Leader.Name = "node9" }), 3, false, "node9 holds the leader key but published no state"},
	} {
		ok, says := clusterHealth(decode(t, c.raw), c.members)
		if ok != c.healthy || !strings.Contains(says, c.says) {
			t.Errorf("%s: clusterHealth = %v %q, want %v with %q", c.name, ok, says, c.healthy, c.says)
		}
	}
}

func TestDemoPlanChecks(t *testing.T) {
	e := &env{executable: filepath.Join(t.TempDir(), "custosctl"), lookupEnv: envOf(nil)}
	var ue usageError
	for _, o := range []demoOptions{{members: 0, timeout: time.Minute}, {members: 10, timeout: time.Minute}, {members: 3}} {
		if _, err := o.plan(e, &globalOptions{}); !errors.As(err, &ue) {
			t.Errorf("%+v: %v, want a usage error", o, err)
		}
	}
	o := demoOptions{members: 3, timeout: time.Minute}
	if _, err := o.plan(e, &globalOptions{}); err == nil || !strings.Contains(err.Error(), "--custos-bin") {
		t.Errorf("no custos binary: %v", err)
	}
	bin := filepath.Join(filepath.Dir(e.executable), "custos")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := o.plan(e, &globalOptions{}); err == nil || !strings.Contains(err.Error(), "plugins") {
		t.Errorf("no plugin directory: %v", err)
	}
}

func TestTailFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("a\nb\nc\nd\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := tailFile(path, 2); got != "c\nd\n" {
		t.Errorf("tail = %q", got)
	}
	if got := tailFile(path, 10); got != "a\nb\nc\nd\n" {
		t.Errorf("tail = %q", got)
	}
	if got := tailFile(filepath.Join(t.TempDir(), "none"), 2); !strings.Contains(got, "no such file") {
		t.Errorf("missing file: %q", got)
	}
}

func TestCopyBinaries(t *testing.T) {
	src := t.TempDir()
	pluginDir := filepath.Join(src, "plugins")
	if err := os.Mkdir(pluginDir, 0o700); err != nil {
		t.Fatal(err)
	}
	custos := filepath.Join(src, "custos")
	for _, p := range append([]string{custos}, pluginPaths(pluginDir)...) {
		if err := os.WriteFile(p, []byte("binary "+filepath.Base(p)), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	binDir := filepath.Join(t.TempDir(), "bin")
	newBin, newPluginDir, err := copyBinaries(binDir, custos, pluginDir)
	if err != nil {
		t.Fatal(err)
	}
	if newBin != filepath.Join(binDir, "custos") || newPluginDir != filepath.Join(binDir, "plugins") {
		t.Errorf("copies at %s, %s", newBin, newPluginDir)
	}
	// What the plugin host and the other user need.
	if err := checkPluginDir(newPluginDir, demoPlugins...); err != nil {
		t.Error(err)
	}
	for _, p := range append([]string{newBin, binDir, newPluginDir}, pluginPaths(newPluginDir)...) {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v (%v), want 0755", p, fi.Mode(), err)
		}
	}
	if b, err := os.ReadFile(newBin); err != nil || string(b) != "binary custos" {
		t.Errorf("custos copy = %q (%v)", b, err)
	}
}
