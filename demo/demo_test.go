package main

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	tkcluster "github.com/custos-ha/custos/testkit/cluster"
	goldenfile "github.com/custos-ha/custos/testkit/golden"
)

// golden compares got with testdata/<name>.golden (-update rewrites it).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenfile.Check(t, filepath.Join("testdata", name+".golden"), got)
}

// testSetup is a demo setup in dir with fixed passwords.
func testSetup(dir string) demoSetup {
	return demoSetup{
		Dir:          dir,
		EtcdEndpoint: "127.0.0.1:42379",
		Custos:       "/opt/custos/bin/custos",
		PluginDir:    "/opt/custos/bin/plugins",
		PgBinDir:     "/usr/lib/postgresql/15/bin",
		Secrets:      demoSecrets{Superuser: "su-secret", Replication: "rep-secret", Rewind: "rw-secret", RESTAPI: "api-secret"},
		Members:      2,
	}
}

func TestDemoNodeConfig(t *testing.T) {
	dir := t.TempDir()
	s := testSetup(dir)
	c, err := tkcluster.New(s.options())
	if err != nil {
		t.Fatal(err)
	}
	// The directory and ports differ from run to run.
	first := c.Members[0]
	data, err := os.ReadFile(first.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	stable := strings.NewReplacer(dir, "/tmp/custos-demo-1",
		first.APIAddr(), "127.0.0.1:48001", first.PGAddr(), "127.0.0.1:45001").Replace(string(data))
	golden(t, "node1.toml", []byte(stable))

	// Every generated file is a valid agent configuration saying what the
	// demo means.
	for _, n := range c.Members {
		if n.ConfigPath != filepath.Join(dir, n.Name+".toml") || n.LogPath != filepath.Join(dir, n.Name+".log") {
			t.Errorf("%s: configuration %s, log %s", n.Name, n.ConfigPath, n.LogPath)
		}
		data, err := os.ReadFile(n.ConfigPath)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Parse(n.Name+".toml", data, nil)
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		if cfg.Name != n.Name || cfg.Scope != "demo" || cfg.PostgreSQL.DataDir != n.DataDir ||
			cfg.PostgreSQL.Listen != n.PGAddr() || cfg.RESTAPI.Listen != n.APIAddr() ||
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

// A demo directory with quotes, backslashes and control characters in its
// name still makes valid configurations.
func TestTOMLQuoting(t *testing.T) {
	dir := filepath.Join(t.TempDir(), `we"ird\dir`+"\nx")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	c, err := tkcluster.New(testSetup(dir).options())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(c.Members[0].ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("x.toml", data, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PostgreSQL.DataDir != c.Members[0].DataDir {
		t.Errorf("data_dir = %q, want %q", cfg.PostgreSQL.DataDir, c.Members[0].DataDir)
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
	got := agentEnv(in, "/tmp/d/node1", &osUser{Name: "postgres", Cred: &syscall.Credential{}})
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

// healthyCluster is three members as the agents publish them: node1 the
// primary, two streaming replicas.
func healthyCluster() *cluster.Cluster {
	init := "7268616322854375442"
	lsn := int64(50331648)
	replica := func(name string) cluster.Member {
		return cluster.Member{Name: name, State: "running", Role: "replica", XLogLocation: &lsn, Timeline: 2, ReplicationState: "streaming"}
	}
	return &cluster.Cluster{
		Initialize: &init,
		Leader:     &cluster.Leader{Name: "node1"},
		Members: []cluster.Member{
			replica("node2"),
			{Name: "node1", State: "running", Role: "primary", XLogLocation: &lsn, Timeline: 2},
			replica("node3"),
		},
	}
}

func TestClusterHealth(t *testing.T) {
	edit := func(mutate func(c *cluster.Cluster)) *cluster.Cluster {
		c := healthyCluster()
		mutate(c)
		return c
	}
	member := func(c *cluster.Cluster, name string) *cluster.Member {
		for i := range c.Members {
			if c.Members[i].Name == name {
				return &c.Members[i]
			}
		}
		t.Fatalf("no member %s", name)
		return nil
	}
	empty := ""
	for _, c := range []struct {
		name    string
		c       *cluster.Cluster
		members int
		healthy bool
		says    string
	}{
		{"healthy", healthyCluster(), 3, true, "leader node1, 2 streaming replica(s)"},
		{"empty", &cluster.Cluster{}, 3, false, "no member has started the bootstrap"},
		{"initializing", &cluster.Cluster{Initialize: &empty}, 3, false, "bootstrapping"},
		{"no leader", edit(func(c *cluster.Cluster) { c.Leader = nil }), 3, false, "no leader yet"},
		{"a member missing", healthyCluster(), 4, false, "3 of 4 members registered"},
		{"replica not streaming", edit(func(c *cluster.Cluster) {
			member(c, "node3").ReplicationState = "in archive recovery"
		}), 3, false, "node3 is replica, running, in archive recovery"},
		{"replica creating", edit(func(c *cluster.Cluster) {
			m := member(c, "node2")
			m.State, m.Role, m.ReplicationState = "creating replica", "uninitialized", ""
		}), 3, false, "node2 is uninitialized, creating replica"},
		{"leader still starting", edit(func(c *cluster.Cluster) {
			member(c, "node1").State = "starting"
		}), 3, false, "leader node1 is primary, starting"},
		{"leader without member key", edit(func(c *cluster.Cluster) { c.Leader.Name = "node9" }), 3, false, "node9 holds the leader key but published no state"},
	} {
		ok, says := clusterHealth(c.c, c.members)
		if ok != c.healthy || !strings.Contains(says, c.says) {
			t.Errorf("%s: clusterHealth = %v %q, want %v with %q", c.name, ok, says, c.healthy, c.says)
		}
	}
}

func TestDemoPlanChecks(t *testing.T) {
	e := &env{executable: filepath.Join(t.TempDir(), "custos-demo"), lookupEnv: func(string) (string, bool) { return "", false }}
	var ue usageError
	for _, o := range []demoOptions{{members: 0, timeout: time.Minute}, {members: 10, timeout: time.Minute}, {members: 3}} {
		if _, err := o.plan(e); !errors.As(err, &ue) {
			t.Errorf("%+v: %v, want a usage error", o, err)
		}
	}
	o := demoOptions{members: 3, timeout: time.Minute}
	if _, err := o.plan(e); err == nil || !strings.Contains(err.Error(), "--custos-bin") {
		t.Errorf("no custos binary: %v", err)
	}
	for _, name := range []string{"custos", "custosctl"} {
		if _, err := o.plan(e); err == nil || !strings.Contains(err.Error(), "the "+name+" binary") {
			t.Errorf("no %s binary: %v", name, err)
		}
		bin := filepath.Join(filepath.Dir(e.executable), name)
		if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := o.plan(e); err == nil || !strings.Contains(err.Error(), "plugins") {
		t.Errorf("no plugin directory: %v", err)
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
