//go:build integration

package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/internal/testenv"
	"github.com/custos-ha/custos/core/plugins"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
	tkcluster "github.com/custos-ha/custos/testkit/cluster"
	"github.com/custos-ha/custos/testkit/servers"
)

var (
	releaseBuild    sync.Once
	releaseBin      string
	releaseBuildErr error
)

// release builds custos and the plugins the tests need once, laid out as
// `make build` lays them out: bin/custos and bin/plugins/custos-plugin-*.
func release(t *testing.T) (bin string) {
	t.Helper()
	releaseBuild.Do(func() {
		root, err := os.MkdirTemp("", "custos-ctl-release-")
		if err != nil {
			releaseBuildErr = err
			return
		}
		cleanups = append(cleanups, func() { os.RemoveAll(root) })
		// Readable by everyone: the live cluster's agents run as postgres
		// when the tests run as root.
		if releaseBuildErr = os.Chmod(root, 0o755); releaseBuildErr != nil {
			return
		}
		releaseBin = filepath.Join(root, "bin")
		releaseBuildErr = tkcluster.Build(releaseBin, map[string]string{
			"custos":                            tkcluster.Custos,
			tkcluster.PluginBinary("dcs-etcd3"): tkcluster.Plugin("dcs-etcd3"),
			tkcluster.PluginBinary("replica-basebackup"): tkcluster.Plugin("replica-basebackup"),
		})
	})
	if releaseBuildErr != nil {
		t.Fatal(releaseBuildErr)
	}
	return releaseBin
}

// etcd3PluginDir is a plugin directory holding the etcd3 plugin.
func etcd3PluginDir(t *testing.T) string { return filepath.Join(release(t), "plugins") }

// seed writes a cluster into etcd through the etcd3 plugin, the way agents
// write it: each member's key by a backend configured with that member's
// name (on its own lease), the leader key by the leader's backend, the
// other keys as they are.
func seed(t *testing.T, dir, endpoint, namespace, scope string, raw *dcs.Cluster) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	host, err := plugins.NewHost(plugins.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(host.Shutdown)
	open := func(member string) dcs.Backend {
		b, err := host.OpenDCS(ctx, "etcd3")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = closeBackend(b) })
		err = b.Configure(ctx, dcs.ConfigureRequest{
			Scope: scope, Namespace: namespace, Member: member, TTL: time.Minute, RetryTimeout: 10 * time.Second,
			Config: []byte(`{"hosts":["` + endpoint + `"]}`),
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	writer := open("seeder")
	for _, k := range dcs.Keys {
		if v := raw.Get(k); v != nil {
			if err := writer.Set(ctx, k, v.Data); err != nil {
				t.Fatalf("writing %s: %v", k, err)
			}
		}
	}
	for _, m := range raw.Members {
		b := open(m.Name)
		if err := b.TouchMember(ctx, m.Data); err != nil {
			t.Fatalf("writing members/%s: %v", m.Name, err)
		}
		if raw.Leader != nil && raw.Leader.Name == m.Name {
			if _, err := b.AcquireLeader(ctx); err != nil {
				t.Fatalf("taking the leader key for %s: %v", m.Name, err)
			}
		}
	}
}

// etcdRevision is the store's revision: it moves with every write.
func etcdRevision(t *testing.T, endpoint string) string {
	t.Helper()
	resp, err := http.Post("http://"+endpoint+"/v3/kv/range", "application/json", strings.NewReader(`{"key":"Lw=="}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Header.Revision == "" {
		t.Fatalf("reading the etcd revision: %v (%+v)", err, body)
	}
	return body.Header.Revision
}

// list reads a cluster written through the etcd3 plugin and prints exactly
// what the same cluster decoded in memory prints (the unit goldens), in
// every format, without writing anything.
func TestListThroughEtcd3Plugin(t *testing.T) {
	dir := etcd3PluginDir(t)
	etcd := startEtcd(t)
	seed(t, dir, etcd.Endpoint, "/service", "demo", healthyRaw())
	seed(t, dir, etcd.Endpoint, "/other", "demo", busyRaw())
	ctx := context.Background()

	before := etcdRevision(t, etcd.Endpoint)
	for _, c := range []struct {
		url, fixture string
	}{
		{"etcd3://" + etcd.Endpoint, "healthy"},
		{"etcd3://" + etcd.Endpoint + "/other", "busy"},
	} {
		for _, format := range []string{formatPretty, formatTSV, formatJSON, formatYAML} {
			code, stdout, stderr := runCtl(ctx, nil, "-d", c.url, "--plugin-dir", dir, "list", "demo", "-f", format)
			if code != exitOK {
				t.Fatalf("list %s -f %s: exit %d: %s", c.url, format, code, stderr)
			}
			golden(t, "list_"+c.fixture+"."+format, []byte(stdout))
		}
	}
	if after := etcdRevision(t, etcd.Endpoint); after != before {
		t.Errorf("list wrote to etcd: revision %s -> %s", before, after)
	}
}

// With -c, the agent's configuration names the DCS, the namespace, the
// plugin directory and the default cluster; two clusters are listed one
// after the other.
func TestListWithAgentConfig(t *testing.T) {
	dir := etcd3PluginDir(t)
	etcd := startEtcd(t)
	seed(t, dir, etcd.Endpoint, "/custom", "batman", healthyRaw())
	path := filepath.Join(t.TempDir(), "custos.toml")
	text := strings.Replace(strings.Replace(agentConfig, "%s", fmt.Sprintf("plugin_dir = %q", dir), 1), "%s", "false", 1)
	text = strings.Replace(text, "10.0.0.1:2379", etcd.Endpoint, 1)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	code, stdout, stderr := runCtl(context.Background(), map[string]string{EnvConfigFile: path}, "list", "-t")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var want bytes.Buffer
	if err := newListing("batman", decode(t, healthyRaw()), false).write(&want, formatPretty); err != nil {
		t.Fatal(err)
	}
	ts, table, _ := strings.Cut(stdout, "\n")
	if !regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$`).MatchString(ts) {
		t.Errorf("-t line = %q", ts)
	}
	if table != want.String() {
		t.Errorf("table:\n%s\nwant:\n%s", table, want.String())
	}

	code, stdout, stderr = runCtl(context.Background(), nil, "-c", path, "list", "batman", "nobody", "-f", "tsv")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "batman\tnode1\t") || strings.Count(stdout, "Cluster\tMember") != 2 {
		t.Errorf("two clusters:\n%s", stdout)
	}
}

// A watch refreshes until it is interrupted and then exits cleanly.
func TestListWatchUntilInterrupted(t *testing.T) {
	dir := etcd3PluginDir(t)
	etcd := startEtcd(t)
	seed(t, dir, etcd.Endpoint, "/service", "demo", healthyRaw())
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	code, stdout, stderr := runCtl(ctx, nil, "-d", "etcd3://"+etcd.Endpoint, "--plugin-dir", dir, "list", "demo", "-w", "0.2")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if n := strings.Count(stdout, "+ Cluster: demo"); n < 3 {
		t.Errorf("%d refreshes in %v, want at least 3:\n%s", n, time.Since(start), stdout)
	}
	if strings.Contains(stdout, clearScreen) {
		t.Error("the screen was cleared on a non-terminal")
	}
}

// An unreachable DCS is an error naming the cluster and the DCS, within
// retry_timeout.
func TestListUnreachableDCS(t *testing.T) {
	t.Parallel() // waits out retry_timeout
	dir := etcd3PluginDir(t)
	port := testenv.FreePort(t)
	start := time.Now()
	code, _, stderr := runCtl(context.Background(), nil, "-d", fmt.Sprintf("etcd3://127.0.0.1:%d", port), "--plugin-dir", dir, "list", "demo")
	if code != exitFailure || !strings.Contains(stderr, "reading cluster demo from dcs etcd3") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v", d)
	}
}

// A plugin directory without the DCS plugin is reported as such.
func TestListMissingPlugin(t *testing.T) {
	empty := t.TempDir()
	code, _, stderr := runCtl(context.Background(), nil, "-d", "etcd3://127.0.0.1:1", "--plugin-dir", empty, "list", "demo")
	if code != exitFailure || !strings.Contains(stderr, "custos-plugin-dcs-etcd3") || !strings.Contains(stderr, empty) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// startEtcd starts an etcd of the test's own, stopped when the test ends.
func startEtcd(t *testing.T) *servers.Etcd {
	t.Helper()
	e, err := servers.StartEtcd(servers.EtcdConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return e
}
