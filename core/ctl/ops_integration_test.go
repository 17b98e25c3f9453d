//go:build integration

package ctl

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-ha/custos/core/internal/testenv"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
	tkcluster "github.com/custos-ha/custos/testkit/cluster"
	"github.com/custos-ha/custos/testkit/poll"
)

// liveCluster is a three-member cluster (custos agents with real
// PostgreSQL on the test etcd) that the operation commands run against.
type liveCluster struct {
	t          *testing.T
	bin        string
	configFile string
	password   string
	etcd       string
}

// Passwords of the live cluster.
const (
	livePassword    = "live-secret"
	liveRepPassword = "live-rep-secret"
	liveAPIPassword = "live-api-secret"
)

// startLiveCluster forms the cluster with the cluster harness and waits
// until it is healthy; it is stopped and removed when the test ends.
func startLiveCluster(t *testing.T) *liveCluster {
	t.Helper()
	bin := release(t)
	etcd := startEtcd(t)
	var runAs *syscall.Credential
	if os.Geteuid() == 0 {
		var err error
		if runAs, err = tkcluster.UserCredential(tkcluster.PostgresUser); err != nil {
			t.Fatal(err)
		}
	}
	// Not t.TempDir(): its parents are private to the test's user, and
	// the agents may run as postgres.
	dir, err := os.MkdirTemp("", "custos-ctl-live-")
	if err != nil {
		t.Fatal(err)
	}
	if runAs != nil {
		if err := os.Chown(dir, int(runAs.Uid), int(runAs.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := tkcluster.New(tkcluster.Options{
		Scope: "demo", Dir: dir, Label: "ctl test",
		Custos: filepath.Join(bin, "custos"), PluginDir: filepath.Join(bin, "plugins"), PgBinDir: testenv.PostgresBinDir(t),
		DCS:         tkcluster.DCS{Name: "etcd3", Lines: []string{"hosts = " + tkcluster.TOMLValue([]string{etcd.Endpoint})}},
		Timings:     tkcluster.Timings{TTL: 20, LoopWait: 2, RetryTimeout: 5},
		Superuser:   tkcluster.Role{Username: "postgres", Password: livePassword},
		Replication: tkcluster.Role{Username: "replicator", Password: liveRepPassword},
		API:         &tkcluster.Role{Username: "admin", Password: liveAPIPassword},
		RunAs:       runAs,
		Logf:        t.Logf,
		Edit: func(m *tkcluster.Member, cfg *tkcluster.Config) {
			cfg.Set("postgresql", "pg_hba", []string{"local all all trust", "host all all 127.0.0.1/32 scram-sha-256", "host replication replicator 127.0.0.1/32 scram-sha-256"})
			cfg.Set("postgresql.parameters", "unix_socket_directories", m.Dir)
			cfg.Set("postgresql.parameters", "wal_keep_size", "128MB")
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(time.Minute); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			for _, m := range c.Members {
				t.Logf("--- last lines of %s:\n%s", m.LogPath, m.Tail(60))
			}
		}
		_ = os.RemoveAll(dir)
	})
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	lc := &liveCluster{t: t, bin: bin, configFile: c.Members[0].ConfigPath, password: livePassword, etcd: etcd.Endpoint}
	lc.healthy(4 * time.Minute)
	return lc
}

// ctl runs custosctl -c <node1.toml> with stdin; it fails the test on an
// exit code other than wantCode (-1: any).
func (lc *liveCluster) ctl(stdin string, wantCode int, args ...string) string {
	lc.t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	code := run(ctx, append([]string{"-c", lc.configFile}, args...),
		&env{stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr, lookupEnv: envOf(nil), executable: filepath.Join(lc.bin, "custosctl")})
	if wantCode >= 0 && code != wantCode {
		lc.t.Fatalf("custosctl %s: exit %d, want %d\n%s%s", strings.Join(args, " "), code, wantCode, stdout.String(), stderr.String())
	}
	return stdout.String() + stderr.String()
}

// members reads list -f tsv: leader name and the other members.
func (lc *liveCluster) members() (leader string, replicas []string, rows []map[string]string) {
	lc.t.Helper()
	out := lc.ctl("", exitOK, "list", "-f", "tsv", "-e")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	header := strings.Split(lines[0], "\t")
	for _, l := range lines[1:] {
		cells := strings.Split(l, "\t")
		row := map[string]string{}
		for i, h := range header {
			if i < len(cells) {
				row[h] = cells[i]
			}
		}
		rows = append(rows, row)
		if row["Role"] == "Leader" {
			leader = row["Member"]
		} else {
			replicas = append(replicas, row["Member"])
		}
	}
	return leader, replicas, rows
}

// eventually polls cond until it holds or the timeout passes; a failure
// shows the cluster as custosctl lists it.
func (lc *liveCluster) eventually(what string, timeout time.Duration, cond func() error) {
	lc.t.Helper()
	ctx, cancel := context.WithTimeoutCause(context.Background(), timeout, fmt.Errorf("waited %v", timeout))
	defer cancel()
	if err := poll.Until(ctx, func(context.Context) error { return cond() }); err != nil {
		lc.t.Fatalf("%s: %v\n%s", what, err, lc.ctl("", exitOK, "list", "-e"))
	}
}

// healthy waits for one leader and two streaming replicas.
func (lc *liveCluster) healthy(timeout time.Duration) {
	lc.t.Helper()
	lc.eventually("a healthy cluster", timeout, func() error {
		leader, replicas, rows := lc.members()
		streaming := 0
		for _, r := range rows {
			if r["Member"] != leader && r["State"] == "streaming" {
				streaming++
			}
		}
		if leader == "" || len(replicas) != 2 || streaming != 2 {
			return fmt.Errorf("leader %q, %d streaming replicas", leader, streaming)
		}
		return nil
	})
}

func mustContain(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s: no %q in:\n%s", what, w, out)
		}
	}
}

// Every operation command against a real three-member cluster, in the
// order an operator would use them, each checked on what it prints and on
// what it changed.
func TestOperationsAgainstLiveCluster(t *testing.T) {
	t.Parallel() // mostly waits for PostgreSQL
	lc := startLiveCluster(t)
	leader, replicas, _ := lc.members()
	if leader == "" || len(replicas) != 2 {
		t.Fatalf("leader %q, replicas %v", leader, replicas)
	}

	// switchover: the leader answers once the candidate leads.
	candidate := replicas[0]
	out := lc.ctl("", -1, "switchover", "--candidate", candidate, "--force")
	if strings.Contains(out, "Switchover failed, details: 503") {
		// Right after formation the leader may judge a replica a WAL
		// segment behind until the replica's next cycle publishes its
		// position (seen here, a leader-side race): one more try after
		// that cycle.
		t.Logf("first switchover refused, trying again after a cycle:\n%s", out)
		time.Sleep(3 * time.Second) // the cluster's loop_wait is 2 s
		out = lc.ctl("", exitOK, "switchover", "--candidate", candidate, "--force")
	}
	mustContain(t, "switchover", out, "Current cluster topology", fmt.Sprintf("Successfully switched over to %q", candidate))
	if now, _, _ := lc.members(); now != candidate {
		t.Fatalf("leader after the switchover: %q, want %s", now, candidate)
	}
	old := leader
	leader = candidate
	lc.healthy(2 * time.Minute)

	// history shows the promotion, once the new leader's next cycle has
	// published its timeline's history.
	lc.eventually("a history line for "+leader, time.Minute, func() error {
		out := lc.ctl("", exitOK, "history", "-f", "tsv")
		if !regexp.MustCompile(`(?m)^\d+\t\d+\t[^\t]*\t\S+\t` + leader + `$`).MatchString(out) {
			return fmt.Errorf("history has no line for %s:\n%s", leader, out)
		}
		return nil
	})

	// edit-config: a reloadable and a restart-only change, and a refused
	// one.
	out = lc.ctl("", exitOK, "edit-config", "-p", "max_connections=150", "-p", "work_mem=8MB", "--force")
	mustContain(t, "edit-config", out, "+    max_connections: 150", "Configuration changed")
	mustContain(t, "show-config", lc.ctl("", exitOK, "show-config"), "max_connections: 150", "work_mem: 8MB")
	out = lc.ctl("", exitFailure, "edit-config", "-s", "ttl=0", "--force")
	mustContain(t, "invalid edit-config", out, "ttl: out of range: 0 is below the minimum 1")
	if strings.Contains(lc.ctl("", exitOK, "show-config"), "ttl: 0") {
		t.Error("an invalid ttl was written")
	}
	lc.eventually("pending restarts", time.Minute, func() error {
		_, _, rows := lc.members()
		for _, r := range rows {
			if r["Pending restart"] != "*" {
				return fmt.Errorf("%s has no pending restart", r["Member"])
			}
		}
		return nil
	})

	// restart --pending restarts every member; reload is accepted.
	out = lc.ctl("", exitOK, "restart", "demo", "--pending", "--force")
	for _, m := range append([]string{leader}, replicasOf(lc, leader)...) {
		mustContain(t, "restart", out, "Success: restart on member "+m)
	}
	lc.eventually("no pending restart", time.Minute, func() error {
		_, _, rows := lc.members()
		for _, r := range rows {
			if r["Pending restart"] != "" {
				return fmt.Errorf("%s still has a pending restart", r["Member"])
			}
		}
		return nil
	})
	out = lc.ctl("", exitOK, "reload", "demo", "--force")
	if n := strings.Count(out, "Reload request received for member "); n != 3 {
		t.Errorf("reload: %d members answered:\n%s", n, out)
	}
	lc.healthy(2 * time.Minute)

	// pause and resume, waiting for every member.
	out = lc.ctl("", exitOK, "pause", "--wait")
	mustContain(t, "pause", out, "'pause' request sent", "Success: cluster management is paused")
	mustContain(t, "list while paused", lc.ctl("", exitOK, "list"), " Maintenance mode: on")
	out = lc.ctl("", exitFailure, "pause")
	mustContain(t, "pause twice", out, "Cluster is already paused")
	out = lc.ctl("", exitOK, "resume", "--wait")
	mustContain(t, "resume", out, "Success: cluster management is resumed")

	// reinit of a replica, waiting until it is done.
	replica := replicasOf(lc, leader)[0]
	out = lc.ctl("", exitOK, "reinit", "demo", replica, "--force", "--wait")
	mustContain(t, "reinit", out, "Success: reinitialize for member "+replica, "Reinitialize is completed on: "+replica)
	lc.healthy(2 * time.Minute)

	// A scheduled switchover and a scheduled restart, then flushed.
	out = lc.ctl("", exitOK, "switchover", "--candidate", replica, "--scheduled", "2030-01-01T00:00:00+00:00", "--force")
	mustContain(t, "scheduled switchover", out, "Switchover scheduled", " Switchover scheduled at: 2030-01-01T00:00:00+00:00")
	out = lc.ctl("", exitOK, "flush", "demo", "switchover")
	mustContain(t, "flush switchover", out, "Success: scheduled switchover deleted")
	out = lc.ctl("", exitOK, "restart", "demo", replica, "--scheduled", "2030-01-01T00:00:00+00:00", "--force")
	mustContain(t, "scheduled restart", out, "Success: restart scheduled on member "+replica)
	lc.eventually("the scheduled restart in the member key", 30*time.Second, func() error {
		_, _, rows := lc.members()
		for _, r := range rows {
			if r["Member"] == replica && strings.HasPrefix(r["Scheduled restart"], "2030-01-01T00:00:00") {
				return nil
			}
		}
		return fmt.Errorf("no scheduled restart on %s", replica)
	})
	out = lc.ctl("", exitOK, "flush", "demo", "restart", "--force")
	mustContain(t, "flush restart", out, "Success: flush scheduled restart for member "+replica)

	// failover to the member that led first.
	out = lc.ctl("", exitOK, "failover", "--candidate", old, "--force")
	mustContain(t, "failover", out, "over to \""+old+"\"")
	lc.healthy(2 * time.Minute)

	// topology, dsn, version, query.
	out = lc.ctl("", exitOK, "topology")
	mustContain(t, "topology", out, "| + ")
	out = lc.ctl("", exitOK, "dsn", "-m", replica)
	if !regexp.MustCompile(`^host=127\.0\.0\.1 port=\d+\n$`).MatchString(out) {
		t.Errorf("dsn: %q", out)
	}
	out = lc.ctl("", exitOK, "version", "demo")
	if n := len(regexp.MustCompile(`(?m)^node\d: custos .* PostgreSQL \d+\.\d+$`).FindAllString(out, -1)); n != 3 {
		t.Errorf("version: %d members:\n%s", n, out)
	}
	out = lc.ctl(lc.password+"\n", exitOK, "query", "-U", "postgres", "--password", "-d", "postgres", "-c", "SELECT pg_is_in_recovery() AS r, 1 AS one")
	mustContain(t, "query on the leader", out, "r\tone\nFalse\t1\n")
	out = lc.ctl(lc.password+"\n", exitOK, "query", "-U", "postgres", "--password", "-r", "replica", "-c", "SELECT pg_is_in_recovery()", "--format", "json")
	mustContain(t, "query on a replica", out, `[{"pg_is_in_recovery": true}]`)

	// Without credentials the members refuse, and nothing happens.
	_, _, before := lc.members()
	code, stdout, stderr := runCtl(context.Background(), nil, "-d", "etcd3://"+lc.etcd, "--plugin-dir", filepath.Join(lc.bin, "plugins"),
		"restart", "demo", "--force")
	if code != exitFailure || strings.Count(stdout, "status code=401") != 3 {
		t.Errorf("restart without credentials: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, _, after := lc.members(); !slices.EqualFunc(before, after, func(a, b map[string]string) bool { return a["Member"] == b["Member"] && a["TL"] == b["TL"] }) {
		t.Errorf("the cluster changed: %v -> %v", before, after)
	}
}

func replicasOf(lc *liveCluster, leader string) []string {
	l, replicas, _ := lc.members()
	if l != leader {
		lc.t.Fatalf("leader %q, want %q", l, leader)
	}
	return replicas
}

// edit-config's compare-and-set, remove's deletion and switchover's
// fallback go through the real etcd3 plugin.
func TestDCSWritesThroughEtcd3Plugin(t *testing.T) {
	dir := etcd3PluginDir(t)
	etcd := startEtcd(t)
	// The members' REST APIs point at a port nobody listens on.
	raw := healthyRaw()
	closed := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	for i := range raw.Members {
		raw.Members[i].Data = regexp.MustCompile(`127\.0\.0\.1:80\d\d`).ReplaceAll(raw.Members[i].Data, []byte(closed))
	}
	seed(t, dir, etcd.Endpoint, "/service", "demo", raw)
	url := "etcd3://" + etcd.Endpoint
	ctx := context.Background()
	runIn := func(stdin string, args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(ctx, append([]string{"-d", url, "--plugin-dir", dir}, args...),
			&env{stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr, lookupEnv: envOf(nil), executable: exe})
		return code, stdout.String(), stderr.String()
	}

	code, stdout, stderr := runIn("", "edit-config", "demo", "-s", "loop_wait=5", "--force")
	if code != exitOK || !strings.HasSuffix(stdout, "Configuration changed\n") {
		t.Fatalf("edit-config: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, stdout, _ = runIn("", "show-config", "demo"); !strings.Contains(stdout, "loop_wait: 5\n") {
		t.Errorf("show-config:\n%s", stdout)
	}

	// The members' APIs are unreachable: the switchover goes to /failover.
	code, stdout, stderr = runIn("", "switchover", "demo", "--candidate", "node2", "--force")
	if code != exitOK || !strings.Contains(stdout, "Could not switchover using the REST API, falling back to DCS") {
		t.Errorf("switchover fallback: exit %d\n%s%s", code, stdout, stderr)
	}
	r, err := newReader(&target{plugin: "etcd3", section: DCSURL{Hosts: []string{etcd.Endpoint}}.SectionJSON(), namespace: "/service",
		pluginDir: dir, checksums: map[string]string{}, ttl: 30 * time.Second, retryTimeout: 10 * time.Second}, newLogger(&env{stderr: &bytes.Buffer{}, lookupEnv: envOf(nil)}))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c, _, err := r.Read(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	if c.Failover == nil || c.Failover.Leader != "node1" || c.Failover.Candidate != "node2" {
		t.Errorf("/failover = %+v", c.Failover)
	}

	code, _, stderr = runIn("demo\nYes I am aware\nnode1\n", "remove", "demo")
	if code != exitOK {
		t.Fatalf("remove: exit %d: %s", code, stderr)
	}
	b, err := r.backend(ctx, "demo")
	if err != nil {
		t.Fatal(err)
	}
	left, err := b.GetCluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if left.Leader != nil || len(left.Members) != 0 || left.Config != nil || left.Get(dcs.KeyInitialize) != nil || left.Failover != nil {
		t.Errorf("left after remove: %+v", left)
	}
}
